// RUN: lsrl-opt %s --split-input-file -p cse | filecheck %s

// Identical ops (kind, operands, attributes) are merged; chains of duplicates collapse in one sweep,
// states included.
// CHECK-LABEL: lsrl.module @chains
// CHECK-NEXT:    %a1 = linear %x {A = {{\[\[}}1.0, 2.0]], b = [1.0]} : 2 -> 1
// CHECK-NEXT:    %r1 = relu %a1 : 1 -> 1
// CHECK-NEXT:    %s1 = linstate %r1 {A = identity<1>, B = identity<1>} : 1 -> 1
// CHECK-NEXT:    %other = linear %x {A = {{\[\[}}1.0, 2.0]], b = [2.0]} : 2 -> 1
// CHECK-NEXT:    %c = concat %s1, %s1, %other : 1, 1, 1 -> 3
lsrl.module @chains(%x: 2) -> 3 {
  %a1 = linear %x {A = [[1.0, 2.0]], b = [1.0]} : 2 -> 1
  %a2 = linear %x {A = [[1.0, 2.0]], b = [1.0]} : 2 -> 1
  %r1 = relu %a1 : 1 -> 1
  %r2 = relu %a2 : 1 -> 1
  %s1 = linstate %r1 {A = identity<1>, B = identity<1>} : 1 -> 1
  %s2 = linstate %r2 {A = identity<1>, B = identity<1>} : 1 -> 1
  %other = linear %x {A = [[1.0, 2.0]], b = [2.0]} : 2 -> 1
  %c = concat %s1, %s2, %other : 1, 1, 1 -> 3
  return %c : 3
}

// -----
// Operand order matters, and so do slice bounds and initial states.
// CHECK-LABEL: lsrl.module @different
// CHECK:         %c1 = concat %x, %r
// CHECK-NEXT:    %c2 = concat %r, %x
// CHECK-NEXT:    %s1 = linstate %c1 {A = identity<2>, B = identity<2>} : 2 -> 2
// CHECK-NEXT:    %s2 = linstate %c1 {A = identity<2>, B = identity<2>, init = [1.0, 0.0]} : 2 -> 2
lsrl.module @different(%x: 1) -> 8 {
  %r = relu %x : 1 -> 1
  %c1 = concat %x, %r : 1, 1 -> 2
  %c2 = concat %r, %x : 1, 1 -> 2
  %s1 = linstate %c1 {A = identity<2>, B = identity<2>} : 2 -> 2
  %s2 = linstate %c1 {A = identity<2>, B = identity<2>, init = [1.0, 0.0]} : 2 -> 2
  %o = concat %c1, %c2, %s1, %s2 : 2, 2, 2, 2 -> 8
  return %o : 8
}
