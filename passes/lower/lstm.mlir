// RUN: lsrl-opt %s -p "debranch,lower{target=lstm,t_max=5}" --check | filecheck %s
// RUN: lsrl-opt %s -p "debranch,lower{target=lstm,activations=standard,t_max=5}" --check | filecheck %s --check-prefix=STD
// RUN: lsrl-opt %s -p "debranch,lower{target=lstm,activations=standard,t_max=5,dtype=float32}" --check | filecheck %s --check-prefix=F32

// LSTM, gates in the PyTorch order i, f, g, o.  Ideal (App. D): a ReLU unit has i = g = 1 (bias), f = 0 and its
// pre-activation in the o rows; the product unit has i = ReLU(x), g = ReLU(r), o = 1.  Standard: saturated
// gates at +-1024, the counter as a cell integrator (f = 1) entering tanh scaled by eps = 2^-43 (its bound
// t_max = 5 <= 2^3, rho = 2^-40), the product as four sigma-difference units.  Lowered for float32 the product's
// gate scale is 8x larger (rho_gate 2^-4 instead of 2^-7: its truncation against float32's cancellation).

// CHECK-LABEL: lsrl.module @count_gate
// CHECK-SAME:  (%x: 1 in [0.0, 1.0]) -> 1 {
// CHECK-NEXT:   %L0 = lstm %x {W_ih = {{\[\[}}0.0], [0.0], [0.0], [0.0], [0.0], [0.0], [1.0], [1.0]], W_hh = [
// CHECK-NEXT:       [0.0, 0.0],
// CHECK-NEXT:       [0.0, 0.0],
// CHECK-NEXT:       [0.0, 0.0],
// CHECK-NEXT:       [0.0, 0.0],
// CHECK-NEXT:       [0.0, 0.0],
// CHECK-NEXT:       [0.0, 0.0],
// CHECK-NEXT:       [1.0, 0.0],
// CHECK-NEXT:       [0.0, 0.0]
// CHECK-NEXT:     ], b_ih = [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0], activations = "ideal"} : 1 -> 2
// CHECK-NEXT:   %L1 = lstm %L0 {W_ih = [
// CHECK-NEXT:       [0.0, 0.0],
// CHECK-NEXT:       [0.0, 0.0],
// CHECK-NEXT:       [0.0, 0.0],
// CHECK-NEXT:       [0.0, 0.0],
// CHECK-NEXT:       [0.0, 0.0],
// CHECK-NEXT:       [0.0, 0.0],
// CHECK-NEXT:       [1.0, 0.0],
// CHECK-NEXT:       [0.0, 1.0]
// CHECK-NEXT:     ], W_hh = zeros<8x2>, b_ih = [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, -2.0, 0.0], activations = "ideal"} : 2 -> 2
// CHECK-NEXT:   %L2 = lstm %L1 {W_ih = {{\[\[}}0.0, 1.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0]], W_hh = zeros<4x1>, b_ih = [0.0, 0.0, 0.0, 1.0], activations = "ideal"} : 2 -> 1
// CHECK-NEXT:   %readout = linear %L2 {A = identity<1>} : 1 -> 1
// CHECK-NEXT:   return %readout : 1
// CHECK-NEXT: }

// STD-LABEL: lsrl.module @count_gate
// STD-SAME:  (%x: 1 in [0.0, 1.0]) -> 1 {
// STD-NEXT:   %L0 = lstm %x {W_ih = [
// STD-NEXT:       [0.0],
// STD-NEXT:       [0.0],
// STD-NEXT:       [0.0],
// STD-NEXT:       [0.0],
// STD-NEXT:       [1.1368683772161603e-13],
// STD-NEXT:       [9.094947017729282e-13],
// STD-NEXT:       [0.0],
// STD-NEXT:       [0.0]
// STD-NEXT:     ], W_hh = zeros<8x2>, b_ih = [1024.0, 1024.0, 1024.0, -1024.0, 0.0, 0.0, 1024.0, 1024.0], activations = "standard"} : 1 -> 2
// STD-NEXT:   %L1 = lstm %L0 {W_ih = [
// STD-NEXT:       [0.0, 0.0],
// STD-NEXT:       [1.329227995784916e+36, 0.0],
// STD-NEXT:       [0.0, 0.0],
// STD-NEXT:       [0.0, 0.0],
// STD-NEXT:       [0.0, 1.0],
// STD-NEXT:       [2.0, 0.0],
// STD-NEXT:       [0.0, 0.0],
// STD-NEXT:       [0.0, 0.0]
// STD-NEXT:     ], W_hh = zeros<8x2>, b_ih = [
// STD-NEXT:       1024.0, -3.022314549036573e+23, -1024.0, -1024.0, 0.0, -4.547473508864641e-13, 1024.0,
// STD-NEXT:       1024.0
// STD-NEXT:     ], activations = "standard"} : 2 -> 2
// STD-NEXT:   %L2 = lstm %L1 {W_ih = [
// STD-NEXT:       [8589934592.0, 0.0],
// STD-NEXT:       [-8589934592.0, 0.0],
// STD-NEXT:       [17179869184.0, 0.0],
// STD-NEXT:       [-17179869184.0, 0.0],
// STD-NEXT:       [0.0, 0.0],
// STD-NEXT:       [0.0, 0.0],
// STD-NEXT:       [0.0, 0.0],
// STD-NEXT:       [0.0, 0.0],
// STD-NEXT:       [0.0, 1.0],
// STD-NEXT:       [0.0, 1.0],
// STD-NEXT:       [0.0, 1.0],
// STD-NEXT:       [0.0, 1.0],
// STD-NEXT:       [0.0, 0.0],
// STD-NEXT:       [0.0, 0.0],
// STD-NEXT:       [0.0, 0.0],
// STD-NEXT:       [0.0, 0.0]
// STD-NEXT:     ], W_hh = zeros<16x4>, b_ih = [
// STD-NEXT:       0.0, -0.0, 0.0, -0.0, -1024.0, -1024.0, -1024.0, -1024.0, 0.0, 0.0, 0.0, 0.0, 1024.0,
// STD-NEXT:       1024.0, 1024.0, 1024.0
// STD-NEXT:     ], activations = "standard"} : 2 -> 4
// STD-NEXT:   %readout = linear %L2 {A = [
// STD-NEXT:       [1501199875790165.2, -1501199875790165.2, -187649984473770.66, 187649984473770.66]
// STD-NEXT:     ]} : 4 -> 1
// STD-NEXT:   return %readout : 1
// STD-NEXT: }

// F32-LABEL: lsrl.module @count_gate
// F32:         %L2 = lstm %L1 {W_ih = [
// F32-NEXT:       [68719476736.0, 0.0],
// F32-NEXT:       [-68719476736.0, 0.0],
// F32-NEXT:       [137438953472.0, 0.0],
// F32:         %readout = linear %L2 {A = [
// F32-NEXT:       [187649984473770.66, -187649984473770.66, -23456248059221.332, 23456248059221.332]

lsrl.module @count_gate(%x: 1 in [0.0, 1.0]) -> 1 {
  %s = linstate %x {A = [[1.0]], B = [[1.0]]} : 1 -> 1
  %d = linear %s {A = [[1.0]], b = [-2.0]} : 1 -> 1
  %r = relu %d : 1 -> 1
  %c = concat %r, %x : 1, 1 -> 2
  %m = multi %c : 2 -> 1
  return %m : 1
}
