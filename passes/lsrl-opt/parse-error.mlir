// RUN: not lsrl-opt %s -p canonicalize 2>&1 | filecheck %s

// A malformed module: exit status 1, the parser's file:line:col message with a caret, no traceback.
// CHECK: parse-error.mlir:[[# @LINE + 6]]:13: error: use of undefined value %nope
// CHECK-NEXT: {{^}}  %r = relu %nope : 1 -> 1
// CHECK-NEXT: {{^}}            ^
// CHECK-NOT: Traceback
// CHECK-NOT: lsrl.module
lsrl.module @bad(%x: 1) -> 1 {
  %r = relu %nope : 1 -> 1
  return %r : 1
}
