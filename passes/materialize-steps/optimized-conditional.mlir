// RUN: lsrl-opt %s -p debranch,rescale-units,materialize-steps | filecheck %s
// RUN: lsrl-opt %s -p debranch,rescale-units | filecheck %s --check-prefix=FUSED
// RUN: not lsrl-opt %s -p materialize-steps 2>&1 | filecheck %s --check-prefix=CHAIN

// x < 4.5 ? x : 0 written as the `optimized` conditional ReLU(x − λ·[x > 4.5]), λ = 1e10. The layer form fuses
// the step into the λ row: 1e10·ReLU(1000x − 4500) − 1e10·ReLU(1000x − 4501), where each product rounds at
// 1e10 · 4500 (float32: ~4e6) before the two cancel. materialize-steps forms the step's 0/1 first (one more
// ReLU stage: the carrier of x and ReLU(u0 − u1)), and λ then multiplies an exact 0 or 1.
// FUSED:       %[[R:.*]] = relu
// FUSED-NEXT:  linear %[[R]] {A = {{\[\[}}-10000000000.0, 10000000000.0, 1.0]]} : 3 -> 1
// CHECK-LABEL: lsrl.module @keep_small(%x: 1 in [0.0, 9.0]) -> 1 {
// The carrier of x joins no step group: it is held as x itself, so the output reads it with 1 (not 0.001).
// CHECK:       %[[P:.*]] = linear %{{.*}} {A = {{\[\[}}1000.0], [1000.0], [1.0]], b = [-4500.0, -4501.0, 0.0]} : 1 -> 3
// CHECK-NEXT:  %[[U:.*]] = relu %[[P]] : 3 -> 3
// CHECK-NEXT:  %[[D:.*]] = linear %[[U]] {A = {{\[\[}}0.0, 0.0, 1.0], [1.0, -1.0, 0.0]]} : 3 -> 2
// CHECK-NEXT:  %[[S:.*]] = relu %[[D]] : 2 -> 2
// CHECK-NEXT:  %[[O:.*]] = linear %[[S]] {A = {{\[\[}}1.0, -10000000000.0]]} : 2 -> 1
// CHECK-NEXT:  %[[Y:.*]] = relu %[[O]] : 1 -> 1
// CHECK-NEXT:  return %[[Y]] : 1
// CHAIN: materialize-steps: expected the layer form
lsrl.module @keep_small(%x: 1 in [0.0, 9.0]) -> 1 {
  %big.diff = linear %x {A = identity<1>, b = [-4.5]} : 1 -> 1
  %big.scaled = linear %big.diff {A = [[1000.0]]} : 1 -> 1
  %big.pos = relu %big.scaled : 1 -> 1
  %big.shifted = linear %big.diff {A = identity<1>, b = [-1/1000]} : 1 -> 1
  %big.over = relu %big.shifted : 1 -> 1
  %big.over_scaled = linear %big.over {A = [[1000.0]]} : 1 -> 1
  %big.cat = concat %big.pos, %big.over_scaled : 1, 1 -> 2
  %big = linear %big.cat {A = [[1.0, -1.0]]} : 2 -> 1
  %keep.t_pos.gate = linear %big {A = [[-10000000000.0]]} : 1 -> 1
  %keep.t_pos.pre.cat = concat %keep.t_pos.gate, %x : 1, 1 -> 2
  %keep.t_pos.pre = linear %keep.t_pos.pre.cat {A = [[1.0, 1.0]]} : 2 -> 1
  %keep = relu %keep.t_pos.pre : 1 -> 1
  return %keep : 1
}
