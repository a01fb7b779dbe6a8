// The Mamba block (target mamba, python/lsrl/targets/mamba.py; op kind mamba_block): RMSNorm, in_proj,
// causal depthwise conv, selective scan with input-dependent Δ, B and C, gate, out_proj, residual — the
// numpy semantics' equations in the same order (see `run` there).
//
// Lane block layout (rows L apart): the residual stream r goes straight into the node's value rows, and
// out_proj's result is added to it at the end.  Arena scratch: one row for the norm, H rows for the
// normalised stream (later out_proj's result), E rows each for the SSM input u0 (later y), the gate z, the
// convolution (then u) and Δ, R + 2N rows for x_proj's δ, B and C, one row for softplus.  The scan steps
// through time vectorised over (channel, state, sequence): exp of one step's E·N·g arguments is one call.
#include "../blocks.hpp"

namespace lsrl {
namespace kernel {
namespace {

enum Size { E, N, K, R };
enum Mat { embed, in_x, in_z, x_dt, x_B, x_C, dt_proj, out_proj };
enum Vec { norm_weight, in_bias_x, in_bias_z, conv_weight, conv_bias, dt_bias, decay_rate, skip, out_bias };
enum Number { norm_eps };

constexpr double kSoftplusThreshold = 20.0;  // torch's softplus is the identity above it

template <typename T>
std::string problem(const Node<T>& node, index_t d) {
    if (!(node.numbers[norm_eps] > 0)) return "norm_eps must be > 0, got " + std::to_string(node.numbers[norm_eps]);
    return node.mats[embed].rows > 0 ? "" : operand_is_the_stream(node, d);
}

template <typename T>
index_t state_dim(const Node<T>& node) {
    return node.sizes[E] * (node.sizes[K] - 1) + node.sizes[E] * node.sizes[N];
}

template <typename T>
index_t arena_rows(const Node<T>& node) {
    return 2 + node.dim + 4 * node.sizes[E] + node.sizes[R] + 2 * node.sizes[N];
}

template <typename T>
index_t scratch_per_sequence(const Node<T>& node) {
    return node.sizes[E] * node.sizes[N];
}

template <typename T>
const T* bias_of(const Node<T>& node, Vec v) {
    return node.vecs[v].data();
}

template <typename T>
void activate(bool ideal, T* x, index_t n) {
    if (ideal)
        relu_lanes(1, x, n, x, n, n);
    else
        for (index_t l = 0; l < n; ++l) x[l] = x[l] * sigmoid(x[l]);  // SiLU: x * expit(x)
}

template <typename T>
void run(const CellBlock<T>& blk) {
    const Node<T>& node = blk.node;
    const Plan<T>& plan = blk.plan;
    const index_t L = blk.L, g = blk.g, tc = blk.tc, n = blk.n;
    const index_t H = node.dim, Ec = node.sizes[E], Nc = node.sizes[N], Kc = node.sizes[K], Rc = node.sizes[R];
    T* ms = blk.pre;
    T* spare = ms + L;
    T* normed = spare + L;  // H rows, later out_proj's result
    T* u0 = normed + H * L;  // later y
    T* z = u0 + Ec * L;
    T* u = z + Ec * L;
    T* dt = u + Ec * L;
    T* delta = dt + Ec * L;
    T* Bm = delta + Rc * L;
    T* Cm = Bm + Nc * L;
    T* r = blk.out;
    T* conv_state = blk.state;                     // E x (K−1) (oldest first) x g
    T* ssm = blk.state + Ec * (Kc - 1) * g;        // E x N x g

    if (node.mats[embed].rows > 0) {
        project(node.mats[embed], static_cast<const T*>(nullptr), blk.in, r, L, n);
    } else {
        for (index_t j = 0; j < H; ++j) std::copy(blk.in + j * L, blk.in + j * L + n, r + j * L);
    }
    rms_norm(r, H, node.vecs[norm_weight], false, node.numbers[norm_eps], ms, normed, L, n);
    project(node.mats[in_x], bias_of(node, in_bias_x), normed, u0, L, n);
    project(node.mats[in_z], bias_of(node, in_bias_z), normed, z, L, n);

    const bool ideal = node.ideal;
    const T* taps = node.vecs[conv_weight].data();
    for (index_t e = 0; e < Ec; ++e) {
        T* acc = u + e * L;
        std::fill(acc, acc + n, T(0));
        auto window = [&](index_t j, index_t b) -> T& { return conv_state[(e * (Kc - 1) + j) * g + b]; };
        conv_channel(u0 + e * L, acc, g, tc, Kc, taps + e * Kc, window);
        const T cb = node.vecs[conv_bias][e];
        for (index_t l = 0; l < n; ++l) acc[l] = acc[l] + cb;
        activate(ideal, acc, n);
        advance_window(u0 + e * L, g, tc, Kc, window);
    }

    project(node.mats[x_dt], static_cast<const T*>(nullptr), u, delta, L, n);
    project(node.mats[x_B], static_cast<const T*>(nullptr), u, Bm, L, n);
    project(node.mats[x_C], static_cast<const T*>(nullptr), u, Cm, L, n);
    project(node.mats[dt_proj], bias_of(node, dt_bias), delta, dt, L, n);
    const T threshold = static_cast<T>(kSoftplusThreshold);
    for (index_t e = 0; e < Ec; ++e) {  // torch's softplus: x above 20, else log1p(exp(min(x, 20)))
        T* x = dt + e * L;
        for (index_t l = 0; l < n; ++l) spare[l] = std::min(x[l], threshold);
        plan.apply(Fn::exp, spare, spare, n);
        plan.apply(Fn::log1p, spare, spare, n);
        for (index_t l = 0; l < n; ++l) x[l] = x[l] > threshold ? x[l] : spare[l];
    }

    // selective scan: S = exp(Δ A) S + (Δ B) u;  y = Σ_n C_n S_n + D u   (y over the spent u0 rows)
    const T* A = node.vecs[decay_rate].data();
    const T* D = node.vecs[skip].data();
    T* y = u0;
    T* dA = blk.scratch;  // E x N x g
    for (index_t t = 0; t < tc; ++t) {
        const index_t l0 = t * g;
        for (index_t e = 0; e < Ec; ++e)
            for (index_t q = 0; q < Nc; ++q)
                for (index_t b = 0; b < g; ++b) dA[(e * Nc + q) * g + b] = dt[e * L + l0 + b] * A[e * Nc + q];
        plan.apply(Fn::exp, dA, dA, Ec * Nc * g);
        for (index_t e = 0; e < Ec; ++e) {
            const T* ue = u + e * L + l0;
            const T* dte = dt + e * L + l0;
            T* ye = y + e * L + l0;
            for (index_t q = 0; q < Nc; ++q) {
                T* s = ssm + (e * Nc + q) * g;
                const T* da = dA + (e * Nc + q) * g;
                const T* bq = Bm + q * L + l0;
                for (index_t b = 0; b < g; ++b) s[b] = da[b] * s[b] + (dte[b] * bq[b]) * ue[b];
            }
            const T* s0 = ssm + e * Nc * g;
            for (index_t b = 0; b < g; ++b) ye[b] = s0[b] * Cm[l0 + b];
            for (index_t q = 1; q < Nc; ++q) {
                const T* s = ssm + (e * Nc + q) * g;
                const T* cq = Cm + q * L + l0;
                for (index_t b = 0; b < g; ++b) ye[b] = ye[b] + s[b] * cq[b];
            }
            for (index_t b = 0; b < g; ++b) ye[b] = ye[b] + ue[b] * D[e];
        }
    }

    for (index_t e = 0; e < Ec; ++e) {  // y ⊙ gate(z); HF's gate is SiLU, ReLU in ideal mode
        T* ze = z + e * L;
        activate(ideal, ze, n);
        T* ye = y + e * L;
        for (index_t l = 0; l < n; ++l) ye[l] = ye[l] * ze[l];
    }
    T* mixed = normed;
    project(node.mats[out_proj], bias_of(node, out_bias), y, mixed, L, n);
    add_rows(H, r, mixed, r, L, n);
}

template <typename T>
BlockKind<T> kind() {
    return {"mamba_block",
            {"E", "N", "K", "R"},
            {{"embed", "H", "d", true},
             {"in_x", "E", "H", false},
             {"in_z", "E", "H", false},
             {"x_dt", "R", "E", false},
             {"x_B", "N", "E", false},
             {"x_C", "N", "E", false},
             {"dt_proj", "E", "R", false},
             {"out_proj", "H", "E", false}},
            {{"norm_weight", "H"},
             {"in_bias_x", "E"},
             {"in_bias_z", "E"},
             {"conv_weight", "E*K"},
             {"conv_bias", "E"},
             {"dt_bias", "E"},
             {"A", "E*N"},
             {"D", "E"},
             {"out_bias", "H"}},
            {"norm_eps"},
            {Fn::exp, Fn::log1p},
            {},
            true,
            &problem<T>,
            nullptr,
            &state_dim<T>,
            &arena_rows<T>,
            &scratch_per_sequence<T>,
            &run<T>};
}

const KindRegistrar<BlockKind> registrar(kind<double>(), kind<float>());

}  // namespace
}  // namespace kernel
}  // namespace lsrl
