// RUN: not lsrl-opt %s --split-input-file -p cse 2>&1 | filecheck %s

// With --split-input-file every chunk is processed; an error names the line in the whole file and the
// other chunks are still printed.
// CHECK-DAG: lsrl.module @good
// CHECK-DAG: split-errors.mlir:[[# @LINE + 9]]:{{[0-9]+}}: error:
// CHECK-DAG: lsrl.module @also_good
lsrl.module @good(%x: 1) -> 1 {
  %r = relu %x : 1 -> 1
  return %r : 1
}

// -----
lsrl.module @bad(%x: 1) -> 1 {
  %r = relu %x : 2 -> 2
  return %r : 1
}

// -----
lsrl.module @also_good(%x: 1) -> 1 {
  return %x : 1
}
