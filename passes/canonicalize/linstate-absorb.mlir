// RUN: lsrl-opt %s --split-input-file -p canonicalize | filecheck %s

// Lin -> LinState: B <- B A_lin, bias <- B b_lin + bias.
// CHECK-LABEL: lsrl.module @absorb
// CHECK-NEXT:    %s = linstate %x {A = diag<[1.0, 0.5]>, B = {{\[\[}}1.0], [-1.0]], bias = [1.0, 0.0]} : 1 -> 2
// CHECK-NEXT:    return %s : 2
lsrl.module @absorb(%x: 1) -> 2 {
  %a = linear %x {A = [[2.0], [-1.0]], b = [1.0, 0.0]} : 1 -> 2
  %s = linstate %a {A = diag<[1.0, 0.5]>, B = [[1.0, 1.0], [0.0, 1.0]]} : 2 -> 2
  return %s : 2
}

// -----
// The linear stays when someone else reads it; the state reads the input directly.
// CHECK-LABEL: lsrl.module @keep_shared
// CHECK-DAG:     %s = linstate %x {A = identity<1>, B = {{\[\[}}3.0]], bias = [2.0]} : 1 -> 1
// CHECK-DAG:     %a = linear %x {A = {{\[\[}}3.0]], b = [2.0]} : 1 -> 1
// CHECK:         concat %a, %s
lsrl.module @keep_shared(%x: 1) -> 2 {
  %a = linear %x {A = [[3.0]], b = [2.0]} : 1 -> 1
  %s = linstate %a {A = identity<1>, B = identity<1>} : 1 -> 1
  %c = concat %a, %s : 1, 1 -> 2
  return %c : 2
}

// -----
// A state reading a slice reads the whole value through scattered columns.
// CHECK-LABEL: lsrl.module @slice_into_state
// CHECK-NEXT:    %r = relu %x : 3 -> 3
// CHECK-NEXT:    %s = linstate %r {A = identity<1>, B = {{\[\[}}0.0, 1.0, 1.0]]} : 3 -> 1
lsrl.module @slice_into_state(%x: 3) -> 1 {
  %r = relu %x : 3 -> 3
  %t = slice %r {start = 1, end = 3} : 3 -> 2
  %s = linstate %t {A = identity<1>, B = [[1.0, 1.0]]} : 2 -> 1
  return %s : 1
}
