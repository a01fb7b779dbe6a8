// RUN: lsrl-opt %s -p 'error-bound{print=true}' -o %t 2>&1 | filecheck %s --check-prefix=F64
// RUN: lsrl-opt %s -p 'error-bound{dtype=float32,print=true}' -o %t 2>&1 | filecheck %s --check-prefix=F32
// RUN: sed 's/, integer = 1//' %s | lsrl-opt - -p 'error-bound{dtype=float32,print=true}' -o %t 2>&1 | filecheck %s --check-prefix=REAL

// The step "x >= 1.5" of an integer token: the two ReLUs are on the same side of their breakpoints for every
// token, so the step is an exact 0 or 1.  The bound is against the module's own weights: 0.1 is the float64
// 0.1, which float64 multiplies by 0 or 1 exactly and float32 stores rounded.
// F64: // error %x: 0
// F64: // error %step: 0
// F64: // error %scaled: 0
// F32: // error %step: 0
// F32: // error %scaled: 2.98e-08
// For real inputs the step's ramp (1.5 - 1/1000 < x < 1.5) lies in the domain, so the step passes on the error
// of its rows: mostly float32's rounding of 1000·x − 1499 itself (values up to 3000), and of the input times 1000.
// REAL: // error %x: 1.79e-07
// REAL: // error %step: 0.00358
// REAL: // error %scaled: 0.000358
lsrl.module @steps(%x: 1 {lower = [0.0], upper = [3.0], integer = 1}) -> 1 {
  %pre = linear %x {A = [[1000.0], [1000.0]], b = [-1499.0, -1500.0]} : 1 -> 2
  %r = relu %pre : 2 -> 2
  %step = linear %r {A = [[1.0, -1.0]]} : 2 -> 1
  %scaled = linear %step {A = [[0.1]]} : 1 -> 1
  return %scaled : 1
}
