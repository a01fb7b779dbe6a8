// RUN: lsrl-opt %s -p debranch,rescale-units,materialize-steps | filecheck %s

// x/3 + [x > 2.5] on integers: the readout read the step's units with ±1 beside x/3, and was left alone as its
// products by ±1 are exact — but its sum is not: x/3 + 1500 − 1499 rounds x/3 at 1500's ulp (float32: 512 times
// the program's error, which adds x/3 to the step's 1).  A readout is left alone only where it reads nothing but
// the group; here the step's 0/1 gets its clamp stage, 1 − ReLU(1 − u0), and the readout reads x/3 − C + 1.
// CHECK-LABEL: lsrl.module @step_beside_a_small_value(
// CHECK:         linear %{{.*}} {A = {{\[\[}}3000.0], [3000.0], [1.0]], b = [-7500.0, -7501.0, 0.0]} : 1 -> 3
// CHECK-NEXT:    relu
// CHECK-NEXT:    linear %{{.*}} {A = {{\[\[}}0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]], b = [0.0, 1.0]} : 3 -> 2
// CHECK-NEXT:    relu
// CHECK-NEXT:    linear %{{.*}} {A = {{\[\[}}0.3333333333333333, -1.0]], b = [1.0]} : 2 -> 1
lsrl.module @step_beside_a_small_value(%x: 1 {lower = [0.0], upper = [3.0], integer = 1}) -> 1 {
  %third = linear %x {A = [[0.3333333333333333]]} : 1 -> 1
  %small = relu %third : 1 -> 1
  %scaled = linear %x {A = [[3000.0]], b = [-7500.0]} : 1 -> 1
  %pos = relu %scaled : 1 -> 1
  %over_pre = linear %x {A = [[3000.0]], b = [-7501.0]} : 1 -> 1
  %over = relu %over_pre : 1 -> 1
  %cat = concat %small, %pos, %over : 1, 1, 1 -> 3
  %out = linear %cat {A = [[1.0, 1.0, -1.0]]} : 3 -> 1
  return %out : 1
}
