// RUN: lsrl-opt %s -p 'error-bound{dtype=float32,print=true}' -o %t 2>&1 | filecheck %s --check-prefix=GRID
// RUN: sed 's/, grid = \[0.0625\]//' %s | lsrl-opt - -p 'error-bound{dtype=float32,print=true}' -o %t 2>&1 | filecheck %s --check-prefix=REAL

// The step "x > 0.5" of a cell's coordinate.  Declared on the grid k/16 (a prompt's cell corners and centres),
// x is 0.5 or a sixteenth away: at μ = 1000 every value is 62 ramp widths off the step's ramp or on its kink,
// so the step is an exact 0 or 1 and so is what it scales.  Undeclared, x may sit on the ramp
// (0.5 - 1/1000 < x < 0.5), where the step passes on the rounding of its rows.
// GRID: // error %x: 0
// GRID: // error %step: 0
// GRID: // error %scaled: 0
// REAL: // error %x: 5.96e-08
// REAL: // error %step: 0.00119
lsrl.module @cell_step(%x: 1 {lower = [0.0], upper = [1.0], grid = [0.0625]}) -> 1 {
  %pre = linear %x {A = [[1000.0], [1000.0]], b = [-499.0, -500.0]} : 1 -> 2
  %r = relu %pre : 2 -> 2
  %step = linear %r {A = [[1.0, -1.0]]} : 2 -> 1
  %scaled = linear %step {A = [[0.5]]} : 1 -> 1
  return %scaled : 1
}
