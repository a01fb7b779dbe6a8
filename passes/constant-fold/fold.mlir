// RUN: lsrl-opt %s --split-input-file -p constant-fold | filecheck %s

// Ops without a dynamic input fold into the canonical constant `linear %input {A = 0, b = value}`:
// relu([-2, 6]) = [0, 6], then multi([0, 6] ++ [2, 2]) = [0, 12].
// CHECK-LABEL: lsrl.module @fold_through
// CHECK-NEXT:    %m = linear %x {A = zeros<2x2>, b = [0.0, 12.0]} : 2 -> 2
// CHECK-NEXT:    return %m : 2
lsrl.module @fold_through(%x: 2) -> 2 {
  %r0 = relu %x : 2 -> 2
  %k = linear %r0 {A = zeros<1x2>, b = [2.0]} : 2 -> 1
  %l = linear %k {A = [[-1.0], [3.0]]} : 1 -> 2
  %r = relu %l : 2 -> 2
  %c = concat %r, %k, %k : 2, 1, 1 -> 4
  %m = multi %c : 4 -> 2
  return %m : 2
}

// -----
// A linear reading constant coordinates moves them into its bias (and stops reading them).
// CHECK-LABEL: lsrl.module @partial
// CHECK:         %y = linear %c {A = {{\[\[}}1.0, 0.0]], b = [7.0]} : 2 -> 1
lsrl.module @partial(%x: 1) -> 1 {
  %k = linear %x {A = zeros<1x1>, b = [2.0]} : 1 -> 1
  %c = concat %x, %k : 1, 1 -> 2
  %y = linear %c {A = [[1.0, 3.0]], b = [1.0]} : 2 -> 1
  return %y : 1
}

// -----
// s_t = 0 s_{t-1} + 2 k is the constant 4 from the first step on; s_t = s_{t-1} + 0 with s_0 = 5 stays 5.
// CHECK-LABEL: lsrl.module @states
// CHECK-NEXT:    %c = linear %x {A = zeros<2x1>, b = [4.0, 5.0]} : 1 -> 2
// CHECK-NEXT:    return %c : 2
lsrl.module @states(%x: 1) -> 2 {
  %k = linear %x {A = zeros<1x1>, b = [2.0]} : 1 -> 1
  %p = linstate %k {A = zeros<1x1>, B = [[2.0]], init = [9.0]} : 1 -> 1
  %s = linstate %k {A = identity<1>, B = zeros<1x1>, init = [5.0]} : 1 -> 1
  %c = concat %p, %s : 1, 1 -> 2
  return %c : 2
}

// -----
// A state that really moves (a counter started at 0) is not a constant.
// CHECK-LABEL: lsrl.module @counter
// CHECK:         linstate
lsrl.module @counter(%x: 1) -> 1 {
  %k = linear %x {A = zeros<1x1>, b = [1.0]} : 1 -> 1
  %s = linstate %k {A = identity<1>, B = identity<1>} : 1 -> 1
  return %s : 1
}
