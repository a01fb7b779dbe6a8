// RUN: lsrl-opt %s --split-input-file -p debranch | filecheck %s

// A step's first ReLU is linear on the domain (x >= 0: relu(1000x) = 1000x) but its partner relu(1000x - 1) is
// not: the two stay units of one direction (rows 0 and 1), so materialize-steps can read the step through its
// clamp; fused as a row, the reader held 1000x * 1e10 + x = 1e13 + 1 for x, which float32 rounds to 1e13.
// CHECK-LABEL: lsrl.module @linear_first_relu
// CHECK:         linear %{{.*}} {A = {{\[\[}}1.0], [1.0], [1.0]], b = [0.0, -0.001, 0.0]} : 1 -> 3
// CHECK:         linear %{{.*}} {A = {{\[\[}}10000000000000.0, -10000000000000.0, 1.0]], b = [-10000000000.0]} : 3 -> 1
lsrl.module @linear_first_relu(%x: 1 in [0.0, 3.0]) -> 1 {
  %pos_pre = linear %x {A = [[1000.0]]} : 1 -> 1
  %pos = relu %pos_pre : 1 -> 1
  %over_pre = linear %x {A = [[1000.0]], b = [-1.0]} : 1 -> 1
  %over = relu %over_pre : 1 -> 1
  %cat = concat %pos, %over : 1, 1 -> 2
  %step = linear %cat {A = [[1.0, -1.0]]} : 2 -> 1
  %gate_cat = concat %step, %x : 1, 1 -> 2
  %pre = linear %gate_cat {A = [[10000000000.0, 1.0]], b = [-10000000000.0]} : 2 -> 1
  %out = relu %pre : 1 -> 1
  return %out : 1
}

// -----
// The λ-row x + λ·step − λ waits for the square of a Multi stage: the stage carries it with its constant -1e10
// (the bias of row 1, the left half of x·x's neighbour), not x + λ·step with -1e10 left to the reader.
// CHECK-LABEL: lsrl.module @constant_crosses_multi
// CHECK:         relu
// CHECK-NEXT:    linear %{{.*}} {A = [
// CHECK-NEXT:      [0.0, 0.0, 1.0],
// CHECK-NEXT:      [10000000000000.0, -10000000000000.0, 1.0],
// CHECK-NEXT:      [0.0, 0.0, 1.0],
// CHECK-NEXT:      [0.0, 0.0, 0.0]
// CHECK-NEXT:    ], b = [0.0, -10000000000.0, 0.0, 1.0]} : 3 -> 4
// CHECK-NEXT:    multi
// CHECK-NEXT:    linear %{{.*}} {A = {{\[\[}}1.0, 1.0]]} : 2 -> 1
lsrl.module @constant_crosses_multi(%x: 1 in [0.0, 3.0]) -> 1 {
  %pos_pre = linear %x {A = [[1000.0]], b = [-2000.0]} : 1 -> 1
  %pos = relu %pos_pre : 1 -> 1
  %over_pre = linear %x {A = [[1000.0]], b = [-2001.0]} : 1 -> 1
  %over = relu %over_pre : 1 -> 1
  %cat = concat %pos, %over : 1, 1 -> 2
  %step = linear %cat {A = [[1.0, -1.0]]} : 2 -> 1
  %xx = concat %x, %x : 1, 1 -> 2
  %sq = multi %xx : 2 -> 1
  %gate_cat = concat %step, %sq, %x : 1, 1, 1 -> 3
  %pre = linear %gate_cat {A = [[10000000000.0, 1.0, 1.0]], b = [-10000000000.0]} : 3 -> 1
  %out = relu %pre : 1 -> 1
  return %out : 1
}

// -----
// v + 1.12 - λ·(1 - step): the constant 1.12 - 1e10 is no float64 (it rounds at 1e10's ulp, 2e-6).  The row
// keeps -9999999998.88 as its bias and reads what the rounding left out, -8.39e-7, from a state that is 1 at
// every step (row 0 of the first layer: A = 0, bias 1); materialize-steps folds 1e10 back into the bias where it
// reads the step, and the two make 1.12 again.
// CHECK-LABEL: lsrl.module @lambda_constant
// CHECK-NEXT:    linstate %x {A = zeros<3x3>, B = {{\[\[}}0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], bias = [1.0, 0.0, 0.0]} : 2 -> 3
// CHECK:         linear %{{.*}} {A = {{\[\[}}10000000000000.0, -10000000000000.0, -8.392333983309186e-07, 1.0]], b = [-9999999998.88]} : 4 -> 1
lsrl.module @lambda_constant(%x: 2 in [0.0, 3.0]) -> 1 {
  %c = slice %x {start = 0, end = 1} : 2 -> 1
  %v = slice %x {start = 1, end = 2} : 2 -> 1
  %pos_pre = linear %c {A = [[1000.0]], b = [-1000.0]} : 1 -> 1
  %pos = relu %pos_pre : 1 -> 1
  %over_pre = linear %c {A = [[1000.0]], b = [-1001.0]} : 1 -> 1
  %over = relu %over_pre : 1 -> 1
  %cat = concat %pos, %over : 1, 1 -> 2
  %step = linear %cat {A = [[1.0, -1.0]]} : 2 -> 1
  %shift_pre = linear %v {A = [[1.0]], b = [1.12]} : 1 -> 1
  %shifted = relu %shift_pre : 1 -> 1
  %gate_cat = concat %step, %shifted : 1, 1 -> 2
  %pre = linear %gate_cat {A = [[10000000000.0, 1.0]], b = [-10000000000.0]} : 2 -> 1
  %out = relu %pre : 1 -> 1
  return %out : 1
}
