// RUN: lsrl-opt %s -p debranch,rescale-units,materialize-steps,separate-large-terms | filecheck %s

// [ReLU(2x + 1 − λ·b), ReLU(x − λ + λ·b)] of a bump b = step(x − 0.5) − step(x − 1.5), λ = 10¹⁰: materialize-steps
// reads the steps through their clamps C₁ = ReLU(1 − u₁), C₂ = ReLU(1 − u₂) (b = C₂ − C₁), and each row would sum
// ±λ·C₁ ∓ λ·C₂ with its small terms, which the λ-terms cancel outside the bump (float32 then drops 2x + 1).  One
// more stage carries x and forms the rows' λ-parts divided by λ: b = ReLU(C₂ − C₁) (its negative side is never
// reached: the bump is not negative) and 1 − b = ReLU(C₁ − C₂ + 1); the rows read them with −λ.
// CHECK-LABEL: lsrl.module @bump(
// CHECK:         linear %{{.*}} {A = {{\[\[}}1.0, 0.0, 0.0], [0.0, -1.0, 1.0], [0.0, 1.0, -1.0]], b = [0.0, 0.0, 1.0]} : 3 -> 3
// CHECK-NEXT:    relu
// CHECK-NEXT:    linear %{{.*}} {A = {{\[\[}}2.0, -10000000000.0, 0.0], [1.0, 0.0, -10000000000.0]], b = [1.0, 0.0]} : 3 -> 2

lsrl.module @bump(%x: 1 {lower = [0.0], upper = [4.0], integer = 1}) -> 2 {
  %diff = linear %x {A = identity<1>, b = [-0.5]} : 1 -> 1
  %scaled = linear %diff {A = [[1000.0]]} : 1 -> 1
  %pos = relu %scaled : 1 -> 1
  %shifted = linear %diff {A = identity<1>, b = [-1/1000]} : 1 -> 1
  %over = relu %shifted : 1 -> 1
  %over_scaled = linear %over {A = [[1000.0]]} : 1 -> 1
  %diff_1 = linear %x {A = identity<1>, b = [-1.5]} : 1 -> 1
  %scaled_1 = linear %diff_1 {A = [[1000.0]]} : 1 -> 1
  %pos_1 = relu %scaled_1 : 1 -> 1
  %shifted_1 = linear %diff_1 {A = identity<1>, b = [-1/1000]} : 1 -> 1
  %over_1 = relu %shifted_1 : 1 -> 1
  %over_scaled_1 = linear %over_1 {A = [[1000.0]]} : 1 -> 1
  %cat = concat %pos, %over_scaled, %pos_1, %over_scaled_1 : 1, 1, 1, 1 -> 4
  %bump = linear %cat {A = [[1.0, -1.0, -1.0, 1.0]]} : 4 -> 1
  %both = concat %x, %bump : 1, 1 -> 2
  %else_pre = linear %both {A = [[2.0, -10000000000.0]], b = [1.0]} : 2 -> 1
  %else = relu %else_pre : 1 -> 1
  %then_pre = linear %both {A = [[1.0, 10000000000.0]], b = [-10000000000.0]} : 2 -> 1
  %then = relu %then_pre : 1 -> 1
  %out = concat %else, %then : 1, 1 -> 2
  return %out : 2
}
