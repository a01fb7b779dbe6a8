// RUN: lsrl-opt %s -p "debranch,rescale-units" | filecheck %s

// [x > 2.2 (μ = 3000), x > 0.5 (μ = 100)]: the two steps' rows are one row of x, their offsets whole multiples of
// 1/3000 apart, but no reader row reads a unit of one step beside a unit of the other.  Each pair gets its own
// scale, one apart: at the first's, the second pair was 30 apart and its readers read it with 1/30 (an f_eq at
// μ = 100 beside a step at μ = 3000 read 10⁴/3000 as 3.333333333333333, which λ made 8.9·10⁻⁵ off).
// CHECK-LABEL: lsrl.module @apart(
// CHECK:         linear %{{.*}} {A = {{\[\[}}3000.0], [3000.0], [100.0], [100.0]], b = [-6600.0, -6601.0, -50.0, -51.0]} : 1 -> 4
// CHECK-NEXT:    relu
// CHECK-NEXT:    linear %{{.*}} {A = {{\[\[}}1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]]} : 4 -> 2
lsrl.module @apart(%x: 1 {lower = [0.0], upper = [4.0], integer = 1}) -> 2 {
  %diff = linear %x {A = identity<1>, b = [-2.2]} : 1 -> 1
  %scaled = linear %diff {A = [[3000.0]]} : 1 -> 1
  %pos = relu %scaled : 1 -> 1
  %shifted = linear %diff {A = identity<1>, b = [-1/3000]} : 1 -> 1
  %over = relu %shifted : 1 -> 1
  %over_scaled = linear %over {A = [[3000.0]]} : 1 -> 1
  %cat = concat %pos, %over_scaled : 1, 1 -> 2
  %first = linear %cat {A = [[1.0, -1.0]]} : 2 -> 1
  %diff_1 = linear %x {A = identity<1>, b = [-0.5]} : 1 -> 1
  %scaled_1 = linear %diff_1 {A = [[100.0]]} : 1 -> 1
  %pos_1 = relu %scaled_1 : 1 -> 1
  %shifted_1 = linear %diff_1 {A = identity<1>, b = [-1/100]} : 1 -> 1
  %over_1 = relu %shifted_1 : 1 -> 1
  %over_scaled_1 = linear %over_1 {A = [[100.0]]} : 1 -> 1
  %cat_1 = concat %pos_1, %over_scaled_1 : 1, 1 -> 2
  %second = linear %cat_1 {A = [[1.0, -1.0]]} : 2 -> 1
  %out = concat %first, %second : 1, 1 -> 2
  return %out : 2
}
