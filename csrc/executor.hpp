// Whole-model execution: one call runs a compiled model (or any program DAG of the supported ops)
// over a batch of sequences, with the time loop in C++.
//
// A Plan is a list of nodes in topological order (node 0 = the input), each an op of the lowered
// IR: the core ops affine (linear), relu, multi, concat, slice, linstate, the recurrent cells the
// targets bring (cells.hpp: one file per cell kind in csrc/cells/) and their residual blocks with named
// parameters (blocks.hpp: csrc/blocks/).  Node parameters are copied into the plan once.
//
// Execution order.  The batch is split into groups of `bg` sequences and time into blocks of `tb`
// steps; a (group, block) pair is a lane block of L = tb * bg lanes (lane = t * bg + b).  For each
// block, every node runs over all its lanes before the next node starts: stateless work (affine
// maps, ReLU, Multi, the input projections of the recurrent nodes) is one vectorised loop over
// (time, batch), and only the recurrences proper step through time, vectorised over the group.
// tb = 1 is the classic step-by-step order, tb = T the layer-by-layer order; in between, every
// value of the block stays in cache.  The states of the recurrent nodes are carried from block to
// block and returned, so a long sequence can also be fed in chunks (streaming).
//
// Every node's arithmetic is that of the numpy semantics (OpDef.run: lsrl/ir/semantics.py and the
// target modules) in the same order: sparse products summed in storage order from 0, then biases; the activations
// are scipy's expit formula 1/(1+exp(-x)), and NumPy's own loops for tanh, exp and log1p (Plan::apply).
//
// Nothing here validates: the bindings (bindings_executor.cpp) check every parameter when a plan
// is built and every array when it runs.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "lanes.hpp"
#include "recurrence.hpp"

namespace lsrl {
namespace kernel {

enum class NodeKind : int { input, affine, relu, multi, concat, slice, linstate, cell, block };

template <typename T>
struct CellKind;
template <typename T>
struct BlockKind;

// Elementwise functions evaluated with NumPy's own inner loops when the bindings find them (NumPy's
// vectorised tanh, exp and log1p differ from the C library's in the last bit for many arguments).
enum class Fn : int { tanh, exp, log1p };
constexpr int kFunctionCount = 3;

template <typename T>
struct Csr {
    index_t rows = 0, cols = 0;
    std::vector<index_t> indptr{0}, indices;
    std::vector<T> data;
    index_t nnz() const { return static_cast<index_t>(data.size()); }
};

template <typename T>
struct Node {
    NodeKind kind = NodeKind::input;
    const CellKind<T>* cell = nullptr;    // kind == cell: which one (cells.hpp)
    const BlockKind<T>* block = nullptr;  // kind == block: which one (blocks.hpp)
    std::string name;
    std::vector<index_t> inputs;
    index_t dim = 0;        // output rows
    index_t start = 0;      // slice: first row of the operand
    index_t gates = 0;      // cells: stacked row blocks of W and R
    Csr<T> W;               // affine A | linstate B | cell W_ih
    std::vector<T> bias;    // affine b | linstate bias | cell input-side bias
    Recurrence<T> R;        // linstate A | cell W_hh (analysed)
    std::vector<T> bias2;   // cells that keep a recurrent-side bias apart
    std::vector<T> init;    // state before the first step (a cell: its state parts one after the other)
    bool ideal = true;      // cells: ReLU in place of sigmoid and tanh
    bool relu_after = false;  // affine: its only reader is a ReLU, applied here (that ReLU is an alias)
    index_t state_dim = 0;  // 0 for stateless nodes
    // cells: units with a recurrent weight in any of their gate rows (stepped one step at a time); the
    // other units' gates are computed for a whole block at once
    std::vector<index_t> recurrent_units, static_units;
    std::vector<std::uint8_t> constant_row;  // cells: gate rows with no weight at all (value = its bias)
    index_t state_slot = -1;
    // blocks: the kind's sizes, matrices (empty when an optional one is absent), vectors and numbers, in the
    // order its BlockKind lists them
    std::vector<index_t> sizes;
    std::vector<Csr<T>> mats;
    std::vector<std::vector<T>> vecs;
    std::vector<double> numbers;
    std::vector<std::uint8_t> live_channels;  // blocks: filled by the kind's prepare (recurrentgemma.cpp)
};

// Where every node's value lives in the arena (rows; a lane block is rows x L).
struct MemoryPlan {
    std::vector<index_t> offset;   // per node: first row of its value (slices alias their operand)
    std::vector<index_t> scratch;  // per node: first row of its scratch rows (-1: none)
    index_t rows = 0;              // arena rows
};

struct RunShape {
    index_t batch = 0, steps = 0;
    index_t bg = 1, tb = 1;  // sequences per group, steps per block
    int threads = 1;
};

// A NumPy ufunc inner loop ("1-D core loop"): args = {in, out}, dimensions = {n}, steps = byte strides.
using UnaryLoopFn = void (*)(char** args, const std::intptr_t* dimensions, const std::intptr_t* steps, void* data);

template <typename T>
struct Plan {
    std::vector<Node<T>> nodes;
    index_t output = 0;
    index_t d_in = 0, d_out = 0;
    std::vector<index_t> stateful;  // node index of every state slot
    MemoryPlan memory;
    double work_per_step = 0;       // multiply-adds and element operations per step, one sequence
    index_t scratch_per_lane = 0;   // per-thread scratch values per batch lane (cells' step vectors)
    // Blocks with a state (conv windows) shift their window once per lane block, O(window) per sequence
    // whatever the block's length: their plans run one sequence per group over long time blocks.
    bool one_sequence_per_group = false;

    // NumPy's inner loop per Fn, for the functions some node needs (null: the C library's function is used)
    struct Loop {
        UnaryLoopFn fn = nullptr;
        void* data = nullptr;
    };
    std::array<Loop, kFunctionCount> loops{};

    // out[i] = f(in[i]) for i < n (in == out allowed).
    void apply(Fn f, const T* in, T* out, index_t n) const;
    void tanh_vec(const T* in, T* out, index_t n) const { apply(Fn::tanh, in, out, n); }
    // Whether some node evaluates f (standard-mode cells: tanh; blocks: what their kind declares).
    bool needs(Fn f) const;

    // Computes `memory`, `stateful`, `work_per_step`; call once all nodes are set.
    void finalise();

    // Chooses bg, tb and the thread count (requested: 0 = automatic; lanes: 0 = automatic).
    RunShape shape_for(index_t batch, index_t steps, int requested_threads, index_t lanes) const;

    // xs: (B, T, d_in); ys: (B, T, d_out); states_in[s]: (B, state_dim) or nullptr (initial state);
    // states_out[s]: (B, state_dim).  All C-contiguous.  Allocates the arenas (may throw
    // std::bad_alloc) before any worker thread starts.
    void run(const RunShape& shape, const T* xs, T* ys, const std::vector<const T*>& states_in,
             const std::vector<T*>& states_out) const;
};

}  // namespace kernel
}  // namespace lsrl
