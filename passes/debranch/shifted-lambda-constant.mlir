// RUN: lsrl-opt %s -p debranch | filecheck %s
// RUN: lsrl-opt %s -p debranch,rescale-units,materialize-steps,round-to-float | filecheck %s --check-prefix=MODEL

// 0.7x + 1 − λ(1 − step) with x in [−2, 2]: the λ-row reads x through a ReLU stage, shifted by 2, and its constant
// becomes −λ + 1 − 1.4, which float64 keeps only to λ's ulp (2e-6): a float layer form computed 0.7x + 0.99999962
// where the step is 1.  Such a program is debranched in rationals (the whole module: its constants are exact), and
// rescale-units puts the row back at the float 0.7, where λ is a float64 again; materialize-steps folds λ into the
// bias and reads what float64 leaves out of −0.4 from its constant unit (slot 2 of the ReLU before the λ-row).
// CHECK-LABEL: lsrl.module @shifted_carrier
// CHECK:         linear %{{.*}} {A = {{\[\[}}1], [1], [1]], b = [-1/2, -501/1000, 2]} : 1 -> 3
// CHECK:         b = [-45035996275506399850948198/3152519739159347]} : 3 -> 1
// MODEL-LABEL: lsrl.module @shifted_carrier
// MODEL:         linear %{{.*}} {A = {{\[\[}}0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], b = [0.0, 1.0, 1.0]} : 3 -> 3
// MODEL-NEXT:    relu
// MODEL-NEXT:    linear %{{.*}} {A = {{\[\[}}0.7, -10000000000.0, -3.8146972647368216e-07]], b = [-0.39999961853027344]} : 3 -> 1
// MODEL-NEXT:    relu
// MODEL-NEXT:    linear %{{.*}} {A = identity<1>} : 1 -> 1
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
