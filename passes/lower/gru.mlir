// RUN: lsrl-opt %s -p "debranch,lower{target=gru,t_max=5}" --check | filecheck %s
// RUN: lsrl-opt %s -p "debranch,lower{target=gru,activations=standard,t_max=5}" --check | filecheck %s --check-prefix=STD

// GRU, gates in the PyTorch order r, z, n.  Ideal (App. C, D7): a ReLU unit has r = 1, z = 0 and its
// pre-activation in the n rows; the product is the leak-cancelling pair p, q with the gate operand in z.
// Standard: saturated gates at +-1024 and tanh inputs scaled into [-rho, rho].

// CHECK-LABEL: lsrl.module @count_gate
// CHECK-SAME:  (%x: 1 in [0.0, 1.0]) -> 1 {
// CHECK-NEXT:   %L0 = gru %x {W_ih = {{\[\[}}0.0], [0.0], [0.0], [0.0], [1.0], [1.0]], W_hh = [
// CHECK-NEXT:       [0.0, 0.0],
// CHECK-NEXT:       [0.0, 0.0],
// CHECK-NEXT:       [0.0, 0.0],
// CHECK-NEXT:       [0.0, 0.0],
// CHECK-NEXT:       [1.0, 0.0],
// CHECK-NEXT:       [0.0, 0.0]
// CHECK-NEXT:     ], b_ih = [1.0, 1.0, 0.0, 0.0, 0.0, 0.0], activations = "ideal"} : 1 -> 2
// CHECK-NEXT:   %L1 = gru %L0 {W_ih = {{\[\[}}0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], W_hh = zeros<6x2>, b_ih = [1.0, 1.0, 0.0, 0.0, -2.0, 0.0], activations = "ideal"} : 2 -> 2
// CHECK-NEXT:   %L2 = gru %L1 {W_ih = [
// CHECK-NEXT:       [0.0, 0.0],
// CHECK-NEXT:       [0.0, -1.0],
// CHECK-NEXT:       [0.0, -1.0],
// CHECK-NEXT:       [0.0, 0.0],
// CHECK-NEXT:       [1.0, 0.0],
// CHECK-NEXT:       [0.0, 0.0]
// CHECK-NEXT:     ], W_hh = {{\[\[}}0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 0.0]], b_ih = [0.0, 1.0, 1.0, 0.0, 0.0, 0.0], activations = "ideal"} : 2 -> 2
// CHECK-NEXT:   %readout = linear %L2 {A = {{\[\[}}1.0, -1.0]]} : 2 -> 1
// CHECK-NEXT:   return %readout : 1
// CHECK-NEXT: }

// STD-LABEL: lsrl.module @count_gate
// STD-SAME:  (%x: 1 in [0.0, 1.0]) -> 1 {
// STD-NEXT:   %L0 = gru %x {W_ih = [
// STD-NEXT:       [0.0],
// STD-NEXT:       [0.0],
// STD-NEXT:       [0.0],
// STD-NEXT:       [0.0],
// STD-NEXT:       [1.1368683772161603e-13],
// STD-NEXT:       [9.094947017729282e-13]
// STD-NEXT:     ], W_hh = {{\[\[}}0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0]], b_ih = [
// STD-NEXT:       1024.0, 1024.0, -1024.0, -1024.0, 0.0, 0.0
// STD-NEXT:     ], activations = "standard"} : 1 -> 2
// STD-NEXT:   %L1 = gru %L0 {W_ih = [
// STD-NEXT:       [0.0, 0.0],
// STD-NEXT:       [0.0, 0.0],
// STD-NEXT:       [-1.329227995784916e+36, 0.0],
// STD-NEXT:       [0.0, 0.0],
// STD-NEXT:       [-1.329227995784916e+36, 0.0],
// STD-NEXT:       [0.0, 0.0],
// STD-NEXT:       [0.0, 1.0],
// STD-NEXT:       [2.0, 0.0],
// STD-NEXT:       [0.0, 0.0]
// STD-NEXT:     ], W_hh = [
// STD-NEXT:       [0.0, 0.0, 0.0],
// STD-NEXT:       [0.0, 0.0, 0.0],
// STD-NEXT:       [0.0, 0.0, 0.0],
// STD-NEXT:       [0.0, 0.0, 0.0],
// STD-NEXT:       [0.0, 0.0, 0.0],
// STD-NEXT:       [0.0, 0.0, 0.0],
// STD-NEXT:       [0.0, 0.0, 0.0],
// STD-NEXT:       [0.0, 0.0, 0.0],
// STD-NEXT:       [0.0, 1.0, 0.0]
// STD-NEXT:     ], b_ih = [
// STD-NEXT:       1024.0, 1024.0, 3.022314549036573e+23, -1024.0, 3.022314549036573e+23, -1024.0, 0.0,
// STD-NEXT:       -4.547473508864641e-13, 0.0
// STD-NEXT:     ], activations = "standard"} : 2 -> 3
// STD-NEXT:   %L2 = gru %L1 {W_ih = sparse<24x3>{
// STD-NEXT:       (1, 0): -8589934592.0,
// STD-NEXT:       (3, 0): 8589934592.0,
// STD-NEXT:       (5, 0): -17179869184.0,
// STD-NEXT:       (7, 0): 17179869184.0,
// STD-NEXT:       (8, 0): -8589934592.0,
// STD-NEXT:       (10, 0): 8589934592.0,
// STD-NEXT:       (12, 0): -17179869184.0,
// STD-NEXT:       (14, 0): 17179869184.0,
// STD-NEXT:       (16, 1): 1.0, (16, 2): -1.0,
// STD-NEXT:       (18, 1): 1.0, (18, 2): -1.0,
// STD-NEXT:       (20, 1): 1.0, (20, 2): -1.0,
// STD-NEXT:       (22, 1): 1.0, (22, 2): -1.0
// STD-NEXT:     }, W_hh = sparse<24x8>{(17, 0): 1.0, (19, 2): 1.0, (21, 4): 1.0, (23, 6): 1.0}, b_ih = [
// STD-NEXT:       1024.0, -0.0, 1024.0, 0.0, 1024.0, -0.0, 1024.0, 0.0, -0.0, -1024.0, 0.0, -1024.0, -0.0,
// STD-NEXT:       -1024.0, 0.0, -1024.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
// STD-NEXT:     ], activations = "standard"} : 3 -> 8
// STD-NEXT:   %readout = linear %L2 {A = [
// STD-NEXT:       [1501199875790165.2, -1501199875790165.2, -1501199875790165.2, 1501199875790165.2,
// STD-NEXT:        -187649984473770.66, 187649984473770.66, 187649984473770.66, -187649984473770.66]
// STD-NEXT:     ]} : 8 -> 1
// STD-NEXT:   return %readout : 1
// STD-NEXT: }

lsrl.module @count_gate(%x: 1 in [0.0, 1.0]) -> 1 {
  %s = linstate %x {A = [[1.0]], B = [[1.0]]} : 1 -> 1
  %d = linear %s {A = [[1.0]], b = [-2.0]} : 1 -> 1
  %r = relu %d : 1 -> 1
  %c = concat %r, %x : 1, 1 -> 2
  %m = multi %c : 2 -> 1
  return %m : 1
}
