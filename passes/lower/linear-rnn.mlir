// RUN: lsrl-opt %s -p "debranch,lower{target=linear_rnn,t_max=5}" --check | filecheck %s

// The layer form itself is the Linear RNN: the counter and the carried x share one linstate (x rides along as a
// slot with A = 0), the ReLU stage and the gated product follow, and the readout closes the chain.  --check
// interprets the module before and after every pass, so the pinned weights also compute the program.

// CHECK-LABEL: lsrl.module @count_gate
// CHECK-SAME:  (%x: 1 in [0.0, 1.0]) -> 1 {
// CHECK-NEXT:   %0 = linstate %x {A = diag<[1.0, 0.0]>, B = {{\[\[}}1.0], [1.0]]} : 1 -> 2
// CHECK-NEXT:   %1 = linear %0 {A = identity<2>, b = [-2.0, 0.0]} : 2 -> 2
// CHECK-NEXT:   %2 = relu %1 : 2 -> 2
// CHECK-NEXT:   %3 = linear %2 {A = {{\[\[}}0.0, 1.0], [1.0, 0.0]]} : 2 -> 2
// CHECK-NEXT:   %4 = multi %3 : 2 -> 1
// CHECK-NEXT:   %readout = linear %4 {A = identity<1>} : 1 -> 1
// CHECK-NEXT:   return %readout : 1
// CHECK-NEXT: }

lsrl.module @count_gate(%x: 1 in [0.0, 1.0]) -> 1 {
  %s = linstate %x {A = [[1.0]], B = [[1.0]]} : 1 -> 1
  %d = linear %s {A = [[1.0]], b = [-2.0]} : 1 -> 1
  %r = relu %d : 1 -> 1
  %c = concat %r, %x : 1, 1 -> 2
  %m = multi %c : 2 -> 1
  return %m : 1
}
