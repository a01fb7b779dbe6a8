// RUN: lsrl-opt %s -p round-to-float | filecheck %s
// RUN: lsrl-opt %s -p cse | filecheck %s --check-prefix=KEPT

// Exact rationals become their nearest float64 (printed as the shortest decimal that reads back to it);
// floats are unchanged.  Without the pass the rationals stay exact.
// CHECK:       %k = linear %x {A = {{\[\[}}0.3333333333333333]], b = [0.16666666666666666]} : 1 -> 1
// CHECK-NEXT:  %y = linear %k {A = {{\[\[}}3.0]], b = [0.5]} : 1 -> 1
// KEPT:        %k = linear %x {A = {{\[\[}}1/3]], b = [1/6]} : 1 -> 1
lsrl.module @exact(%x: 1) -> 1 {
  %k = linear %x {A = [[1/3]], b = [1/6]} : 1 -> 1
  %y = linear %k {A = [[3.0]], b = [1/2]} : 1 -> 1
  return %y : 1
}
