// RUN: not lsrl-opt %s -p 'canonicalize,no-such-pass' 2>&1 | filecheck %s
// RUN: not lsrl-opt %s -p 'canonicalize{use_ranges=perhaps}' 2>&1 | filecheck %s --check-prefix=OPTION
// RUN: not lsrl-opt %s -p 'dce{nope=1}' 2>&1 | filecheck %s --check-prefix=NAME

// CHECK: pipeline:1:14: error: unknown pass 'no-such-pass'; known passes: {{.*}}canonicalize{{.*}}cse{{.*}}dce
// CHECK-NEXT: {{^}}  canonicalize,no-such-pass
// CHECK-NEXT: {{^}}               ^
// CHECK-NOT: Traceback
// OPTION: pipeline:1:25: error: pass 'canonicalize' option 'use_ranges' (bool): expected a boolean (true/false), got 'perhaps'
// NAME: pipeline:1:5: error: pass 'dce' has no option 'nope' (options: coordinates: bool)
lsrl.module @m(%x: 1) -> 1 {
  return %x : 1
}
