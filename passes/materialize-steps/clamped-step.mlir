// RUN: lsrl-opt %s -p debranch,rescale-units,materialize-steps | filecheck %s
// RUN: lsrl-opt %s -p 'debranch,rescale-units,materialize-steps{clamp=false}' | filecheck %s --check-prefix=DIFF
// RUN: lsrl-opt %s -p 'debranch,rescale-units,materialize-steps{clamp_limit=3.0}' | filecheck %s --check-prefix=DIFF
// RUN: lsrl-opt %s -p 'debranch,rescale-units,materialize-steps{clamp_limit=3.5}' | filecheck %s

// 3·[x > 4.5] + x. The step's 0/1 is the group difference u0 − u1 of ReLU(1000x − 4500) and ReLU(1000x − 4501):
// exact on integers, but on a saturated step whose input carries rounding (a rotation counter's cos) u0 − u1
// rounds at |u0|. materialize-steps reads it through its clamp instead, 1 − ReLU(1 − u0) (u1 = ReLU(u0 − 1)
// for every x): on a saturated step ReLU(1 − u0) is an exact 0 or 1 whatever rounding u0 has, and the reader
// takes the constant 3 into its bias. With clamp=false, or a clamp_limit the reader's weight 3 reaches (the
// standard GRU's 2^24: its clamp is a ReLU pair, refused under λ-weights), the difference unit reads both units.
// CHECK-LABEL: lsrl.module @clamped(%x: 1 in [0.0, 9.0]) -> 1 {
// CHECK:       %[[P:.*]] = linear %{{.*}} {A = {{\[\[}}1000.0], [1000.0], [1.0]], b = [-4500.0, -4501.0, 0.0]} : 1 -> 3
// CHECK-NEXT:  %[[U:.*]] = relu %[[P]] : 3 -> 3
// CHECK-NEXT:  %[[D:.*]] = linear %[[U]] {A = {{\[\[}}0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]], b = [0.0, 1.0]} : 3 -> 2
// CHECK-NEXT:  %[[S:.*]] = relu %[[D]] : 2 -> 2
// CHECK-NEXT:  linear %[[S]] {A = {{\[\[}}1.0, -3.0]], b = [3.0]} : 2 -> 1
// DIFF:        %[[D:.*]] = linear %{{.*}} {A = {{\[\[}}0.0, 0.0, 1.0], [1.0, -1.0, 0.0]]} : 3 -> 2
// DIFF-NEXT:   %[[S:.*]] = relu %[[D]] : 2 -> 2
// DIFF-NEXT:   linear %[[S]] {A = {{\[\[}}1.0, 3.0]]} : 2 -> 1
lsrl.module @clamped(%x: 1 in [0.0, 9.0]) -> 1 {
  %big.diff = linear %x {A = identity<1>, b = [-4.5]} : 1 -> 1
  %big.scaled = linear %big.diff {A = [[1000.0]]} : 1 -> 1
  %big.pos = relu %big.scaled : 1 -> 1
  %big.shifted = linear %big.diff {A = identity<1>, b = [-1/1000]} : 1 -> 1
  %big.over = relu %big.shifted : 1 -> 1
  %big.over_scaled = linear %big.over {A = [[1000.0]]} : 1 -> 1
  %big.cat = concat %big.pos, %big.over_scaled : 1, 1 -> 2
  %big = linear %big.cat {A = [[1.0, -1.0]]} : 2 -> 1
  %out.cat = concat %big, %x : 1, 1 -> 2
  %out = linear %out.cat {A = [[3.0, 1.0]]} : 2 -> 1
  return %out : 1
}
