// RUN: lsrl-opt %s --split-input-file -p debranch | filecheck %s

// No state at all: one passthrough layer (A = 0, B = I) carries x into the ReLU stage; x is read again
// after the ReLU and is signed, so the ReLU stage carries it as x+ and x- (rows x and -x).
// CHECK-LABEL: lsrl.module @no_state
// CHECK-NEXT:    %[[S:.*]] = linstate %x {A = zeros<1x1>, B = identity<1>} : 1 -> 1
// CHECK-NEXT:    %[[L:.*]] = linear %[[S]] {A = {{\[\[}}1.0], [1.0], [-1.0]], b = [-1.0, 0.0, 0.0]} : 1 -> 3
// CHECK-NEXT:    %[[R:.*]] = relu %[[L]] : 3 -> 3
// CHECK-NEXT:    %[[O:.*]] = linear %[[R]] {A = {{\[\[}}2.0, 1.0, -1.0]]} : 3 -> 1
// CHECK-NEXT:    return %[[O]] : 1
lsrl.module @no_state(%x: 1) -> 1 {
  %a = linear %x {A = [[1.0]], b = [-1.0]} : 1 -> 1
  %r = relu %a : 1 -> 1
  %cat = concat %r, %r, %x : 1, 1, 1 -> 3
  %out = linear %cat {A = [[1.0, 1.0, 1.0]]} : 3 -> 1
  return %out : 1
}

// -----
// A value known to be >= 0 (the input is declared in [0, 4]) passes a ReLU stage as itself: no x- slot.
// CHECK-LABEL: lsrl.module @nonnegative_carrier
// CHECK-NEXT:    %[[S:.*]] = linstate %x {A = zeros<1x1>, B = identity<1>} : 1 -> 1
// CHECK-NEXT:    %[[L:.*]] = linear %[[S]] {A = {{\[\[}}1.0], [1.0]], b = [-1.0, 0.0]} : 1 -> 2
// CHECK-NEXT:    %[[R:.*]] = relu %[[L]] : 2 -> 2
// CHECK-NEXT:    %[[O:.*]] = linear %[[R]] {A = {{\[\[}}1.0, 1.0]]} : 2 -> 1
// CHECK-NEXT:    return %[[O]] : 1
lsrl.module @nonnegative_carrier(%x: 1 in [0.0, 4.0]) -> 1 {
  %a = linear %x {A = [[1.0]], b = [-1.0]} : 1 -> 1
  %r = relu %a : 1 -> 1
  %cat = concat %r, %x : 1, 1 -> 2
  %out = linear %cat {A = [[1.0, 1.0]]} : 2 -> 1
  return %out : 1
}

// -----
// A Multi stage carries the live input coordinate as x * 1 (the 1 comes from the bias of the right half).
// CHECK-LABEL: lsrl.module @multi_carrier
// CHECK-NEXT:    %[[S:.*]] = linstate %x {A = zeros<2x2>, B = identity<2>} : 2 -> 2
// CHECK-NEXT:    %[[P:.*]] = linear %[[S]] {A = {{\[\[}}1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], b = [0.0, 0.0, 0.0, 1.0]} : 2 -> 4
// CHECK-NEXT:    %[[M:.*]] = multi %[[P]] : 4 -> 2
// CHECK-NEXT:    linear %[[M]] {A = {{\[\[}}1.0, 3.0]]} : 2 -> 1
lsrl.module @multi_carrier(%x: 2) -> 1 {
  %m = multi %x : 2 -> 1
  %x0 = slice %x {start = 0, end = 1} : 2 -> 1
  %cat = concat %m, %x0 : 1, 1 -> 2
  %out = linear %cat {A = [[1.0, 3.0]]} : 2 -> 1
  return %out : 1
}

// -----
// Two chained states are two layers; the dead second coordinate of %s1 is dropped.
// CHECK-LABEL: lsrl.module @two_layers
// CHECK-NEXT:    %[[S1:.*]] = linstate %x {A = identity<1>, B = identity<1>} : 1 -> 1
// CHECK-NEXT:    linstate %[[S1]] {A = {{\[\[}}0.5]], B = identity<1>} : 1 -> 1
// CHECK-NEXT:    return
lsrl.module @two_layers(%x: 1) -> 1 {
  %s1 = linstate %x {A = [[1.0, 0.0], [0.0, 0.5]], B = [[1.0], [1.0]]} : 1 -> 2
  %f = slice %s1 {start = 0, end = 1} : 2 -> 1
  %s2 = linstate %f {A = [[0.5]], B = [[1.0]]} : 1 -> 1
  return %s2 : 1
}
