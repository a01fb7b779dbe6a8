// RUN: lsrl-opt %s -p "debranch,rescale-units" | filecheck %s

// x < 1.9 at μ = 1: the step's rows keep their scale 1, and the second ReLU's bias is fl(1.9) − 1 =
// 0.8999999999999999 exactly.  A snap is for the rounding of a rescaled entry; this one was not rescaled, and its
// one-digit neighbour 0.9 would put the pair 0.9999999999999999 apart (λ read the step's 1 as 1.1·10⁻⁶ off).
// CHECK-LABEL: lsrl.module @unscaled(
// CHECK:         linear %{{.*}} {A = {{\[\[}}-1.0], [-1.0]], b = [1.9, 0.8999999999999999]} : 1 -> 2
// CHECK-NEXT:    relu
lsrl.module @unscaled(%x: 1 {lower = [-4.0], upper = [4.0], integer = 1}) -> 1 {
  %diff = linear %x {A = [[-1.0]], b = [1.9]} : 1 -> 1
  %pos = relu %diff : 1 -> 1
  %shifted = linear %diff {A = identity<1>, b = [-1.0]} : 1 -> 1
  %over = relu %shifted : 1 -> 1
  %cat = concat %pos, %over : 1, 1 -> 2
  %step = linear %cat {A = [[1.0, -1.0]]} : 2 -> 1
  return %step : 1
}
