// RUN: lsrl-opt %s -p "debranch,lower{target=relu_rnn,t_max=5}" --check | filecheck %s

// ReLU RNN (Eq. 11): the counter s and the carried x are signed, so each gets a positive and a negative unit
// (rows x, -x; the recurrence reads s+ - s-); the R stage shifts x by its lower bound (x + 1 >= 0), which the
// readout takes back (b = -3).

// CHECK-LABEL: lsrl.module @count_relu
// CHECK-SAME:  (%x: 1 in [-1.0, 1.0]) -> 1 {
// CHECK-NEXT:   %L0 = rnn_relu %x {W_ih = {{\[\[}}1.0], [1.0], [-1.0], [-1.0]], W_hh = [
// CHECK-NEXT:       [1.0, 0.0, -1.0, 0.0],
// CHECK-NEXT:       [0.0, 0.0, 0.0, 0.0],
// CHECK-NEXT:       [-1.0, 0.0, 1.0, 0.0],
// CHECK-NEXT:       [0.0, 0.0, 0.0, 0.0]
// CHECK-NEXT:     ], b_ih = [0.0, 0.0, -0.0, -0.0], h0 = [0.0, 0.0, -0.0, -0.0]} : 1 -> 4
// CHECK-NEXT:   %L1 = rnn_relu %L0 {W_ih = {{\[\[}}1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, -1.0]], W_hh = zeros<2x2>, b_ih = [-2.0, 1.0]} : 4 -> 2
// CHECK-NEXT:   %readout = linear %L1 {A = {{\[\[}}1.0, 3.0]], b = [-3.0]} : 2 -> 1
// CHECK-NEXT:   return %readout : 1
// CHECK-NEXT: }

lsrl.module @count_relu(%x: 1 in [-1.0, 1.0]) -> 1 {
  %s = linstate %x {A = [[1.0]], B = [[1.0]]} : 1 -> 1
  %d = linear %s {A = [[1.0]], b = [-2.0]} : 1 -> 1
  %r = relu %d : 1 -> 1
  %c = concat %r, %x : 1, 1 -> 2
  %o = linear %c {A = [[1.0, 3.0]]} : 2 -> 1
  return %o : 1
}
