// RUN: lsrl-opt --list-targets | filecheck %s
// Every registered target is listed with its activation modes and op kinds; the default one is marked.

// CHECK: Available targets (lower{target=...}):
// CHECK-DAG: gru {{.*}}[activations ideal/standard; ops gru]
// CHECK-DAG: linear_rnn {{.*}}[activations ideal/standard; ops linear, linstate, multi, relu; default]
// CHECK-DAG: lstm {{.*}}[activations ideal/standard; ops lstm]
// CHECK-DAG: relu_rnn {{.*}}[activations ideal/standard; ops rnn_relu]
