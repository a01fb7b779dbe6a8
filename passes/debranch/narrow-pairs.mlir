// RUN: lsrl-opt %s --split-input-file -p debranch,rescale-units | filecheck %s

// A step of a step on integers: [x > 0] = ReLU(1000x) − 1000·ReLU(x − 0.001), whose first ReLU is linear for
// x ≥ 0, then [0.5 − that > 0].  The pair's offsets are 0.001 apart on a range of 3: narrow, so ReLU(1000x) stays
// a unit beside its partner, and rescale-units puts the two on one integer row, biases one apart (row 0 and 1:
// the step's 0/1 is exact).  Fused as the row 1000x, the partner was held as ReLU(x − 0.001), rounded in float32,
// and the second step read it times 10⁶.
// CHECK-LABEL: lsrl.module @step_of_a_step
// CHECK:         linear %{{.*}} {A = {{\[\[}}1000.0], [1000.0]], b = [0.0, -1.0]} : 1 -> 2
// CHECK:         linear %{{.*}} {A = {{\[\[}}-1000.0, 1000.0], [-1000.0, 1000.0]], b = [500.0, 499.0]} : 2 -> 2
lsrl.module @step_of_a_step(%x: 1 {lower = [0.0], upper = [3.0], integer = 1}) -> 1 {
  %pos_pre = linear %x {A = [[1000.0]]} : 1 -> 1
  %pos = relu %pos_pre : 1 -> 1
  %over_pre = linear %x {A = identity<1>, b = [-1/1000]} : 1 -> 1
  %over = relu %over_pre : 1 -> 1
  %cat = concat %pos, %over : 1, 1 -> 2
  %s = linear %cat {A = [[1.0, -1000.0]]} : 2 -> 1
  %d_pre = linear %s {A = [[-1000.0]], b = [500.0]} : 1 -> 1
  %d = relu %d_pre : 1 -> 1
  %e_pre = linear %s {A = [[-1.0]], b = [0.499]} : 1 -> 1
  %e = relu %e_pre : 1 -> 1
  %cat2 = concat %d, %e : 1, 1 -> 2
  %t = linear %cat2 {A = [[1.0, -1000.0]]} : 2 -> 1
  return %t : 1
}

// -----
// ReLU(x) and ReLU(x − 1) on [0, 3]: a pair as wide as a third of the range is no step; x is carried as it is
// (row 1, no group: its scale stays 1).
// CHECK-LABEL: lsrl.module @wide_pair
// CHECK:         linear %{{.*}} {A = {{\[\[}}1.0], [1.0]], b = [-1.0, 0.0]} : 1 -> 2
// CHECK:         linear %{{.*}} {A = {{\[\[}}-2.0, 1.0]]} : 2 -> 1
lsrl.module @wide_pair(%x: 1 in [0.0, 3.0]) -> 1 {
  %pos = relu %x : 1 -> 1
  %over_pre = linear %x {A = identity<1>, b = [-1.0]} : 1 -> 1
  %over = relu %over_pre : 1 -> 1
  %cat = concat %pos, %over : 1, 1 -> 2
  %out = linear %cat {A = [[1.0, -2.0]]} : 2 -> 1
  return %out : 1
}
