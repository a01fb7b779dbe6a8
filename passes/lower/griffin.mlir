// RUN: lsrl-opt %s -p "debranch,lower{target=griffin,t_max=4}" --check | filecheck %s

// Griffin (HF RecurrentGemmaModel, block cycle recurrent/recurrent/attention; docs/recurrentgemma.md).  Every
// third block is an rg_attention_block whose local attention is zeroed (o_proj weight and bias 0: the block
// adds nothing); S stages and the hi/lo splits need recurrent temporal blocks, so here the attention blocks
// stay idle.  The stream is H = 4 wide (normalizer 2).

// CHECK-LABEL: lsrl.module @relus
// CHECK:       %embed = rg_embed %x {embed = [[0.5], [0.0], [0.0], [0.0]], normalizer = 2.0} : 1 -> 4
// CHECK:       %B0 = rg_recurrent_block %embed
// CHECK:       %B1 = rg_recurrent_block %B0
// CHECK:       %B2 = rg_attention_block %B1 {temporal_pre_norm_weight = [
// CHECK:       ], o_proj_weight = zeros<4x4>, o_proj_bias = zeros<4>, channel_pre_norm_weight = [
// CHECK:       %B3 = rg_recurrent_block %B2
// CHECK:       mlp_gate_proj_weight = {{\[\[}}0.0, 0.0, 1.0, 1.0]], mlp_gate_proj_bias = [-1.0]
// CHECK:       %B4 = rg_recurrent_block %B3
// CHECK:       mlp_gate_proj_weight = {{\[\[}}1.0, 1.0, 0.0, 0.0]], mlp_gate_proj_bias = [-0.5]
// CHECK:       %B5 = rg_attention_block %B4
// CHECK:       %final_norm = rg_final_norm %B9
// CHECK:       return %readout : 1

lsrl.module @relus(%x: 1 in [0.0, 1.0]) -> 1 {
  %s = linstate %x {A = [[1.0]], B = [[1.0]]} : 1 -> 1
  %r1 = relu %s : 1 -> 1
  %d2 = linear %r1 {A = [[1.0]], b = [-1.0]} : 1 -> 1
  %r2 = relu %d2 : 1 -> 1
  %d3 = linear %r2 {A = [[2.0]], b = [-1.0]} : 1 -> 1
  %r3 = relu %d3 : 1 -> 1
  %s2 = linstate %r3 {A = [[1.0]], B = [[1.0]]} : 1 -> 1
  return %s2 : 1
}
