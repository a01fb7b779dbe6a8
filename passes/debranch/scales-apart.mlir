// RUN: lsrl-opt %s --split-input-file -p debranch | filecheck %s

// relu(1 − x) is both a step's first ReLU (at scale 1000: relu(1000 − 1000x)) and a value λ selects.  Shared,
// the reader's weight on it was λ·1000 + 1 = 10¹³ + 1, which rescale-units turns into 10¹⁰ + 0.001 on the
// step's scale — no float64 — and the value came out 0.05 % off.  Read by λ, the row is one unit per scale
// (rows 0 and 2), and the reader's weights are the step's (±10¹³) and the value's (1), over 2⁴³.
// CHECK-LABEL: lsrl.module @step_relu_is_a_value
// CHECK:         linear %{{.*}} {A = {{\[\[}}-1.0], [-1.0], [-1.0]], b = [1.0, 0.999, 1.0]} : 1 -> 3
// CHECK:         linear %{{.*}} {A = {{\[\[}}1.1368683772161603, -1.1368683772161603, 1.1368683772161603e-13]], b = [-0.0011368683772161603]} : 3 -> 1
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

// -----
// The same program without λ: nothing loses the value, and the ReLU stays one unit (two rows).
// CHECK-LABEL: lsrl.module @step_relu_and_value
// CHECK:         linear %{{.*}} {A = {{\[\[}}-1.0], [-1.0]], b = [1.0, 0.999]} : 1 -> 2
lsrl.module @step_relu_and_value(%x: 1 in [-3.0, 3.0]) -> 1 {
  %pos_pre = linear %x {A = [[-1000.0]], b = [1000.0]} : 1 -> 1
  %pos = relu %pos_pre : 1 -> 1
  %over_pre = linear %x {A = [[-1000.0]], b = [999.0]} : 1 -> 1
  %over = relu %over_pre : 1 -> 1
  %cat = concat %pos, %over : 1, 1 -> 2
  %step = linear %cat {A = [[1.0, -1.0]]} : 2 -> 1
  %value_pre = linear %x {A = [[-1.0]], b = [1.0]} : 1 -> 1
  %value = relu %value_pre : 1 -> 1
  %gate_cat = concat %step, %value : 1, 1 -> 2
  %out = linear %gate_cat {A = [[2.0, 1.0]]} : 2 -> 1
  return %out : 1
}
