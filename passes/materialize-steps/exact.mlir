// RUN: lsrl-opt %s -p "debranch{exact=true},rescale-units,materialize-steps" | filecheck %s

// An exact layer form gets the float pipeline's stages (every decision is taken on its float64 image) with exact
// constants: f_ifelse(x > 1/3, x, 2x) keeps its step's exact thresholds −1000/3 and −1003/3, and λ = 10^10 reads
// the step's 0/1 from its own units — D = ReLU(u0 − u1) and its clamp ReLU(1 − u0) — as in a float module.
// CHECK-LABEL: lsrl.module @main(%0: 1 in [0.0, 3.0]) -> 1 {
// CHECK:         linear %{{.*}} {A = {{\[\[}}1000.0], [1000.0], [1.0]], b = [-1000/3, -1003/3, 0]} : 1 -> 3
// CHECK-NEXT:    %[[R:.*]] = relu %{{.*}} : 3 -> 3
// CHECK-NEXT:    %[[D:.*]] = linear %[[R]] {A = {{\[\[}}0.0, 0.0, 1.0], [1.0, -1.0, 0.0], [-1.0, 0.0, 0.0]], b = [0.0, 0.0, 1.0]} : 3 -> 3
// CHECK-NEXT:    %[[U:.*]] = relu %[[D]] : 3 -> 3
// CHECK-NEXT:    linear %[[U]] {A = [
// CHECK-NEXT:      [2.0, -10000000000.0, 0.0],
// CHECK-NEXT:      [1.0, 0.0, -10000000000.0],
// CHECK-NEXT:      [-2.0, -10000000000.0, 0.0],
// CHECK-NEXT:      [-1.0, 0.0, -10000000000.0]
// CHECK-NEXT:    ]} : 3 -> 4
lsrl.module @main(%0: 1 in [0.0, 3.0]) -> 1 {
  %larger.diff = linear %0 {A = identity<1>, b = [-1/3]} : 1 -> 1
  %larger.scaled = linear %larger.diff {A = [[1000.0]]} : 1 -> 1
  %larger.pos = relu %larger.scaled : 1 -> 1
  %larger.shifted = linear %larger.diff {A = identity<1>, b = [-1/1000]} : 1 -> 1
  %larger.over = relu %larger.shifted : 1 -> 1
  %larger.over_scaled = linear %larger.over {A = [[1000.0]]} : 1 -> 1
  %larger.cat = concat %larger.pos, %larger.over_scaled : 1, 1 -> 2
  %larger = linear %larger.cat {A = [[1.0, -1.0]]} : 2 -> 1
  %ifelse.f_pos.gate = linear %larger {A = [[-10000000000.0]]} : 1 -> 1
  %1 = linear %0 {A = [[2.0]]} : 1 -> 1
  %ifelse.f_pos.pre.cat = concat %ifelse.f_pos.gate, %1 : 1, 1 -> 2
  %ifelse.f_pos.pre = linear %ifelse.f_pos.pre.cat {A = [[1.0, 1.0]]} : 2 -> 1
  %ifelse.f_pos = relu %ifelse.f_pos.pre : 1 -> 1
  %ifelse.t_pos.gate.not_cond = linear %larger {A = [[-1.0]], b = [1.0]} : 1 -> 1
  %ifelse.t_pos.gate = linear %ifelse.t_pos.gate.not_cond {A = [[-10000000000.0]]} : 1 -> 1
  %ifelse.t_pos.pre.cat = concat %ifelse.t_pos.gate, %0 : 1, 1 -> 2
  %ifelse.t_pos.pre = linear %ifelse.t_pos.pre.cat {A = [[1.0, 1.0]]} : 2 -> 1
  %ifelse.t_pos = relu %ifelse.t_pos.pre : 1 -> 1
  %ifelse.acc1.cat = concat %ifelse.f_pos, %ifelse.t_pos : 1, 1 -> 2
  %ifelse.acc1 = linear %ifelse.acc1.cat {A = [[1.0, 1.0]]} : 2 -> 1
  %ifelse.f_neg.gate = linear %larger {A = [[-10000000000.0]]} : 1 -> 1
  %ifelse.f_neg.pre.cat = concat %ifelse.f_neg.gate, %1 : 1, 1 -> 2
  %ifelse.f_neg.pre = linear %ifelse.f_neg.pre.cat {A = [[1.0, -1.0]]} : 2 -> 1
  %ifelse.f_neg = relu %ifelse.f_neg.pre : 1 -> 1
  %ifelse.acc2.cat = concat %ifelse.acc1, %ifelse.f_neg : 1, 1 -> 2
  %ifelse.acc2 = linear %ifelse.acc2.cat {A = [[1.0, -1.0]]} : 2 -> 1
  %ifelse.t_neg.gate.not_cond = linear %larger {A = [[-1.0]], b = [1.0]} : 1 -> 1
  %ifelse.t_neg.gate = linear %ifelse.t_neg.gate.not_cond {A = [[-10000000000.0]]} : 1 -> 1
  %ifelse.t_neg.pre.cat = concat %ifelse.t_neg.gate, %0 : 1, 1 -> 2
  %ifelse.t_neg.pre = linear %ifelse.t_neg.pre.cat {A = [[1.0, -1.0]]} : 2 -> 1
  %ifelse.t_neg = relu %ifelse.t_neg.pre : 1 -> 1
  %ifelse.cat = concat %ifelse.acc2, %ifelse.t_neg : 1, 1 -> 2
  %ifelse = linear %ifelse.cat {A = [[1.0, -1.0]]} : 2 -> 1
  return %ifelse : 1
}
