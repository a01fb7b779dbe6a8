// Recurrent cells: the executor's plug-in point for target architectures.
//
// A cell kind is one file in csrc/cells/ that describes its node (gate blocks, state size, the extra
// parameters it reads, its scratch) in a CellKind and registers it for float and double with a
// KindRegistrar<CellKind>; the executor (executor.cpp) and the bindings (bindings_executor.cpp) know cells only
// through this interface, looked up by the descriptor's "kind" string (a target's Python descriptor,
// OpDef.kernel).  CMake builds every csrc/cells/*.cpp into the extension.
//
// A cell node reads one operand x and keeps a state of `state_parts * dim` values per sequence.  Its
// weights follow the PyTorch layout: W (gates*dim x d) with the input-side bias b, R (gates*dim x dim)
// analysed for the recurrence, and optionally b2 (gates*dim, a recurrent-side bias kept apart) and the
// activation choice `ideal` (ReLU in place of sigmoid and tanh).
#pragma once

#include <map>
#include <string>

#include "executor.hpp"

namespace lsrl {
namespace kernel {

// One lane block of a cell node (or a block node, blocks.hpp): `pre` are the node's scratch rows of the arena (arena_rows_per_unit *
// dim rows, L apart), `in` the operand's rows, `out` the node's value rows; `state` the carried state
// (state_dim x g); `scratch` the worker's contiguous scratch (scratch_per_unit * dim * g values).  The
// block has g sequences and tc steps, n = tc * g lanes (lane = t * g + b).
template <typename T>
struct CellBlock {
    const Plan<T>& plan;
    const Node<T>& node;
    index_t L;
    T* pre;
    const T* in;
    T* out;
    T* state;
    T* scratch;
    index_t g, tc, n;
};

template <typename T>
struct CellKind {
    const char* name;
    index_t gates;                // row blocks of W and R
    index_t state_parts;          // state_dim = state_parts * dim
    index_t arena_rows_per_unit;  // scratch rows of the arena per unit (0: none)
    index_t scratch_per_unit;     // contiguous scratch values per unit and sequence
    bool reads_bias2;             // the descriptor has "b2" (gates * dim)
    bool has_activation_choice;   // the descriptor has "ideal"; otherwise the cell is always ideal
    void (*run)(const CellBlock<T>&);
};

// The registered kinds of one family (cell kinds here, block kinds in blocks.hpp) by name: a function-local
// map, filled during static initialisation of the kinds' files whatever their order.
template <typename Kind>
std::map<std::string, Kind>& kind_registry() {
    static std::map<std::string, Kind> registry;
    return registry;
}

template <typename Kind>
const Kind* find_kind(const std::string& name) {
    const auto& registry = kind_registry<Kind>();
    auto it = registry.find(name);
    return it == registry.end() ? nullptr : &it->second;
}

// `const KindRegistrar<CellKind> registrar(kind<double>(), kind<float>());` in a kind's file registers it.
template <template <typename> class Kind>
struct KindRegistrar {
    KindRegistrar(const Kind<double>& d, const Kind<float>& f) {
        kind_registry<Kind<double>>()[d.name] = d;
        kind_registry<Kind<float>>()[f.name] = f;
    }
};

// ---- What cells (and the executor's linstate) share.

// `rows` rows of `out` (L apart) = W x + b for the block's lanes, optionally followed by ReLU.
template <typename T>
void input_projection(const CellBlock<T>& c, T* out, bool relu_after = false) {
    const Node<T>& node = c.node;
    affine_lanes(node.W.rows, node.W.indptr.data(), node.W.indices.data(), node.W.data.data(),
                 node.bias.empty() ? nullptr : node.bias.data(), c.in, c.L, out, c.L, c.n, relu_after);
}

// Step t of out_t = R out_{t-1} + out_t (out_t holds the input-side term), with out_{-1} = the carried
// state (rows g apart); in place on `out`.
template <typename T>
void step_recurrence(const Recurrence<T>& R, index_t g, index_t t, const T* state, T* out, index_t L) {
    const T* prev = t == 0 ? state : out + (t - 1) * g;
    const index_t ps = t == 0 ? g : L;
    T* cur = out + t * g;
    if (g == 1)
        recurrence_step<T, 1>(R, 1, prev, ps, cur, L, cur, L);
    else
        recurrence_step<T, 0>(R, g, prev, ps, cur, L, cur, L);
}

// col += R prev (col's rows `cs` apart, prev's `ps` apart), in place.
template <typename T>
void recurrent_add(const Recurrence<T>& R, index_t g, const T* prev, index_t ps, T* col, index_t cs) {
    if (g == 1)
        recurrence_step<T, 1>(R, 1, prev, ps, col, cs, col, cs);
    else
        recurrence_step<T, 0>(R, g, prev, ps, col, cs, col, cs);
}

// The first `rows` rows of the last step's column (of `out`, rows L apart) become the carried state.
template <typename T>
void save_last_column(const T* out, index_t rows, index_t L, index_t g, index_t tc, T* state) {
    const T* last = out + (tc - 1) * g;
    for (index_t j = 0; j < rows; ++j)
        for (index_t b = 0; b < g; ++b) state[j * g + b] = last[j * L + b];
}

template <typename T>
void save_last_column(const CellBlock<T>& c, index_t rows) {
    save_last_column(c.out, rows, c.L, c.g, c.tc, c.state);
}

// Activations: Ideal = ReLU for both; else sigmoid (scipy's formula) and tanh (plan.tanh_vec, which
// reproduces numpy.tanh).
template <bool Ideal, typename T>
T gate(T x) {
    return Ideal ? relu(x) : sigmoid(x);
}

template <bool Ideal, typename T>
void squash_vec(const Plan<T>& plan, const T* in, T* out, index_t n) {
    if (Ideal)
        for (index_t i = 0; i < n; ++i) out[i] = relu(in[i]);
    else
        plan.tanh_vec(in, out, n);
}

// Row `row` of `pre` (rows L apart) activated over n lanes (a gate, or squashed); a row with no weights is a
// constant.  The block's fields are passed as values: loops over them then vectorise as in a member function.
template <bool Ideal, typename T>
void activate_row(const Plan<T>& plan, const Node<T>& node, T* pre, index_t L, index_t row, bool squash,
                  index_t n) {
    T* x = pre + row * L;
    if (node.constant_row[row]) {
        T v = x[0];
        if (squash)
            squash_vec<Ideal>(plan, &v, &v, 1);
        else
            v = gate<Ideal>(v);
        for (index_t l = 0; l < n; ++l) x[l] = v;
    } else if (squash) {
        squash_vec<Ideal>(plan, x, x, n);
    } else {
        for (index_t l = 0; l < n; ++l) x[l] = gate<Ideal>(x[l]);
    }
}

}  // namespace kernel
}  // namespace lsrl
