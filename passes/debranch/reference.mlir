// RUN: lsrl-opt %s --split-input-file -p "debranch{mode=reference}" --check | filecheck %s

// Reference mode (the paper's construction, 13 cases): no passthrough layer — the ReLU's argument and the carried
// x enter one zero-recurrence linstate as the Eq. 11 pairs (x - 1, x, -(x - 1), -x), every one kept (the unused
// -(x - 1) unit included), and the readout recombines them: 2 ReLU(x - 1) + ReLU(x) - ReLU(-x).
// CHECK-LABEL: lsrl.module @no_state
// CHECK-SAME:  (%x: 1) -> 1 {
// CHECK-NEXT:   %0 = linstate %x {A = zeros<4x4>, B = {{\[\[}}1.0], [1.0], [-1.0], [-1.0]], bias = [-1.0, 0.0, 1.0, 0.0]} : 1 -> 4
// CHECK-NEXT:   %1 = relu %0 : 4 -> 4
// CHECK-NEXT:   %2 = linear %1 {A = {{\[\[}}2.0, 1.0, 0.0, -1.0]]} : 4 -> 1
// CHECK-NEXT:   return %2 : 1
// CHECK-NEXT: }
lsrl.module @no_state(%x: 1) -> 1 {
  %a = linear %x {A = [[1.0]], b = [-1.0]} : 1 -> 1
  %r = relu %a : 1 -> 1
  %cat = concat %r, %r, %x : 1, 1, 1 -> 3
  %out = linear %cat {A = [[1.0, 1.0, 1.0]]} : 3 -> 1
  return %out : 1
}

// -----
// A Multi reads its operands from one linstate layer that also carries x0 as x0 * 1 (the 1 from the bias); the
// readout ignores the carrier's unused product slot.
// CHECK-LABEL: lsrl.module @multi_carrier
// CHECK-SAME:  (%x: 2) -> 1 {
// CHECK-NEXT:   %0 = linstate %x {A = zeros<6x6>, B = [
// CHECK-NEXT:       [1.0, 0.0],
// CHECK-NEXT:       [0.0, 0.0],
// CHECK-NEXT:       [0.0, 0.0],
// CHECK-NEXT:       [0.0, 1.0],
// CHECK-NEXT:       [1.0, 0.0],
// CHECK-NEXT:       [0.0, 1.0]
// CHECK-NEXT:     ], bias = [0.0, 1.0, 1.0, 0.0, 0.0, 0.0]} : 2 -> 6
// CHECK-NEXT:   %1 = multi %0 : 6 -> 3
// CHECK-NEXT:   %2 = linear %1 {A = {{\[\[}}1.0, 3.0, 0.0]]} : 3 -> 1
// CHECK-NEXT:   return %2 : 1
// CHECK-NEXT: }
lsrl.module @multi_carrier(%x: 2) -> 1 {
  %m = multi %x : 2 -> 1
  %x0 = slice %x {start = 0, end = 1} : 2 -> 1
  %cat = concat %m, %x0 : 1, 1 -> 2
  %out = linear %cat {A = [[1.0, 3.0]]} : 2 -> 1
  return %out : 1
}

// -----
// Two chained states stay two layers; the second reads only the first coordinate of the first (B = [1, 0]).
// CHECK-LABEL: lsrl.module @two_layers
// CHECK-SAME:  (%x: 1) -> 1 {
// CHECK-NEXT:   %0 = linstate %x {A = diag<[1.0, 0.5]>, B = {{\[\[}}1.0], [1.0]]} : 1 -> 2
// CHECK-NEXT:   %1 = linstate %0 {A = {{\[\[}}0.5]], B = {{\[\[}}1.0, 0.0]]} : 2 -> 1
// CHECK-NEXT:   return %1 : 1
// CHECK-NEXT: }
lsrl.module @two_layers(%x: 1) -> 1 {
  %s1 = linstate %x {A = [[1.0, 0.0], [0.0, 0.5]], B = [[1.0], [1.0]]} : 1 -> 2
  %f = slice %s1 {start = 0, end = 1} : 2 -> 1
  %s2 = linstate %f {A = [[0.5]], B = [[1.0]]} : 1 -> 1
  return %s2 : 1
}
