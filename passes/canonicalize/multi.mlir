// RUN: lsrl-opt %s --split-input-file -p canonicalize | filecheck %s

// Multi with a constant second half is a diagonal linear of the first half.
// CHECK-LABEL: lsrl.module @constant_half
// CHECK-NEXT:    %r = relu %x : 2 -> 2
// CHECK-NEXT:    %m = linear %r {A = diag<[3.0, -0.5]>} : 2 -> 2
// CHECK-NEXT:    return %m : 2
lsrl.module @constant_half(%x: 2) -> 2 {
  %r = relu %x : 2 -> 2
  %k = linear %x {A = zeros<2x2>, b = [3.0, -0.5]} : 2 -> 2
  %c = concat %r, %k : 2, 2 -> 4
  %m = multi %c : 4 -> 2
  return %m : 2
}

// -----
// A constant first half: the diagonal linear reads the second half.
// CHECK-LABEL: lsrl.module @constant_first_half
// CHECK-NEXT:    %r = relu %x : 2 -> 2
// CHECK-NEXT:    %m = linear %r {A = diag<[3.0, -0.5]>} : 2 -> 2
// CHECK-NEXT:    return %m : 2
lsrl.module @constant_first_half(%x: 2) -> 2 {
  %r = relu %x : 2 -> 2
  %k = linear %x {A = zeros<2x2>, b = [3.0, -0.5]} : 2 -> 2
  %c = concat %k, %r : 2, 2 -> 4
  %m = multi %c : 4 -> 2
  return %m : 2
}

// -----
// The constant factor may sit in either half, coordinate by coordinate: m0 = 3·r0 (constant in the first
// half), m1 = r1·(−2) (constant in the second); the linear reads the dynamic operands in concat order r1, r0.
// CHECK-LABEL: lsrl.module @mixed_halves
// CHECK-NEXT:    %r = relu %x : 2 -> 2
// CHECK-NEXT:    %r0 = slice %r {start = 0, end = 1} : 2 -> 1
// CHECK-NEXT:    %r1 = slice %r {start = 1, end = 2} : 2 -> 1
// CHECK-NEXT:    %[[D:.*]] = concat %r1, %r0 : 1, 1 -> 2
// CHECK-NEXT:    %m = linear %[[D]] {A = {{\[\[}}0.0, 3.0], [-2.0, 0.0]]} : 2 -> 2
// CHECK-NEXT:    return %m : 2
lsrl.module @mixed_halves(%x: 2) -> 2 {
  %r = relu %x : 2 -> 2
  %k = linear %x {A = zeros<1x2>, b = [3.0]} : 2 -> 1
  %r0 = slice %r {start = 0, end = 1} : 2 -> 1
  %r1 = slice %r {start = 1, end = 2} : 2 -> 1
  %k2 = linear %x {A = zeros<1x2>, b = [-2.0]} : 2 -> 1
  %c = concat %k, %r1, %r0, %k2 : 1, 1, 1, 1 -> 4
  %m = multi %c : 4 -> 2
  return %m : 2
}

// -----
// Multi of two dynamic halves stays.
// CHECK-LABEL: lsrl.module @dynamic
// CHECK-NEXT:    %r = relu %x : 2 -> 2
// CHECK-NEXT:    %c = concat %r, %x : 2, 2 -> 4
// CHECK-NEXT:    %m = multi %c : 4 -> 2
// CHECK-NEXT:    %o = linear %m {A = {{\[\[}}1.0, 1.0]]} : 2 -> 1
lsrl.module @dynamic(%x: 2) -> 1 {
  %r = relu %x : 2 -> 2
  %c = concat %r, %x : 2, 2 -> 4
  %s = slice %c {start = 1, end = 3} : 4 -> 2
  %m = multi %c : 4 -> 2
  %o = linear %m {A = [[1.0, 1.0]]} : 2 -> 1
  return %o : 1
}
