// RUN: lsrl-opt %s -p debranch | filecheck %s
// RUN: lsrl-opt %s -p debranch,rescale-units,materialize-steps,round-to-float | filecheck %s --check-prefix=MODEL

// 0.7x + 1 − λ(1 − step) with x in [−2, 2]: the λ-row reads x through a ReLU stage.  Shifted into one slot
// (x + 2), the row's constant would become −λ + 1 − 1.4, which float64 keeps only to λ's ulp (2e-6): the layer
// form computed 0.7x + 0.99999962 where the step is 1.  A signed value read beside a λ-sized constant crosses the
// stage as its two halves x⁺, x⁻ (rows 2 and 3 of the first linear), and the λ-row keeps its constant exactly.
// CHECK-LABEL: lsrl.module @shifted_carrier
// CHECK:         linear %{{.*}} {A = {{\[\[}}1.0], [1.0], [1.0], [-1.0]], b = [-0.5, -0.501, 0.0, 0.0]} : 1 -> 4
// CHECK:         linear %{{.*}} {A = {{\[\[}}20000000000000.0, -20000000000000.0, 1.4, -1.4]], b = [-19999999998.0]} : 4 -> 1
// The halves keep the value's own scale (they join no step group): the model reads 0.7·x⁺ − 0.7·x⁻ + 1 − λ·(1 − step).
// MODEL-LABEL: lsrl.module @shifted_carrier
// MODEL:         linear %{{.*}} {A = {{\[\[}}0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [-1.0, 0.0, 0.0, 0.0]], b = [0.0, 0.0, 1.0]} : 4 -> 3
// MODEL-NEXT:    relu
// MODEL-NEXT:    linear %{{.*}} {A = {{\[\[}}0.7, -0.7, -10000000000.0]], b = [1.0]} : 3 -> 1
lsrl.module @shifted_carrier(%x: 1 in [-2.0, 2.0]) -> 1 {
  %pos_pre = linear %x {A = [[1000.0]], b = [-500.0]} : 1 -> 1
  %pos = relu %pos_pre : 1 -> 1
  %over_pre = linear %x {A = [[1000.0]], b = [-501.0]} : 1 -> 1
  %over = relu %over_pre : 1 -> 1
  %cat = concat %pos, %over : 1, 1 -> 2
  %step = linear %cat {A = [[1.0, -1.0]]} : 2 -> 1
  %gate_cat = concat %step, %x : 1, 1 -> 2
  %pre = linear %gate_cat {A = [[10000000000.0, 0.7]], b = [-9999999999.0]} : 2 -> 1
  %out = relu %pre : 1 -> 1
  return %out : 1
}
