// RUN: lsrl-opt %s -p "debranch,lower{target=hawk,t_max=3}" --check | filecheck %s
// RUN: lsrl-opt %s -p "debranch,lower{target=hawk,activations=standard,t_max=3}" --check | filecheck %s --check-prefix=STD

// Hawk (HF RecurrentGemmaModel, recurrent blocks; docs/recurrentgemma.md).  The stream has H = 16 slots (a
// power of 4: the bf16 normalizer 4 is exact, the embedding scales by 1/4).  Norms are neutral (eps = 2^100,
// weight 2^50 - 1), the RG-LRU is the identity (Lambda = 128, gate biases 64), the y branch the constant 32.
// B0 splits the input x (slot 0) into hi (slot 1, what HF's float32 norm reads) and lo = x - hi (slot 0).
// B1 is the counter S stage as a delay line: channels (hi, lo) x lags 0..2, one conv tap each (lag i at tap
// K-1-i), recombined by linear_out = A^i B / 32 into slot 2 (and the carried x into slot 3).  B2 splits those,
// cancels x's slots 0 and 1 (reused for the new hi parts) and its MLP holds the ReLU (gate = s - 2, up = 1)
// and the carrier of x (gate = 32, up = x, down 1/32).  Standard: the ReLU is gelu(2^79 (s - 2)) * 2^-79
// (kappa * max|s - 2| = 2^80, s in [0, 3]).

// CHECK-LABEL: lsrl.module @count_gate
// CHECK:       %embed = rg_embed %x {embed = [
// CHECK-NEXT:      [0.25],
// CHECK:       ], normalizer = 4.0} : 1 -> 16
// CHECK-NEXT:  %B0 = rg_recurrent_block %embed {temporal_pre_norm_weight = [
// CHECK-NEXT:      1125899906842623.0,
// CHECK:       ], linear_x_weight = sparse<8x16>{(0, 0): 1.0}, linear_x_bias = zeros<8>, linear_out_weight = sparse<16x8>{
// CHECK-NEXT:      (0, 0): -0.03125,
// CHECK-NEXT:      (1, 0): 0.03125
// CHECK:       rg_lru_recurrent_param = [
// CHECK-NEXT:      128.0,
// CHECK:       rg_lru_input_gate_weight = zeros<8x8>, rg_lru_input_gate_bias = [
// CHECK-NEXT:      64.0,
// CHECK:       eps = 1.2676506002282294e+30, activations = "ideal"} : 16 -> 16
// CHECK-NEXT:  %B1 = rg_recurrent_block %B0
// CHECK:       linear_out_weight = sparse<16x8>{
// CHECK-NEXT:      (2, 0): 0.03125, (2, 1): 0.03125, (2, 2): 0.03125, (2, 3): 0.03125, (2, 4): 0.03125,
// CHECK-NEXT:      (2, 5): 0.03125,
// CHECK-NEXT:      (3, 0): 0.03125, (3, 1): 0.03125
// CHECK-NEXT:    }, linear_out_bias = zeros<16>, conv_1d_weight = [
// CHECK-NEXT:      [0.0, 0.0, 1.0],
// CHECK-NEXT:      [0.0, 0.0, 1.0],
// CHECK-NEXT:      [0.0, 1.0, 0.0],
// CHECK-NEXT:      [0.0, 1.0, 0.0],
// CHECK-NEXT:      [1.0, 0.0, 0.0],
// CHECK-NEXT:      [1.0, 0.0, 0.0],
// CHECK:       %B2 = rg_recurrent_block %B1
// CHECK:       linear_out_weight = sparse<16x8>{
// CHECK-NEXT:      (0, 3): -0.03125,
// CHECK-NEXT:      (1, 2): -0.03125,
// CHECK-NEXT:      (2, 0): -0.03125,
// CHECK-NEXT:      (3, 1): -0.03125,
// CHECK-NEXT:      (4, 0): 0.03125,
// CHECK-NEXT:      (5, 1): 0.03125
// CHECK:       mlp_gate_proj_bias = [-2.0, 32.0]
// CHECK:       %B3 = rg_recurrent_block %B2
// CHECK:       %final_norm = rg_final_norm
// CHECK:       %readout = linear %final_norm
// CHECK:       return %readout : 1

// STD-LABEL: lsrl.module @count_gate
// STD:       %B2 = rg_recurrent_block %B1
// STD:       [0.0, 0.0, 6.044629098073146e+23, 0.0, 6.044629098073146e+23, 0.0,
// STD:       mlp_gate_proj_bias = [-1.2089258196146292e+24, 32.0]
// STD:       mlp_up_proj_bias = [1.6543612251060553e-24, 0.0]
// STD:       activations = "standard"} : 16 -> 16

lsrl.module @count_gate(%x: 1 in [0.0, 1.0]) -> 1 {
  %s = linstate %x {A = [[1.0]], B = [[1.0]]} : 1 -> 1
  %d = linear %s {A = [[1.0]], b = [-2.0]} : 1 -> 1
  %r = relu %d : 1 -> 1
  %c = concat %r, %x : 1, 1 -> 2
  %m = multi %c : 2 -> 1
  return %m : 1
}
