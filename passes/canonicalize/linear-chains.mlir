// RUN: lsrl-opt %s --split-input-file -p canonicalize | filecheck %s

// A chain of single-use linears folds into one: A = A2 A1, b = A2 b1 + b2.
// CHECK-LABEL: lsrl.module @chain
// CHECK-NEXT:    %b = linear %x {A = {{\[\[}}2.0, 4.0], [4.0, 6.0]], b = [2.0, 5.0]} : 2 -> 2
// CHECK-NEXT:    return %b : 2
lsrl.module @chain(%x: 2) -> 2 {
  %a = linear %x {A = [[1.0, 2.0], [3.0, 4.0]], b = [1.0, -1.0]} : 2 -> 2
  %b = linear %a {A = [[2.0, 0.0], [1.0, 1.0]], b = [0.0, 5.0]} : 2 -> 2
  return %b : 2
}

// -----
// The inner linear has a second user: the reference keeps the chain.
// CHECK-LABEL: lsrl.module @shared
// CHECK-NEXT:    %a = linear %x
// CHECK-NEXT:    %b = linear %a
// CHECK-NEXT:    %c = concat %a, %b
lsrl.module @shared(%x: 2) -> 4 {
  %a = linear %x {A = [[1.0, 2.0], [3.0, 4.0]]} : 2 -> 2
  %b = linear %a {A = [[2.0, 0.0], [1.0, 1.0]]} : 2 -> 2
  %c = concat %a, %b : 2, 2 -> 4
  return %c : 4
}

// -----
// Identity linears disappear.
// CHECK-LABEL: lsrl.module @identity
// CHECK-NEXT:    %r = relu %x : 3 -> 3
// CHECK-NEXT:    return %r : 3
lsrl.module @identity(%x: 3) -> 3 {
  %i = linear %x {A = identity<3>} : 3 -> 3
  %r = relu %i : 3 -> 3
  return %r : 3
}
