// RUN: lsrl-opt %s -p "debranch,rescale-units" | filecheck %s

// [x > 0.3 (μ = 3000) + ReLU(x), ReLU(x) > 4/3 (μ = 1000)]: the first output reads ReLU(x) beside the first step's
// pair, so it joins their group and is held as 3000·ReLU(x); the second step's rows then read that unit with
// 1/3000.  Its scale is judged in the units debranch wrote its rows in (1000, short) where the stored rows give none
// (0.33333333333337 from the float gap, which made the rows 0.33333333333337·unit − 1333.33333333348: a step whose
// saturation λ-readers read as 1 − 1.1·10⁻¹³).
// CHECK-LABEL: lsrl.module @unit(
// CHECK:         linear %{{.*}} {A = {{\[\[}}3000.0], [3000.0], [3000.0]], b = [-900.0, -901.0, 0.0]} : 1 -> 3
// CHECK:         linear %{{.*}} {A = [
// CHECK-NEXT:      [0.0, 0.0, 0.3333333333333333],
// CHECK-NEXT:      [0.0, 0.0, 0.3333333333333333],
// CHECK-NEXT:      [1.0, -1.0, 0.0003333333333333333]
// CHECK-NEXT:    ], b = [-1333.3333333333333, -1334.3333333333333, 8099.0]} : 3 -> 3
lsrl.module @unit(%x: 1 {lower = [-1.0], upper = [3.0], integer = 1}) -> 2 {
  %diff = linear %x {A = identity<1>, b = [-0.3]} : 1 -> 1
  %scaled = linear %diff {A = [[3000.0]]} : 1 -> 1
  %pos = relu %scaled : 1 -> 1
  %shifted = linear %diff {A = identity<1>, b = [-1/3000]} : 1 -> 1
  %over = relu %shifted : 1 -> 1
  %over_scaled = linear %over {A = [[3000.0]]} : 1 -> 1
  %r = relu %x : 1 -> 1
  %cat = concat %pos, %over_scaled, %r : 1, 1, 1 -> 3
  %first = linear %cat {A = [[1.0, -1.0, 1.0]]} : 3 -> 1
  %diff_1 = linear %r {A = identity<1>, b = [-1.3333333333333333]} : 1 -> 1
  %scaled_1 = linear %diff_1 {A = [[1000.0]]} : 1 -> 1
  %pos_1 = relu %scaled_1 : 1 -> 1
  %shifted_1 = linear %diff_1 {A = identity<1>, b = [-1/1000]} : 1 -> 1
  %over_1 = relu %shifted_1 : 1 -> 1
  %over_scaled_1 = linear %over_1 {A = [[1000.0]]} : 1 -> 1
  %cat_1 = concat %pos_1, %over_scaled_1 : 1, 1 -> 2
  %second = linear %cat_1 {A = [[1.0, -1.0]]} : 2 -> 1
  %out = concat %first, %second : 1, 1 -> 2
  return %out : 2
}
