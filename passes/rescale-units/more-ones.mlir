// RUN: lsrl-opt %s -p debranch,rescale-units | filecheck %s
// RUN: not lsrl-opt %s -p rescale-units 2>&1 | filecheck %s --check-prefix=NOLAYOUT

// Fig. 1 after debranch reads its step as 1000·ReLU(d) − 1000·ReLU(d − 0.001); rescale-units puts the pair on
// one row with integer biases 0 and −1 (gap 1), so the readout is ReLU(1000 d) − ReLU(1000 d − 1): an exact
// 0 or 1 in float32 whenever 1000·d is an integer below 2^24.
// CHECK-LABEL: lsrl.module @more_ones(%x: 1 in [0.0, 1.0]) -> 1 {
// CHECK-NEXT:    %[[S:.*]] = linstate %x {A = identity<2>, B = {{\[\[}}1.0], [-1.0]], bias = [0.0, 1.0]} : 1 -> 2
// CHECK-NEXT:    %[[L:.*]] = linear %[[S]] {A = {{\[\[}}1000.0, -1000.0], [1000.0, -1000.0]], b = [0.0, -1.0]} : 2 -> 2
// CHECK-NEXT:    %[[R:.*]] = relu %[[L]] : 2 -> 2
// CHECK-NEXT:    %[[O:.*]] = linear %[[R]] {A = {{\[\[}}1.0, -1.0]]} : 2 -> 1
// CHECK-NEXT:    return %[[O]] : 1
// CHECK-NEXT:  }
// NOLAYOUT: rescale-units: expected the layer form
lsrl.module @more_ones(%x: 1 in [0.0, 1.0]) -> 1 {
  %ones = linstate %x {A = identity<1>, B = identity<1>} : 1 -> 1
  %is_zero = linear %x {A = [[-1.0]], b = [1.0]} : 1 -> 1
  %zeros = linstate %is_zero {A = identity<1>, B = identity<1>} : 1 -> 1
  %larger.diff.cat = concat %ones, %zeros : 1, 1 -> 2
  %larger.diff = linear %larger.diff.cat {A = [[1.0, -1.0]]} : 2 -> 1
  %larger.scaled = linear %larger.diff {A = [[1000.0]]} : 1 -> 1
  %larger.pos = relu %larger.scaled : 1 -> 1
  %larger.shifted = linear %larger.diff {A = identity<1>, b = [-1/1000]} : 1 -> 1
  %larger.over = relu %larger.shifted : 1 -> 1
  %larger.over_scaled = linear %larger.over {A = [[1000.0]]} : 1 -> 1
  %larger.cat = concat %larger.pos, %larger.over_scaled : 1, 1 -> 2
  %out = linear %larger.cat {A = [[1.0, -1.0]]} : 2 -> 1
  return %out : 1
}
