// RUN: lsrl-opt %s -p "debranch,lower{target=lstm,activations=standard,t_max=4}" --check | filecheck %s
// RUN: lsrl-opt %s -p "debranch,lower{target=gru,activations=standard,t_max=4}" --check | filecheck %s --check-prefix=GRU
// RUN: sed 's/, integer = 1//' %s | lsrl-opt - -p "debranch,lower{target=lstm,activations=standard,t_max=4}" --check | filecheck %s --check-prefix=REAL

// A product of two integer tokens in standard mode is a select: the first factor takes the values 0, 1, 2, 3, so
// x0·x1 = Σ_k [x0 > k − 1/2]·x1 — three units whose input gates σ(4096·x0 − 4096·(k − 1/2)) are exactly 0 or 1
// (|4096·(x0 − mid)| ≥ 2048 ≥ L on integers) and whose cell carries tanh(ε x1) = ε x1; the readout adds them.
// The GRU builds the same select from leak-cancelling pairs (1 − z = the gate; six units).  On real inputs the
// factors take a continuum of values: the four σ-difference units of the Richardson product (gates ±ε_g x0 and
// ±2ε_g x0, readout 8/(3ε_g ε_v) and 1/(3ε_g ε_v)).

// CHECK-LABEL: lsrl.module @select
// CHECK:       %L1 = lstm %L0 {W_ih = [
// CHECK-NEXT:      [1.8014398509481984e+16, 0.0],
// CHECK-NEXT:      [1.8014398509481984e+16, 0.0],
// CHECK-NEXT:      [1.8014398509481984e+16, 0.0],
// CHECK:         ], W_hh = zeros<12x3>, b_ih = [
// CHECK-NEXT:      -2048.0, -6144.0, -10240.0, -1024.0, -1024.0, -1024.0, 0.0, 0.0, 0.0, 1024.0, 1024.0,
// CHECK:         ], activations = "standard"} : 2 -> 3
// CHECK-NEXT:  %readout = linear %L1 {A = {{\[\[}}4398046511104.0, 4398046511104.0, 4398046511104.0]]} : 3 -> 1

// GRU-LABEL:   lsrl.module @select
// GRU:         %L1 = gru %L0 {W_ih = [
// GRU:           ], W_hh = sparse<18x6>{(15, 0): 1.0, (16, 1): 1.0, (17, 2): 1.0}, b_ih = [
// GRU-NEXT:        1024.0, 1024.0, 1024.0, 2048.0, 6144.0, 10240.0, 2048.0, 6144.0, 10240.0, -1024.0,
// GRU:         ], activations = "standard"} : 2 -> 6

// REAL-LABEL:  lsrl.module @select
// REAL:        %L1 = lstm %L0 {W_ih = [
// REAL:          ], activations = "standard"} : 2 -> 4
// REAL-NEXT:   %readout = linear %L1 {A = [
// REAL-NEXT:       [6004799503160661.0, -6004799503160661.0, -750599937895082.6, 750599937895082.6]

lsrl.module @select(%x: 2 {lower = [0.0, 0.0], upper = [3.0, 3.0], integer = 1}) -> 1 {
  %m = multi %x : 2 -> 1
  return %m : 1
}
