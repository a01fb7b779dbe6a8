// RUN: lsrl-opt %s -p debranch,rescale-units,materialize-steps | filecheck %s

// relu(1 − x) selected by λ = 10¹⁰ where x < 1 is also the first ReLU of that step: debranch keeps it twice (one
// unit per scale), and rescale-units puts both on the step's row (units 0 and 2 are one value: same row, same
// bias).  The reader takes the loud one (−10¹⁰) into the step's difference, read through its clamp
// ReLU(1 − u0), and the soft one (10⁻³·u2, the value) as it is: −λ + λ·(1 − C) folds into −λ·C.
// CHECK-LABEL: lsrl.module @step_relu_is_a_value
// CHECK:         linear %{{.*}} {A = {{\[\[}}-1000.0], [-1000.0], [-1000.0]], b = [1000.0, 999.0, 1000.0]} : 1 -> 3
// CHECK:         linear %{{.*}} {A = {{\[\[}}0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]], b = [0.0, 1.0]} : 3 -> 2
// CHECK:         linear %{{.*}} {A = {{\[\[}}0.001, -10000000000.0]]} : 2 -> 1
lsrl.module @step_relu_is_a_value(%x: 1 in [-3.0, 3.0]) -> 1 {
  %pos_pre = linear %x {A = [[-1000.0]], b = [1000.0]} : 1 -> 1
  %pos = relu %pos_pre : 1 -> 1
  %over_pre = linear %x {A = [[-1000.0]], b = [999.0]} : 1 -> 1
  %over = relu %over_pre : 1 -> 1
  %cat = concat %pos, %over : 1, 1 -> 2
  %step = linear %cat {A = [[1.0, -1.0]]} : 2 -> 1
  %value_pre = linear %x {A = [[-1.0]], b = [1.0]} : 1 -> 1
  %value = relu %value_pre : 1 -> 1
  %gate_cat = concat %step, %value : 1, 1 -> 2
  %pre = linear %gate_cat {A = [[10000000000.0, 1.0]], b = [-10000000000.0]} : 2 -> 1
  %out = relu %pre : 1 -> 1
  return %out : 1
}
