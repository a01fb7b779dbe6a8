// RUN: lsrl-opt %s -p debranch,rescale-units | filecheck %s

// A step of a step on integers: [x > 0] = 1000x − 1000·ReLU(x − 0.001) (its first ReLU is linear for x ≥ 0),
// then [0.5 − that > 0].  ReLU(x − 0.001) is put on integers as ReLU(1000x − 1) (exact where 0.999 is not) — a
// multiplier first refused, since the second step's row still read it with weight 1 (0.001 after it), and
// granted once that row is on its own scale (10⁶, then 1000).
// CHECK-LABEL: lsrl.module @step_of_a_step
// CHECK:         linear %{{.*}} {A = {{\[\[}}1000.0], [1.0]], b = [-1.0, 0.0]} : 1 -> 2
// CHECK:         linear %{{.*}} {A = {{\[\[}}1000.0, -1000000.0], [1000.0, -1000000.0]], b = [500.0, 499.0]} : 2 -> 2
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
