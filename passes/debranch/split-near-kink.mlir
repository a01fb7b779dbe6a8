// RUN: lsrl-opt %s --split-input-file -p 'debranch{schedule=alap}' | filecheck %s

// A step f_larger(x, 0) of x in [−3, 3] placed after a ReLU stage: x crosses the stage.  Shifted into one slot
// (x + 3), the step's rows became (x + 3) − 3 and (x + 3) − 3.001, which hold x only to the precision of 3 —
// float32 put the second ReLU 7·10⁻⁸ off where the program computes x − 0.001 to x's own, and the step passed
// that on times 1000.  A signed carrier a later ReLU reads where it turns within a quarter of the shift from 0
// crosses the stage as its halves x⁺, x⁻ (rows 2 and 3 of the first linear), and the step reads x⁺ − x⁻ − 0.001.
// CHECK-LABEL: lsrl.module @step_after_a_stage
// CHECK:         linear %{{.*}} {A = {{\[\[}}1.0], [1.0], [-1.0]], b = [-1.0, 0.0, 0.0]} : 1 -> 3
// CHECK-NEXT:    relu
// CHECK-NEXT:    linear %{{.*}} {A = {{\[\[}}1.0, 0.0, 0.0], [0.0, 1.0, -1.0], [0.0, 1.0, -1.0]], b = [-1.0, 0.0, -0.001]} : 3 -> 3
lsrl.module @step_after_a_stage(%x: 1 in [-3.0, 3.0]) -> 1 {
  %a = linear %x {A = [[1.0]], b = [-1.0]} : 1 -> 1
  %r1 = relu %a : 1 -> 1
  %b = linear %r1 {A = [[1.0]], b = [-1.0]} : 1 -> 1
  %r2 = relu %b : 1 -> 1
  %pos_pre = linear %x {A = [[1000.0]]} : 1 -> 1
  %pos = relu %pos_pre : 1 -> 1
  %over_pre = linear %x {A = [[1000.0]], b = [-1.0]} : 1 -> 1
  %over = relu %over_pre : 1 -> 1
  %cat = concat %r2, %pos, %over : 1, 1, 1 -> 3
  %out = linear %cat {A = [[1.0, 1.0, -1.0]]} : 3 -> 1
  return %out : 1
}

// -----
// The same with a ReLU that turns at x = −2.5: the slot's precision (that of 3 + 0.5) is
// within a factor of two of x's there, and x stays one slot.
// CHECK-LABEL: lsrl.module @relu_far_from_zero
// CHECK:         linear %{{.*}} {A = {{\[\[}}1.0], [1.0]], b = [-1.0, 3.0]} : 1 -> 2
// CHECK-NEXT:    relu
// CHECK-NEXT:    linear %{{.*}} {A = identity<2>, b = [-1.0, -0.5]} : 2 -> 2
lsrl.module @relu_far_from_zero(%x: 1 in [-3.0, 3.0]) -> 1 {
  %a = linear %x {A = [[1.0]], b = [-1.0]} : 1 -> 1
  %r1 = relu %a : 1 -> 1
  %b = linear %r1 {A = [[1.0]], b = [-1.0]} : 1 -> 1
  %r2 = relu %b : 1 -> 1
  %far_pre = linear %x {A = [[1.0]], b = [2.5]} : 1 -> 1
  %far = relu %far_pre : 1 -> 1
  %cat = concat %r2, %far : 1, 1 -> 2
  %out = linear %cat {A = [[1.0, 1.0]]} : 2 -> 1
  return %out : 1
}
