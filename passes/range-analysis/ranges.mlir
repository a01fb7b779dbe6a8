// RUN: lsrl-opt %s -p 'range-analysis{print=true}' -o %t 2>&1 | filecheck %s
// RUN: lsrl-opt %s -p 'range-analysis{print=true,t_max=10}' -o %t 2>&1 | filecheck %s --check-prefix=T10

// A counter of inputs in [0, 1] is unbounded above unless the sequence length is bounded; a decay
// (A = 1/2) stays below 2 (below 2 − 2^-9 within 10 steps: the step-wise boxes); the product of a
// counter-derived value and the decay is an interval product.
// CHECK: // range %x: [0.0, 1.0]
// CHECK: // range %count: [0.0, inf]
// CHECK: // range %decay: [0.0, 2.0]
// CHECK: // range %neg: [-inf, 1.0]
// CHECK: // range %pos: [0.0, 1.0]
// T10: // range %count: [0.0, 10.0]
// T10: // range %decay: [0.0, 1.998046875]
// T10: // range %neg: [-19.0, 1.0]
// T10: // range %prod: [-37.962890625, 1.998046875]
lsrl.module @ranges(%x: 1 in [0.0, 1.0]) -> 4 {
  %count = linstate %x {A = identity<1>, B = identity<1>} : 1 -> 1
  %decay = linstate %x {A = [[0.5]], B = identity<1>} : 1 -> 1
  %neg = linear %count {A = [[-2.0]], b = [1.0]} : 1 -> 1
  %pos = relu %neg : 1 -> 1
  %c = concat %neg, %decay : 1, 1 -> 2
  %prod = multi %c : 2 -> 1
  %o = concat %count, %decay, %pos, %prod : 1, 1, 1, 1 -> 4
  return %o : 4
}
