// RUN: lsrl-opt %s --split-input-file -p canonicalize | filecheck %s

// Multi with a constant half is a diagonal linear of the other half.
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
// Multi of two dynamic halves stays.
// CHECK-LABEL: lsrl.module @dynamic
// CHECK:         multi %c
lsrl.module @dynamic(%x: 2) -> 1 {
  %r = relu %x : 2 -> 2
  %c = concat %r, %x : 2, 2 -> 4
  %s = slice %c {start = 1, end = 3} : 4 -> 2
  %m = multi %c : 4 -> 2
  %o = linear %m {A = [[1.0, 1.0]]} : 2 -> 1
  return %o : 1
}
