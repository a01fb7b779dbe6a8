// RUN: lsrl-opt %s -p "debranch,lower{target=mamba,t_max=5}" --check | filecheck %s
// RUN: lsrl-opt %s -p "debranch,lower{target=mamba,activations=standard,t_max=5}" --check | filecheck %s --check-prefix=STD

// Mamba (HF MambaModel blocks, docs/mamba.md): split, S, split, R, split, M, split: a split block before every
// stage block and before norm_f.  Residual stream = input slot 0, hi bank (slots 1-2), value banks (3-4, 5-6).
// Neutralised RMSNorm (weight 2^60, eps 2^120); every channel gated by z = 64 and divided by 64 in out_proj.
// Split: fl32(x) is copied to the hi bank (+1/64) and subtracted from x's slot (-1/64).  S stage: the counter
// integrates in the SSM (A_log = -1024 => decay exactly 1), one channel per split part and sign (hi: relu(x),
// x >= 0; lo: both signs), its weight in Delta = dt_proj.weight * delta = 64 * 1 (delta = 64/64 from the
// constant channel 0, whose own Delta is dt_proj.bias = 32; B = 64/2048 = 1/32, C = 64/64 = 1), out_proj
// 32/(64*64); x passes through (D = 1) reading hi + lo, and the hi slot is cleared.  The readout reads the last
// value's hi (slot 1) and lo (slot 3).  Standard: hidden_act silu, every linear value as a silu(a) - silu(-a) pair.

// CHECK-LABEL: lsrl.module @count_gate
// CHECK:        %L0 = mamba_block %x {norm_weight = [
// CHECK-NEXT:       1.152921504606847e+18,
// CHECK:        norm_eps = 1.329227995784916e+36, in_proj_weight = sparse<28x7>{(0, 0): 1.0}, in_proj_bias = sparse<28>{14: 64.0}
// CHECK:        out_proj_weight = sparse<7x14>{(0, 0): -0.015625, (1, 0): 0.015625}
// CHECK-SAME:   activations = "ideal", embed = [
// CHECK:        ]} : 1 -> 7
// CHECK-NEXT:   %L1 = mamba_block %L0
// CHECK:        in_proj_weight = sparse<28x7>{
// CHECK-NEXT:       (1, 1): 1.0,
// CHECK-NEXT:       (2, 0): 1.0,
// CHECK-NEXT:       (3, 0): -1.0,
// CHECK:        x_proj_weight = [
// CHECK-NEXT:       [0.015625, 0.0,
// CHECK-NEXT:       [0.00048828125, 0.0,
// CHECK-NEXT:       [0.015625, 0.0,
// CHECK:        ], dt_proj_weight = [
// CHECK-NEXT:       [0.0],
// CHECK-NEXT:       [64.0],
// CHECK-NEXT:       [64.0],
// CHECK-NEXT:       [64.0],
// CHECK:        ], dt_proj_bias = [
// CHECK-NEXT:       32.0, 0.0, 0.0, 0.0, -1024.0,
// CHECK:        ], A_log = [
// CHECK-NEXT:       [-1024.0],
// CHECK-NEXT:       [-1024.0],
// CHECK-NEXT:       [-1024.0],
// CHECK-NEXT:       [-1024.0],
// CHECK-NEXT:       [0.0],
// CHECK:        (3, 1): 0.0078125, (3, 2): 0.0078125, (3, 3): -0.0078125,
// CHECK:        activations = "ideal"} : 7 -> 7
// CHECK-NEXT:   %L2 = mamba_block %L1
// CHECK:        activations = "ideal"} : 7 -> 7
// CHECK-NEXT:   %L3 = mamba_block %L2
// CHECK:        activations = "ideal"} : 7 -> 7
// CHECK-NEXT:   %L4 = mamba_block %L3
// CHECK:        activations = "ideal"} : 7 -> 7
// CHECK-NEXT:   %L5 = mamba_block %L4
// CHECK:        activations = "ideal"} : 7 -> 7
// CHECK-NEXT:   %L6 = mamba_block %L5
// CHECK:        activations = "ideal"} : 7 -> 7
// CHECK-NEXT:   %readout = linear %L6 {A = {{\[\[}}0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0]]} : 7 -> 1
// CHECK-NEXT:   return %readout : 1

// STD-LABEL: lsrl.module @count_gate
// STD:        %L0 = mamba_block %x
// STD:        activations = "standard", embed = [
// STD:        ]} : 1 -> 7
// STD-NEXT:   %L1 = mamba_block %L0
// STD:        activations = "standard"} : 7 -> 7
// STD-NEXT:   %L2 = mamba_block %L1
// STD:        activations = "standard"} : 7 -> 7
// STD-NEXT:   %L3 = mamba_block %L2
// STD:        activations = "standard"} : 7 -> 7
// STD-NEXT:   %L4 = mamba_block %L3
// STD:        activations = "standard"} : 7 -> 7
// STD-NEXT:   %L5 = mamba_block %L4
// STD:        activations = "standard"} : 7 -> 7
// STD-NEXT:   %L6 = mamba_block %L5
// STD:        activations = "standard"} : 7 -> 7
// STD-NEXT:   %readout = linear %L6 {A = {{\[\[}}0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0]]} : 7 -> 1
// STD-NEXT:   return %readout : 1

lsrl.module @count_gate(%x: 1 in [0.0, 1.0]) -> 1 {
  %s = linstate %x {A = [[1.0]], B = [[1.0]]} : 1 -> 1
  %d = linear %s {A = [[1.0]], b = [-2.0]} : 1 -> 1
  %r = relu %d : 1 -> 1
  %c = concat %r, %x : 1, 1 -> 2
  %m = multi %c : 2 -> 1
  return %m : 1
}
