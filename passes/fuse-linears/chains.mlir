// RUN: lsrl-opt %s --split-input-file -p fuse-linears | filecheck %s
// RUN: lsrl-opt %s --split-input-file -p 'fuse-linears{duplicate=true}' | filecheck %s --check-prefix=DUP

// linear -> slice -> linear fuses into one linear (rows selected, then multiplied).
// CHECK-LABEL: lsrl.module @through_slice
// CHECK-NEXT:    %b = linear %x {A = {{\[\[}}-1.0, -1.0, 0.0]], b = [-1.0]} : 3 -> 1
// CHECK-NEXT:    %r = relu %b : 1 -> 1
lsrl.module @through_slice(%x: 3) -> 1 {
  %a = linear %x {A = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]], b = [0.0, 0.0, 0.0, 1.0]} : 3 -> 4
  %s = slice %a {start = 2, end = 4} : 4 -> 2
  %b = linear %s {A = [[1.0, -1.0]]} : 2 -> 1
  %r = relu %b : 1 -> 1
  return %r : 1
}

// -----
// A shared linear is only folded into its users with duplicate=true.
// CHECK-LABEL: lsrl.module @shared
// CHECK:         %a = linear %x
// CHECK:         %b = linear %a
// CHECK:         %c = linear %a
// DUP-LABEL: lsrl.module @shared
// DUP-NEXT:    %b = linear %x {A = {{\[\[}}2.0, 2.0]]} : 2 -> 1
// DUP-NEXT:    %c = linear %x {A = {{\[\[}}3.0, 3.0]]} : 2 -> 1
lsrl.module @shared(%x: 2) -> 2 {
  %a = linear %x {A = [[1.0, 1.0]]} : 2 -> 1
  %b = linear %a {A = [[2.0]]} : 1 -> 1
  %c = linear %a {A = [[3.0]]} : 1 -> 1
  %o = concat %b, %c : 1, 1 -> 2
  return %o : 2
}

// -----
// Nonlinear ops stop fusion.
// CHECK-LABEL: lsrl.module @stops
// CHECK-NEXT:    %a = linear %x
// CHECK-NEXT:    %r = relu %a
// CHECK-NEXT:    %b = linear %r
lsrl.module @stops(%x: 1) -> 1 {
  %a = linear %x {A = [[2.0]]} : 1 -> 1
  %r = relu %a : 1 -> 1
  %b = linear %r {A = [[3.0]]} : 1 -> 1
  return %b : 1
}
