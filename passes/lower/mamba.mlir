// RUN: lsrl-opt %s -p "debranch,lower{target=mamba,t_max=5}" --check | filecheck %s
// RUN: lsrl-opt %s -p "debranch,lower{target=mamba,activations=standard,t_max=5}" --check | filecheck %s --check-prefix=STD

// Mamba (HF MambaModel blocks, docs/mamba.md): one mamba_block per stage, residual stream = input slot 0 + two
// banks (slots 1-2, 3-4).  Neutralised RMSNorm (weight 2^60, eps 2^120); every channel gated by z = 64 and
// divided by 64 in out_proj.  S stage: the counter integrates in the SSM (A_log = -1024 => decay exactly 1,
// dt bias 32 => Delta = 32, B = 64/2048 = 1/32 and C = 64/64 = 1 from the constant channel 0), x passes through
// (D = 1).  M stage: the product r*x goes through the gate, x scaled by 64 and shifted by 256
// (in_proj row 10 of the gate half), minus 256/64 * r (out_proj -0.0625); the block also clears the bank it
// reads (-1/64) and the float32 residue of the bank it writes.  Standard: hidden_act silu, every linear value
// as a silu(a) - silu(-a) pair.

// CHECK-LABEL: lsrl.module @count_gate
// CHECK:        %L0 = mamba_block %x {norm_weight = [
// CHECK-NEXT:       1.152921504606847e+18,
// CHECK:        norm_eps = 1.329227995784916e+36, in_proj_weight = sparse<20x5>{(1, 0): 1.0, (2, 0): 1.0}, in_proj_bias = sparse<20>{
// CHECK-NEXT:       10: 64.0, 11: 64.0, 12: 64.0
// CHECK-NEXT:     }, conv1d_weight = {{\[\[}}0.0], [1.0], [1.0],
// CHECK-SAME:   conv1d_bias = [
// CHECK-NEXT:       64.0, 0.0,
// CHECK:            [0.00048828125, 0.0,
// CHECK-NEXT:       [0.015625, 0.0,
// CHECK:        dt_proj_bias = [
// CHECK-NEXT:       32.0, 32.0, -1024.0,
// CHECK-NEXT:     ], A_log = {{\[\[}}-1024.0], [-1024.0], [0.0],
// CHECK-SAME:   D = [
// CHECK-NEXT:       0.0, 0.0, 1.0, 0.0,
// CHECK:        activations = "ideal", embed = {{\[\[}}1.0], [0.0], [0.0], [0.0], [0.0]]} : 1 -> 5
// CHECK-NEXT:   %L1 = mamba_block %L0
// CHECK:        in_proj_bias = sparse<20>{0: -2.0, 10: 64.0, 11: 64.0, 12: 64.0, 13: 64.0}
// CHECK:        activations = "ideal"} : 5 -> 5
// CHECK-NEXT:   %L2 = mamba_block %L1
// CHECK:          (10, 4): 64.0
// CHECK:        in_proj_bias = [
// CHECK-NEXT:       0.0, 0.0, 0.0, 0.0, 0.0, -0.0, 0.0, -0.0, 0.0, 0.0, 256.0, 64.0,
// CHECK:        out_proj_weight = [
// CHECK-NEXT:       [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
// CHECK-NEXT:       [0.015625, -0.0625, 0.0, 0.0, -0.015625, 0.015625, 0.0, 0.0, 0.0, 0.0],
// CHECK:        activations = "ideal"} : 5 -> 5
// CHECK-NEXT:   %readout = linear %L2 {A = {{\[\[}}0.0, 1.0, 0.0, 0.0, 0.0]]} : 5 -> 1
// CHECK-NEXT:   return %readout : 1

// STD-LABEL: lsrl.module @count_gate
// STD:        %L0 = mamba_block %x
// STD:        activations = "standard", embed = {{\[\[}}1.0], [0.0], [0.0], [0.0], [0.0]]} : 1 -> 5
// STD-NEXT:   %L1 = mamba_block %L0
// STD:        activations = "standard"} : 5 -> 5
// STD-NEXT:   %L2 = mamba_block %L1
// STD:        activations = "standard"} : 5 -> 5
// STD-NEXT:   %readout = linear %L2 {A = {{\[\[}}0.0, 1.0, 0.0, 0.0, 0.0]]} : 5 -> 1

lsrl.module @count_gate(%x: 1 in [0.0, 1.0]) -> 1 {
  %s = linstate %x {A = [[1.0]], B = [[1.0]]} : 1 -> 1
  %d = linear %s {A = [[1.0]], b = [-2.0]} : 1 -> 1
  %r = relu %d : 1 -> 1
  %c = concat %r, %x : 1, 1 -> 2
  %m = multi %c : 2 -> 1
  return %m : 1
}
