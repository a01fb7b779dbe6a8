// RUN: lsrl-opt %s -p "debranch,rescale-units" | filecheck %s

// x < 1.1 at μ = 2: the pair's biases at scale 2 are 2·fl(1.1) = 2.2 and 2·(fl(1.1) − 1/2) =
// 1.2000000000000002, exactly one apart.  Snapped to 2.2 and 1.2 they were 1.0000000000000002 apart, and λ read
// the step's 1 as 2.2·10⁻⁶ off; a step group keeps the whole-number gaps it had before the snap.
// CHECK-LABEL: lsrl.module @doubled(
// CHECK:         linear %{{.*}} {A = {{\[\[}}-2.0], [-2.0]], b = [2.2, 1.2000000000000002]} : 1 -> 2
// CHECK-NEXT:    relu
lsrl.module @doubled(%x: 1 {lower = [-4.0], upper = [4.0], integer = 1}) -> 1 {
  %diff = linear %x {A = [[-1.0]], b = [1.1]} : 1 -> 1
  %scaled = linear %diff {A = [[2.0]]} : 1 -> 1
  %pos = relu %scaled : 1 -> 1
  %shifted = linear %diff {A = identity<1>, b = [-1/2]} : 1 -> 1
  %over = relu %shifted : 1 -> 1
  %over_scaled = linear %over {A = [[2.0]]} : 1 -> 1
  %cat = concat %pos, %over_scaled : 1, 1 -> 2
  %step = linear %cat {A = [[1.0, -1.0]]} : 2 -> 1
  return %step : 1
}
