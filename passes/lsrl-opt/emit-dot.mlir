// RUN: lsrl-opt %s --emit=dot | filecheck %s --check-prefix=DAG
// RUN: lsrl-opt %s -p debranch --emit=dot | filecheck %s --check-prefix=LAYERS
// RUN: lsrl-opt %s -p 'debranch,lower{target=lstm}' --emit=dot | filecheck %s --check-prefix=LSTM

// The program: one node per op, the sugar of f_larger (%larger and the %larger.* ops it reads) collapsed
// into one node; LinStates have a double border; edges carry the widths.
// DAG-LABEL: digraph "@more_ones" {
// DAG: n0 [label="%x\ninput : 1"
// DAG: n1 [label="%ones\nlinstate : 1 (state)", {{.*}}peripheries=2];
// DAG: n2 [label="%is_zero\nlinear : 1"
// DAG: n3 [label="%zeros\nlinstate : 1 (state)", {{.*}}peripheries=2];
// DAG: [[G:g[0-9]+]] [label="%larger\n9 ops\nsugar : 1", {{.*}}style="rounded,filled,dashed", penwidth=2];
// DAG-NOT: larger.diff
// DAG: n0 -> n1 [label="1"];
// DAG: n1 -> [[G]] [label="1"];
// DAG: n3 -> [[G]] [label="1"];
// DAG: }

// The layer form: one chain op per node, boxed by layer, with the program values each holds.
// LAYERS-LABEL: digraph "@more_ones (layer form)" {
// LAYERS: subgraph cluster_layer1 {
// LAYERS-NEXT: label="layer 1"
// LAYERS-NEXT: n1 [label="S1 linstate : 2\nholds ones, zeros"
// LAYERS-NEXT: n2 [label="R2 linear : 2"
// LAYERS-NEXT: n3 [label="R2 relu : 2\nholds larger.pos, larger.over"
// LAYERS: n3 -> n4 [label="2"];

// A lowered module: one node per target layer with its stage, hidden and state sizes.
// LSTM-LABEL: digraph "lstm/ideal model of @more_ones" {
// LSTM: n1 [label="L0 lstm · S\nhidden 2, state 4\nholds ones, zeros"
// LSTM: n2 [label="L1 lstm · R\nhidden 2, state 4\nholds larger.pos, larger.over"
// LSTM: n2 -> readout [label="2"];
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
  %larger = linear %larger.cat {A = [[1.0, -1.0]]} : 2 -> 1
  return %larger : 1
}
