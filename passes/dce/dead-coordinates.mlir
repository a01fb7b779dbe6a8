// RUN: lsrl-opt %s --split-input-file -p dce | filecheck %s
// RUN: lsrl-opt %s --split-input-file -p 'dce{coordinates=false}' | filecheck %s --check-prefix=OPS

// Dead rows of a linear go, and so do dead state slots -- but slot 1 stays because the live slot 0
// reads it through A.  Slot 2 is read by nobody; slot 3 reads slot 0 but nobody reads slot 3.
// CHECK-LABEL: lsrl.module @slots
// CHECK-NEXT:    %w = linear %x {A = identity<2>} : 2 -> 2
// CHECK-NEXT:    %s = linstate %w {A = {{\[\[}}1.0, 1.0], [0.0, 1.0]], B = identity<2>, init = [1.0, 2.0]} : 2 -> 2
// CHECK-NEXT:    %y = linear %s {A = {{\[\[}}1.0, 0.0]]} : 2 -> 1
// OPS-LABEL: lsrl.module @slots
// OPS:         %s = linstate %w {A = [
// OPS:         ], B = identity<4>, init = [1.0, 2.0, 3.0, 4.0]} : 4 -> 4
lsrl.module @slots(%x: 2) -> 1 {
  %w = linear %x {A = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]], b = [0.0, 0.0, 2.0, 3.0]} : 2 -> 4
  %s = linstate %w {A = [[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0]],
                    B = identity<4>, init = [1.0, 2.0, 3.0, 4.0]} : 4 -> 4
  %y = linear %s {A = [[1.0, 0.0, 0.0, 0.0]]} : 4 -> 1
  return %y : 1
}

// -----
// A value read only through zero columns disappears with the concat part that held it.
// CHECK-LABEL: lsrl.module @zero_columns
// CHECK-NOT:     linstate
// CHECK:         %r = relu %x : 2 -> 2
// CHECK-NEXT:    %y = linear %r {A = diag<[1.0, 0.0]>, b = [0.0, 1.0]} : 2 -> 2
lsrl.module @zero_columns(%x: 2) -> 2 {
  %r = relu %x : 2 -> 2
  %s = linstate %x {A = identity<2>, B = identity<2>} : 2 -> 2
  %c = concat %r, %s : 2, 2 -> 4
  %y = linear %c {A = [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], b = [0.0, 1.0]} : 4 -> 2
  return %y : 2
}

// -----
// A slice of a product keeps only the factors it needs (the input cannot shrink, so the factors are
// picked by a selection linear).
// CHECK-LABEL: lsrl.module @multi_slice
// CHECK:         %s = linstate %x {A = identity<1>, B = {{\[\[}}0.0, 1.0]]} : 2 -> 1
// CHECK-NEXT:    %c = concat %x, %s : 2, 1 -> 3
// CHECK-NEXT:    [[PICK:%[0-9]+]] = linear %c {A = {{\[\[}}0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]} : 3 -> 2
// CHECK-NEXT:    %m = multi [[PICK]] : 2 -> 1
lsrl.module @multi_slice(%x: 2) -> 1 {
  %s = linstate %x {A = identity<2>, B = identity<2>} : 2 -> 2
  %c = concat %x, %s : 2, 2 -> 4
  %m = multi %c : 4 -> 2
  %y = slice %m {start = 1, end = 2} : 2 -> 1
  return %y : 1
}
