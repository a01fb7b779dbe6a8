// RUN: lsrl-opt %s -p 'cse,canonicalize,dce' --print-ir-after-change 2>&1 >/dev/null | filecheck %s
// RUN: lsrl-opt %s -p 'cse,canonicalize' --print-ir-after-all 2>&1 >/dev/null | filecheck %s --check-prefix=ALL
// RUN: lsrl-opt %s -p 'cse,dce' --time-passes 2>&1 >/dev/null | filecheck %s --check-prefix=TIME

// Only canonicalize changes the module, so only it is dumped (on stderr; the result goes to stdout).
// CHECK-NOT: IR Dump After cse
// CHECK: // -----// IR Dump After canonicalize //----- //
// CHECK-NEXT: lsrl.module @m
// CHECK-NEXT:   %r1 = relu %x : 1 -> 1
// CHECK-NOT: IR Dump After
// ALL: // -----// IR Dump After cse //----- //
// ALL: // -----// IR Dump After canonicalize //----- //
// TIME: Execution time report
// TIME: Total Execution Time:
// TIME: ----Wall Time----  ----Name----
// TIME-DAG: cse
// TIME-DAG: dce
// TIME: (100.0%)  Total
lsrl.module @m(%x: 1) -> 1 {
  %r1 = relu %x : 1 -> 1
  %r2 = relu %r1 : 1 -> 1
  return %r2 : 1
}
