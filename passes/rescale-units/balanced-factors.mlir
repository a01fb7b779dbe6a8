// RUN: lsrl-opt %s -p "debranch,rescale-units" | filecheck %s

// step(x)·ReLU(2x), x in [−3, 3]: the step's first unit ReLU(1000x) is also the factor 2x, so the product's
// factors were 2·u0 and 0.001·(u0 − u1).  Putting both on primitive integers (u0, u0 − u1) would make the
// product's reader read 1/500, so it was refused and the step's difference was formed with 0.001, which float32
// rounds (2,780 times the program's error in a program around it).  The single-term factor takes the reciprocal instead: 0.002·u0 times u0 − u1, an exact
// 0 or 1 — and the reader keeps its 1.
// CHECK-LABEL: lsrl.module @step_times_its_first_unit(
// CHECK:         linear %{{.*}} {A = {{\[\[}}1000.0], [1000.0]], b = [0.0, -1.0]} : 1 -> 2
// CHECK-NEXT:    relu
// CHECK-NEXT:    linear %{{.*}} {A = {{\[\[}}0.002, 0.0], [1.0, -1.0]]} : 2 -> 2
// CHECK-NEXT:    multi
// CHECK-NEXT:    linear %{{.*}} {A = identity<1>} : 1 -> 1
lsrl.module @step_times_its_first_unit(%x: 1 in [-3.0, 3.0]) -> 1 {
  %scaled = linear %x {A = [[1000.0]]} : 1 -> 1
  %pos = relu %scaled : 1 -> 1
  %shifted = linear %x {A = [[1.0]], b = [-1/1000]} : 1 -> 1
  %over = relu %shifted : 1 -> 1
  %cat = concat %pos, %over : 1, 1 -> 2
  %step = linear %cat {A = [[1.0, -1000.0]]} : 2 -> 1
  %double = linear %x {A = [[2.0]]} : 1 -> 1
  %r = relu %double : 1 -> 1
  %factors = concat %step, %r : 1, 1 -> 2
  %p = multi %factors : 2 -> 1
  return %p : 1
}
