// RUN: lsrl-opt %s -p 'canonicalize,constant-fold,cse,dce,fuse-linears' --check | filecheck %s

// Checking mode runs the interpreter before and after every pass; a correct pipeline passes silently.
// CHECK: lsrl.module @m(%x: 1 in [0.0, 3.0]) -> 1
// CHECK-NEXT: %y = linear %x {A = {{\[\[}}2.0]], b = [2.0]} : 1 -> 1
lsrl.module @m(%x: 1 in [0.0, 3.0]) -> 1 {
  %a = linear %x {A = [[2.0]]} : 1 -> 1
  %k = linear %x {A = zeros<1x1>, b = [2.0]} : 1 -> 1
  %c = concat %a, %k : 1, 1 -> 2
  %y = linear %c {A = [[1.0, 1.0]]} : 2 -> 1
  return %y : 1
}
