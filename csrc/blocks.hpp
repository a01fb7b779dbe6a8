// Residual blocks: the executor's plug-in point for targets whose layers are whole blocks with named
// parameters (a normalisation, several projections, a temporal convolution, a gated scan, an MLP), as the
// Hugging Face models the targets export to are built.
//
// A block kind is one file in csrc/blocks/ that lists the parameters its descriptor carries (integer
// sizes, CSR matrices, vectors, numbers), the elementwise functions it evaluates (always, and only where its
// activation is not ideal; the bindings attach NumPy's loops for them), its state size, its scratch and its
// run function, and registers itself for float and double with a KindRegistrar<BlockKind> (cells.hpp).  The
// bindings (bindings_executor.cpp) read and validate every listed parameter; the executor (executor.cpp)
// calls `run` once per lane block with the same CellBlock view the cells get.  Parameters are stored in
// Node::sizes / mats / vecs / numbers in the order the kind lists them.
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "cells.hpp"
#include "executor.hpp"

namespace lsrl {
namespace kernel {

// A matrix parameter: `rows` and `cols` are dimension expressions: "H" (the node's dim), "d" (its operand's
// dim), one of the kind's size names, or a product "A*B" of two of these.
struct MatrixSpec {
    const char* name;
    const char* rows;
    const char* cols;
    bool optional;  // may be absent (None): Node::mats holds an empty matrix
};

struct VectorSpec {
    const char* name;
    const char* length;  // a dimension expression, as for matrices
};

template <typename T>
struct BlockKind {
    const char* name;
    std::vector<const char*> sizes;
    std::vector<MatrixSpec> matrices;
    std::vector<VectorSpec> vectors;
    std::vector<const char*> numbers;
    std::vector<Fn> functions;   // evaluated through Plan::apply
    std::vector<Fn> activation_functions;  // evaluated only where the node is not ideal (its activation)
    bool has_activation_choice;  // the descriptor has "ideal"
    // what is wrong with a node whose parameters all have their listed shapes ("" if nothing), given its
    // operand's dim (e.g. a block that reads its operand as the residual stream needs d == H)
    std::string (*problem)(const Node<T>&, index_t operand_dim);
    // derives what `run` needs from the parameters once, when the plan is built (may be null)
    void (*prepare)(Node<T>&);
    index_t (*state_dim)(const Node<T>&);
    index_t (*arena_rows)(const Node<T>&);        // scratch rows of the arena (L lanes each)
    index_t (*scratch_per_sequence)(const Node<T>&);  // contiguous scratch values per sequence of a group
    void (*run)(const CellBlock<T>&);
};


// ---- What blocks share.

template <typename T>
std::string operand_is_the_stream(const Node<T>& node, index_t d) {
    return d == node.dim ? "" : "the operand (dim " + std::to_string(d) + ") is the residual stream, of width H = " +
                                    std::to_string(node.dim);
}

// The problem check of a block that normalises the residual stream with eps = numbers[0].
template <typename T>
std::string normalised_stream(const Node<T>& node, index_t d) {
    if (!(node.numbers[0] > 0)) return "eps must be > 0, got " + std::to_string(node.numbers[0]);
    return operand_is_the_stream(node, d);
}

// out_j = a_j + b_j for `rows` rows (L apart) over n lanes: the residual adds (`out` may be `a`).
template <typename T>
void add_rows(index_t rows, const T* a, const T* b, T* out, index_t L, index_t n) {
    for (index_t j = 0; j < rows; ++j) {
        const T* aj = a + j * L;
        const T* bj = b + j * L;
        T* oj = out + j * L;
        for (index_t l = 0; l < n; ++l) oj[l] = aj[l] + bj[l];
    }
}

// `rows` rows of `out` (L apart) = M x (+ bias) over n lanes; `x` has rows L apart.
template <typename T>
void project(const Csr<T>& M, const T* bias, const T* x, T* out, index_t L, index_t n) {
    affine_lanes(M.rows, M.indptr.data(), M.indices.data(), M.data.data(), bias, x, L, out, L, n);
}

// RMSNorm as the numpy semantics computes it: ms = (Σ_j x_j², in order j = 0, 1, …) / H, then
// out_j = (x_j * (1 / sqrt(ms + eps))) * factor_j, with factor_j = scale[j] (+ 1 when `plus_one`).
// `ms` is one arena row (n lanes) of scratch.
template <typename T>
void rms_norm(const T* x, index_t H, const std::vector<T>& scale, bool plus_one, double eps, T* ms, T* out,
              index_t L, index_t n) {
    for (index_t l = 0; l < n; ++l) ms[l] = x[l] * x[l];
    for (index_t j = 1; j < H; ++j) {
        const T* xj = x + j * L;
        for (index_t l = 0; l < n; ++l) ms[l] = ms[l] + xj[l] * xj[l];
    }
    const T h = static_cast<T>(H), e = static_cast<T>(eps);
    for (index_t l = 0; l < n; ++l) ms[l] = T(1) / std::sqrt(ms[l] / h + e);
    for (index_t j = 0; j < H; ++j) {
        const T f = plus_one ? T(1) + scale[j] : scale[j];
        const T* xj = x + j * L;
        T* oj = out + j * L;
        for (index_t l = 0; l < n; ++l) oj[l] = (xj[l] * ms[l]) * f;
    }
}

// One channel of a causal depthwise convolution over a lane block of g sequences and tc steps:
// acc[t*g + b] = acc + Σ_k src(t + k − (K−1)) * taps[k], the non-zero taps added in order k = 0 … K−1 (as the
// numpy semantics' causal_conv), where src(s) is u[s*g + b] for s ≥ 0 and the carried window value
// window(K−1 + s, b) (0 = oldest) before the block.
template <typename T, typename Window>
void conv_channel(const T* u, T* acc, index_t g, index_t tc, index_t K, const T* taps, Window window) {
    const index_t n = tc * g;
    for (index_t k = 0; k < K; ++k) {
        const T w = taps[k];
        if (w == T(0)) continue;
        const index_t shift = std::min(n, (K - 1 - k) * g);  // lanes that read the window
        for (index_t l = 0; l < shift; ++l) acc[l] = acc[l] + window(k + l / g, l % g) * w;
        for (index_t l = shift; l < n; ++l) acc[l] = acc[l] + u[l - (K - 1 - k) * g] * w;
    }
}

// The window after the block: its K−1 newest inputs (window(j, b) readable and writable; j = 0 oldest).
template <typename T, typename Window>
void advance_window(const T* u, index_t g, index_t tc, index_t K, Window window) {
    for (index_t j = 0; j + 1 < K; ++j) {  // ascending j reads window(tc + j) before it is overwritten
        const index_t s = tc + j - (K - 1);
        for (index_t b = 0; b < g; ++b) window(j, b) = s >= 0 ? u[s * g + b] : window(tc + j, b);
    }
}

}  // namespace kernel
}  // namespace lsrl
