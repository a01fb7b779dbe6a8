// RUN: lsrl-opt %s --split-input-file -p canonicalize | filecheck %s

// A slice covering one concat operand is that operand; slices of slices compose; a slice across operands
// becomes a concat of slices.
// CHECK-LABEL: lsrl.module @slice_of_concat
// CHECK-DAG:     %r = relu %x : 3 -> 3
// CHECK-DAG:     %s = linstate %x {A = identity<2>, B = {{\[\[}}1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]} : 3 -> 2
// CHECK-DAG:     [[R2:%[0-9]+]] = slice %r {start = 2, end = 3} : 3 -> 1
// CHECK-DAG:     [[S0:%[0-9]+]] = slice %s {start = 0, end = 1} : 2 -> 1
// CHECK:         %out = concat %r, [[R2]], [[S0]], %s : 3, 1, 1, 2 -> 7
lsrl.module @slice_of_concat(%x: 3) -> 7 {
  %r = relu %x : 3 -> 3
  %s = linstate %x {A = identity<2>, B = [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]} : 3 -> 2
  %c = concat %r, %s : 3, 2 -> 5
  %whole = slice %c {start = 0, end = 3} : 5 -> 3
  %across = slice %c {start = 2, end = 4} : 5 -> 2
  %outer = slice %c {start = 1, end = 5} : 5 -> 4
  %inner = slice %outer {start = 2, end = 4} : 4 -> 2
  %out = concat %whole, %across, %inner : 3, 2, 2 -> 7
  return %out : 7
}

// -----
// A slice of a linear selects its rows.
// CHECK-LABEL: lsrl.module @slice_of_linear
// CHECK-NEXT:    %t = linear %x {A = {{\[\[}}0.0, 2.0, 0.0], [0.0, 0.0, 3.0]], b = [2.0, 3.0]} : 3 -> 2
// CHECK-NEXT:    %r = relu %t : 2 -> 2
lsrl.module @slice_of_linear(%x: 3) -> 2 {
  %a = linear %x {A = diag<[1.0, 2.0, 3.0]>, b = [1.0, 2.0, 3.0]} : 3 -> 3
  %t = slice %a {start = 1, end = 3} : 3 -> 2
  %r = relu %t : 2 -> 2
  return %r : 2
}

// -----
// A concat of one value repeated is a duplicating linear [I; I; I].
// CHECK-LABEL: lsrl.module @repeated
// CHECK-NEXT:    %r = relu %x : 1 -> 1
// CHECK-NEXT:    %c = linear %r {A = {{\[\[}}1.0], [1.0], [1.0]]} : 1 -> 3
lsrl.module @repeated(%x: 1) -> 3 {
  %r = relu %x : 1 -> 1
  %c = concat %r, %r, %r : 1, 1, 1 -> 3
  return %c : 3
}

// -----
// Adjacent slices of one value merge, and a slice of all of it is the value.
// CHECK-LABEL: lsrl.module @adjacent
// CHECK-NEXT:    %r = relu %x : 2 -> 2
// CHECK-NEXT:    return %r : 2
lsrl.module @adjacent(%x: 2) -> 2 {
  %r = relu %x : 2 -> 2
  %a = slice %r {start = 0, end = 1} : 2 -> 1
  %b = slice %r {start = 1, end = 2} : 2 -> 1
  %c = concat %a, %b : 1, 1 -> 2
  return %c : 2
}

// -----
// Nested concats flatten.
// CHECK-LABEL: lsrl.module @nested
// CHECK:         concat %x, %r, %x : 1, 1, 1 -> 3
lsrl.module @nested(%x: 1) -> 3 {
  %r = relu %x : 1 -> 1
  %i = concat %x, %r : 1, 1 -> 2
  %o = concat %i, %x : 2, 1 -> 3
  return %o : 3
}
