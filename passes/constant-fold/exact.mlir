// RUN: lsrl-opt %s -p constant-fold | filecheck %s

// Exact constants fold exactly: 3 * (1/3) + 1/6 = 7/6, and 7/6 stays a rational.
// CHECK:       %y = linear %x {A = zeros<1x1{{(, exact)?}}>, b = [7/6]} : 1 -> 1
// CHECK-NEXT:  return %y : 1
lsrl.module @exact(%x: 1) -> 1 {
  %k = linear %x {A = zeros<1x1>, b = [1/3]} : 1 -> 1
  %y = linear %k {A = [[3.0]], b = [1/6]} : 1 -> 1
  return %y : 1
}
