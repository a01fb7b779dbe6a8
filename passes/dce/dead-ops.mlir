// RUN: lsrl-opt %s --split-input-file -p dce | filecheck %s

// Ops that do not reach the output are removed; the input always stays.
// CHECK-LABEL: lsrl.module @dead_ops
// CHECK-NOT:     %dead
// CHECK:         %k = linear %x {A = zeros<1x1>, b = [1.0]} : 1 -> 1
// CHECK-NEXT:    return %k : 1
lsrl.module @dead_ops(%x: 1) -> 1 {
  %dead = relu %x : 1 -> 1
  %dead2 = linstate %dead {A = identity<1>, B = identity<1>} : 1 -> 1
  %k = linear %x {A = zeros<1x1>, b = [1.0]} : 1 -> 1
  return %k : 1
}

// -----
// Nothing dead: the module is unchanged.
// CHECK-LABEL: lsrl.module @alive
// CHECK-NEXT:    %r = relu %x : 2 -> 2
// CHECK-NEXT:    %y = linear %r {A = {{\[\[}}1.0, -1.0]]} : 2 -> 1
lsrl.module @alive(%x: 2) -> 1 {
  %r = relu %x : 2 -> 2
  %y = linear %r {A = [[1.0, -1.0]]} : 2 -> 1
  return %y : 1
}
