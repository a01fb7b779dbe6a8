// RUN: lsrl-opt %s --split-input-file -p canonicalize --check | filecheck %s

// A linear reading a slice reads the whole value through scattered columns (column 0 of x is unread: 0).
// CHECK-LABEL: lsrl.module @linear_of_slice
// CHECK-SAME:  (%x: 3) -> 1 {
// CHECK-NEXT:   %o = linear %x {A = {{\[\[}}0.0, 2.0, -1.0]], b = [0.5]} : 3 -> 1
// CHECK-NEXT:   return %o : 1
// CHECK-NEXT: }
lsrl.module @linear_of_slice(%x: 3) -> 1 {
  %s = slice %x {start = 1, end = 3} : 3 -> 2
  %o = linear %s {A = [[2.0, -1.0]], b = [0.5]} : 2 -> 1
  return %o : 1
}

// -----
// A linear reading a concat through zero columns on %r reads only %x; ReLU(ReLU(x)) is the inner ReLU.
// CHECK-LABEL: lsrl.module @unread_operand
// CHECK-SAME:  (%x: 2) -> 3 {
// CHECK-NEXT:   %r = relu %x : 2 -> 2
// CHECK-NEXT:   %o = linear %x {A = {{\[\[}}1.0, 3.0]]} : 2 -> 1
// CHECK-NEXT:   %p = concat %o, %r : 1, 2 -> 3
// CHECK-NEXT:   return %p : 3
// CHECK-NEXT: }
lsrl.module @unread_operand(%x: 2) -> 3 {
  %r = relu %x : 2 -> 2
  %t = relu %r : 2 -> 2
  %c = concat %r, %x : 2, 2 -> 4
  %o = linear %c {A = [[0.0, 0.0, 1.0, 3.0]]} : 4 -> 1
  %p = concat %o, %t : 1, 2 -> 3
  return %p : 3
}

// -----
// Constants fold: ReLU of the constant (-1, 2) is (0, 2), and the readout takes it into its bias.
// CHECK-LABEL: lsrl.module @constants_fold
// CHECK-SAME:  (%x: 1) -> 2 {
// CHECK-NEXT:   %o = linear %x {A = {{\[\[}}0.0], [1.0]], b = [2.0, 2.0]} : 1 -> 2
// CHECK-NEXT:   return %o : 2
// CHECK-NEXT: }
lsrl.module @constants_fold(%x: 1) -> 2 {
  %k = linear %x {A = zeros<2x1>, b = [-1.0, 2.0]} : 1 -> 2
  %r = relu %k : 2 -> 2
  %c = concat %r, %x : 2, 1 -> 3
  %o = linear %c {A = [[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]} : 3 -> 2
  return %o : 2
}

// -----
// A concat of one operand is that operand.
// CHECK-LABEL: lsrl.module @concat_of_one
// CHECK-SAME:  (%x: 2) -> 2 {
// CHECK-NEXT:   %r = relu %x : 2 -> 2
// CHECK-NEXT:   return %r : 2
// CHECK-NEXT: }
lsrl.module @concat_of_one(%x: 2) -> 2 {
  %r = relu %x : 2 -> 2
  %c = concat %r : 2 -> 2
  return %c : 2
}
