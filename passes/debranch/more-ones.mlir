// RUN: lsrl-opt %s -p debranch | filecheck %s
// RUN: lsrl-opt %s -p 'debranch{exact=true}' | filecheck %s --check-prefix=EXACT

// Fig. 1 (compile.md §5): the 13-node DAG becomes ONE layer whose state counts the ones and the zeros
// (A = I, B = [1; -1], bias = [0; 1]), then Linear(2->2), ReLU, Linear(2->1): the f_step of the difference.
// CHECK-LABEL: lsrl.module @more_ones(%x: 1 in [0.0, 1.0]) -> 1 {
// CHECK-NEXT:    %[[S:.*]] = linstate %x {A = identity<2>, B = {{\[\[}}1.0], [-1.0]], bias = [0.0, 1.0]} : 1 -> 2
// CHECK-NEXT:    %[[L:.*]] = linear %[[S]] {A = {{\[\[}}1.0, -1.0], [1.0, -1.0]], b = [0.0, -0.001]} : 2 -> 2
// CHECK-NEXT:    %[[R:.*]] = relu %[[L]] : 2 -> 2
// CHECK-NEXT:    %[[O:.*]] = linear %[[R]] {A = {{\[\[}}1000.0, -1000.0]]} : 2 -> 1
// CHECK-NEXT:    return %[[O]] : 1
// CHECK-NEXT:  }
// EXACT-LABEL: lsrl.module @more_ones
// EXACT-NEXT:    linstate %x {A = identity<2, exact>, B = {{\[\[}}1], [-1]], bias = [0, 1]{{.*}}} : 1 -> 2
// EXACT-NEXT:    linear {{.*}}b = [0, -1/1000]} : 2 -> 2
// EXACT-NEXT:    relu
// EXACT-NEXT:    linear {{.*}}{A = {{\[\[}}1000, -1000]]{{.*}}} : 2 -> 1
lsrl.module @more_ones(%x: 1 in [0.0, 1.0]) -> 1 {
  %ones = linstate %x {A = identity<1>, B = identity<1>} : 1 -> 1
  %is_zero = linear %x {A = [[-1.0]], b = [1.0]} : 1 -> 1
  %zeros = linstate %is_zero {A = identity<1>, B = identity<1>} : 1 -> 1
  %larger.diff.cat = concat %ones, %zeros : 1, 1 -> 2
  %larger.diff = linear %larger.diff.cat {A = [[1.0, -1.0]]} : 2 -> 1
  %larger.scaled = linear %larger.diff {A = [[1000.0]]} : 1 -> 1
  %larger.pos = relu %larger.scaled : 1 -> 1
  %larger.shifted = linear %larger.diff {A = identity<1>, b = [-1/1000]} : 1 -> 1
  %larger.over = relu %larger.shifted : 1 -> 1
  %larger.over_scaled = linear %larger.over {A = [[1000.0]]} : 1 -> 1
  %larger.cat = concat %larger.pos, %larger.over_scaled : 1, 1 -> 2
  %out = linear %larger.cat {A = [[1.0, -1.0]]} : 2 -> 1
  return %out : 1
}
