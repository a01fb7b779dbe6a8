// RUN: lsrl-opt %s -p "debranch{exact=true},rescale-units" | filecheck %s

// An exact layer form is rescaled like a float one (the scales are chosen on its float image) and the scales are
// applied to its exact constants: the step x > 1/3 is held as ReLU(1000 x − 1000/3) − ReLU(1000 x − 1003/3), the
// same map exactly, whose float64 image is the float pipeline's (−333.3333333333333, −334.3333333333333).
// CHECK-LABEL: lsrl.module @larger(%x: 1 in [0.0, 9.0]) -> 1 {
// CHECK:         %[[L:.*]] = linear %{{.*}} {A = {{\[\[}}1000.0], [1000.0]], b = [-1000/3, -1003/3]} : 1 -> 2
// CHECK-NEXT:    %[[R:.*]] = relu %[[L]] : 2 -> 2
// CHECK-NEXT:    %[[O:.*]] = linear %[[R]] {A = {{\[\[}}1.0, -1.0]]} : 2 -> 1
// CHECK-NEXT:    return %[[O]] : 1
lsrl.module @larger(%x: 1 in [0.0, 9.0]) -> 1 {
  %diff = linear %x {A = [[1.0]], b = [-1/3]} : 1 -> 1
  %scaled = linear %diff {A = [[1000.0]]} : 1 -> 1
  %pos = relu %scaled : 1 -> 1
  %shifted = linear %diff {A = identity<1>, b = [-1/1000]} : 1 -> 1
  %over = relu %shifted : 1 -> 1
  %over_scaled = linear %over {A = [[1000.0]]} : 1 -> 1
  %cat = concat %pos, %over_scaled : 1, 1 -> 2
  %out = linear %cat {A = [[1.0, -1.0]]} : 2 -> 1
  return %out : 1
}
