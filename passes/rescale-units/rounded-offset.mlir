// RUN: lsrl-opt %s -p "debranch,rescale-units" | filecheck %s

// A float layer form of the step x > 100000.5: debranch rounds the offset 100000.501 to 100000.50099999999, which
// is 10⁻³(1 − 3.8·10⁻⁹) from 100000.5, and records the exact bias; rescale-units takes the pair's gap from it, scales
// the pair by 1000 and rounds each bias once, at that scale — the pair's rows one apart (the float gap alone had
// given the scale 999.9999961582944 and the biases −100000499.61582752, −100000500.61582752).
// CHECK-LABEL: lsrl.module @larger(%x: 1 in [0.0, 200000.0]) -> 1 {
// CHECK:         %[[L:.*]] = linear %{{.*}} {A = {{\[\[}}1000.0], [1000.0]], b = [-100000500.0, -100000501.0]} : 1 -> 2
// CHECK-NEXT:    %[[R:.*]] = relu %[[L]] : 2 -> 2
// CHECK-NEXT:    %[[O:.*]] = linear %[[R]] {A = {{\[\[}}1.0, -1.0]]} : 2 -> 1
// CHECK-NEXT:    return %[[O]] : 1
lsrl.module @larger(%x: 1 in [0.0, 200000.0]) -> 1 {
  %diff = linear %x {A = [[1.0]], b = [-100000.5]} : 1 -> 1
  %scaled = linear %diff {A = [[1000.0]]} : 1 -> 1
  %pos = relu %scaled : 1 -> 1
  %shifted = linear %diff {A = identity<1>, b = [-1/1000]} : 1 -> 1
  %over = relu %shifted : 1 -> 1
  %over_scaled = linear %over {A = [[1000.0]]} : 1 -> 1
  %cat = concat %pos, %over_scaled : 1, 1 -> 2
  %out = linear %cat {A = [[1.0, -1.0]]} : 2 -> 1
  return %out : 1
}
