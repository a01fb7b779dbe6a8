// RUN: lsrl-opt %s --split-input-file -p canonicalize | filecheck %s
// RUN: lsrl-opt %s --split-input-file -p 'canonicalize{use_ranges=true}' | filecheck %s --check-prefix=RANGES

// ReLU(ReLU(x)) = ReLU(x).
// CHECK-LABEL: lsrl.module @relu_relu
// CHECK-NEXT:    %r1 = relu %x : 2 -> 2
// CHECK-NEXT:    return %r1 : 2
// RANGES-LABEL: lsrl.module @relu_relu
lsrl.module @relu_relu(%x: 2) -> 2 {
  %r1 = relu %x : 2 -> 2
  %r2 = relu %r1 : 2 -> 2
  return %r2 : 2
}

// -----
// With range analysis: a counter of inputs in [0, 1] is >= 0, so its ReLU is the counter itself; row 1 of
// %d is always <= -0.5, so its ReLU is 0.
// CHECK-LABEL: lsrl.module @nonnegative
// CHECK:         relu
// RANGES-LABEL: lsrl.module @nonnegative
// RANGES-NOT:    relu
// RANGES:        %r = linear %c {A = {{\[\[}}1.0], [0.0]], b = [0.5, 0.0]} : 1 -> 2
// RANGES-NOT:    relu
lsrl.module @nonnegative(%x: 1 in [0.0, 1.0]) -> 2 {
  %c = linstate %x {A = identity<1>, B = identity<1>} : 1 -> 1
  %d = linear %c {A = [[1.0], [-1.0]], b = [0.5, -0.5]} : 1 -> 2
  %r = relu %d : 2 -> 2
  return %r : 2
}

// -----
// Without input bounds nothing is known about the sign of x - 1.
// RANGES-LABEL: lsrl.module @unbounded
// RANGES:        relu
lsrl.module @unbounded(%x: 1) -> 1 {
  %d = linear %x {A = [[1.0]], b = [-1.0]} : 1 -> 1
  %r = relu %d : 1 -> 1
  return %r : 1
}
