// The RecurrentGemma blocks (python/lsrl/targets/shared/recurrentgemma.py; op kinds rg_embed,
// rg_recurrent_block, rg_attention_block, rg_final_norm): the numpy semantics' equations in the same order.
//
//   rg_embed            out = (embed x) * normalizer
//   rg_recurrent_block  n = RMSNorm(x); y = act(W_y n + b_y); conv over W_x n + b_x (window K);
//                       RG-LRU: gi, gr = expit(z W_i + b_i), expit(z W_r + b_r); log a = −8 gr softplus(Λ);
//                       h = a h + z gi sqrt(1 − a²) (a = 0, multiplier 1 at a stream's first step);
//                       x' = x + W_o (h ⊙ y) + b_o;  then the gated MLP
//   rg_attention_block  x' = x + o_proj_bias (the attention itself is zeroed); then the gated MLP
//   rg_final_norm       out = RMSNorm(x)
//   gated MLP           out = x' + W_down (act(W_gate n' + b_gate) ⊙ (W_up n' + b_up)) + b_down, n' = RMSNorm(x')
// act: ReLU (ideal) or gelu_pytorch_tanh.  RMSNorm weights w act as (1 + w).  The recurrent block's state:
// the conv window (K−1 × lru width, oldest first), h, and the stream position (a float count of the
// steps seen; only "is it 0" matters).
#include "../blocks.hpp"

namespace lsrl {
namespace kernel {
namespace {

constexpr double kGeluScale = 0.7978845608028654;  // math.sqrt(2 / pi), as the numpy semantics computes it
constexpr double kGeluCubic = 0.044715;

// ---- the gated MLP (parameters at the given indices of the node's lists)
struct MlpIndex {
    int norm_weight, gate_bias, up_bias, down_bias;  // vectors
    int gate, up, down;                              // matrices
    int I;                                           // size
};

// act(x) in place over n lanes; `spare` is one arena row.
template <typename T>
void activate(const Plan<T>& plan, bool ideal, T* x, T* spare, index_t n) {
    if (ideal) {
        relu_lanes(1, x, n, x, n, n);
        return;
    }
    // 0.5 * v * (1 + tanh(c * (v + 0.044715 * v * v * v))), in the numpy expression's order
    const T c = static_cast<T>(kGeluScale), cubic = static_cast<T>(kGeluCubic), half = T(0.5);
    for (index_t l = 0; l < n; ++l) spare[l] = c * (x[l] + ((cubic * x[l]) * x[l]) * x[l]);
    plan.apply(Fn::tanh, spare, spare, n);
    for (index_t l = 0; l < n; ++l) x[l] = (half * x[l]) * (T(1) + spare[l]);
}

// out holds x' on entry and the block's output on return; scratch: ms, spare, H rows, 2I rows.
template <typename T>
void gated_mlp(const CellBlock<T>& blk, const MlpIndex& ix, T* scratch) {
    const Node<T>& node = blk.node;
    const index_t L = blk.L, n = blk.n, H = node.dim, I = node.sizes[ix.I];
    T* ms = scratch;
    T* spare = ms + L;
    T* normed = spare + L;  // later the down projection
    T* gate = normed + H * L;
    T* up = gate + I * L;
    T* out = blk.out;
    rms_norm(out, H, node.vecs[ix.norm_weight], true, node.numbers[0], ms, normed, L, n);
    project(node.mats[ix.gate], node.vecs[ix.gate_bias].data(), normed, gate, L, n);
    project(node.mats[ix.up], node.vecs[ix.up_bias].data(), normed, up, L, n);
    for (index_t i = 0; i < I; ++i) {
        T* gi = gate + i * L;
        activate(blk.plan, node.ideal, gi, spare, n);
        const T* ui = up + i * L;
        for (index_t l = 0; l < n; ++l) gi[l] = gi[l] * ui[l];
    }
    project(node.mats[ix.down], node.vecs[ix.down_bias].data(), gate, normed, L, n);
    add_rows(H, out, normed, out, L, n);
}

template <typename T>
index_t mlp_rows(const Node<T>& node, int I) {
    return 2 + node.dim + 2 * node.sizes[I];
}

template <typename T>
std::string anything(const Node<T>&, index_t) {
    return "";
}

template <typename T>
index_t no_state(const Node<T>&) {
    return 0;
}

template <typename T>
index_t no_scratch(const Node<T>&) {
    return 0;
}

// ---- rg_embed
namespace embed_block {

template <typename T>
void run(const CellBlock<T>& blk) {
    const Node<T>& node = blk.node;
    project(node.mats[0], static_cast<const T*>(nullptr), blk.in, blk.out, blk.L, blk.n);
    const T scale = static_cast<T>(node.numbers[0]);
    for (index_t j = 0; j < node.dim; ++j) {
        T* o = blk.out + j * blk.L;
        for (index_t l = 0; l < blk.n; ++l) o[l] = o[l] * scale;
    }
}

template <typename T>
BlockKind<T> kind() {
    return {"rg_embed", {}, {{"embed", "H", "d", false}}, {}, {"normalizer"}, {}, {}, false,
            &anything<T>, nullptr, &no_state<T>, &no_scratch<T>, &no_scratch<T>, &run<T>};
}

}  // namespace embed_block

// ---- rg_final_norm
namespace final_norm {

template <typename T>
index_t rows(const Node<T>&) {
    return 1;
}

template <typename T>
void run(const CellBlock<T>& blk) {
    rms_norm(blk.in, blk.node.dim, blk.node.vecs[0], true, blk.node.numbers[0], blk.pre, blk.out, blk.L, blk.n);
}

template <typename T>
BlockKind<T> kind() {
    return {"rg_final_norm", {}, {}, {{"weight", "H"}}, {"eps"}, {}, {}, false,
            &normalised_stream<T>, nullptr, &no_state<T>, &rows<T>, &no_scratch<T>, &run<T>};
}

}  // namespace final_norm

// ---- rg_attention_block
namespace attention {

enum Vec { o_proj_bias, norm_weight, gate_bias, up_bias, down_bias };
enum Mat { gate, up, down };
const MlpIndex kMlp{norm_weight, gate_bias, up_bias, down_bias, gate, up, down, 0};

template <typename T>
index_t rows(const Node<T>& node) {
    return mlp_rows(node, 0);
}

template <typename T>
void run(const CellBlock<T>& blk) {
    const Node<T>& node = blk.node;
    const T* bias = node.vecs[o_proj_bias].data();
    for (index_t j = 0; j < node.dim; ++j) {
        const T* xj = blk.in + j * blk.L;
        T* oj = blk.out + j * blk.L;
        for (index_t l = 0; l < blk.n; ++l) oj[l] = xj[l] + bias[j];
    }
    gated_mlp(blk, kMlp, blk.pre);
}

template <typename T>
BlockKind<T> kind() {
    return {"rg_attention_block",
            {"I"},
            {{"mlp_gate", "I", "H", false}, {"mlp_up", "I", "H", false}, {"mlp_down", "H", "I", false}},
            {{"o_proj_bias", "H"}, {"channel_norm_weight", "H"}, {"mlp_gate_bias", "I"}, {"mlp_up_bias", "I"},
             {"mlp_down_bias", "H"}},
            {"eps"},
            {},
            {Fn::tanh},
            true,
            &normalised_stream<T>,
            nullptr,
            &no_state<T>,
            &rows<T>,
            &no_scratch<T>,
            &run<T>};
}

}  // namespace attention

// ---- rg_recurrent_block
namespace recurrent {

enum Size { W, K, I };  // lru width, conv window, MLP width
enum Mat { lin_y, lin_x, lin_out, input_gate, recurrent_gate, gate, up, down };
enum Vec {
    temporal_norm_weight, y_bias, x_bias, out_bias, conv_weight, conv_bias, softplus_param, input_gate_bias,
    recurrent_gate_bias, norm_weight, gate_bias, up_bias, down_bias
};
const MlpIndex kMlp{norm_weight, gate_bias, up_bias, down_bias, gate, up, down, I};

template <typename T>
index_t state_dim(const Node<T>& node) {
    return (node.sizes[K] - 1) * node.sizes[W] + node.sizes[W] + 1;
}

// A channel without conv taps and conv bias has z = +0 at every step, so its RG-LRU input is ±0; while its h is
// 0 too, the channel stays 0 and contributes exact zeros to linear_out, whatever its gates.  The lowering sizes
// every block to the widest stage (HF has one lru_width), so most channels of most blocks are such channels.
template <typename T>
void find_live_channels(Node<T>& node) {
    const index_t Wc = node.sizes[W], Kc = node.sizes[K];
    const T* taps = node.vecs[conv_weight].data();
    node.live_channels.assign(static_cast<std::size_t>(Wc), 0);
    for (index_t c = 0; c < Wc; ++c) {
        bool live = node.vecs[conv_bias][c] != T(0);
        for (index_t k = 0; k < Kc && !live; ++k) live = taps[c * Kc + k] != T(0);
        node.live_channels[c] = live;
    }
}

// ms, spare, H normalised rows; y, x, z, gi, gr (W each) — the MLP reuses the same rows
template <typename T>
index_t rows(const Node<T>& node) {
    return std::max(2 + node.dim + 5 * node.sizes[W], mlp_rows(node, I));
}

template <typename T>
void run(const CellBlock<T>& blk) {
    const Node<T>& node = blk.node;
    const Plan<T>& plan = blk.plan;
    const index_t L = blk.L, g = blk.g, tc = blk.tc, n = blk.n, H = node.dim;
    const index_t Wc = node.sizes[W], Kc = node.sizes[K];
    T* ms = blk.pre;
    T* spare = ms + L;
    T* normed = spare + L;
    T* y = normed + H * L;
    T* xb = y + Wc * L;   // later exp(2 log a), then the multiplier
    T* z = xb + Wc * L;   // later the scan's input, then h
    T* gi = z + Wc * L;
    T* gr = gi + Wc * L;  // later log a, then a
    T* window_state = blk.state;                    // (K−1) x W x g
    T* h = blk.state + (Kc - 1) * Wc * g;           // W x g
    T* position = h + Wc * g;                       // 1 x g

    // idle channels (see find_live_channels) skip the RG-LRU: their h stays, their h ⊙ y row is +0.  A channel's
    // h changes only in its own RG-LRU step, after its last test, so testing it where needed allocates nothing.
    auto idle = [&](index_t c) {
        if (node.live_channels[c]) return false;
        for (index_t b = 0; b < g; ++b)
            if (h[c * g + b] != T(0)) return false;
        return true;
    };

    rms_norm(blk.in, H, node.vecs[temporal_norm_weight], true, node.numbers[0], ms, normed, L, n);
    project(node.mats[lin_y], node.vecs[y_bias].data(), normed, y, L, n);
    for (index_t c = 0; c < Wc; ++c)
        if (!idle(c)) activate(plan, node.ideal, y + c * L, spare, n);
    project(node.mats[lin_x], node.vecs[x_bias].data(), normed, xb, L, n);

    // temporal conv: z = bias + Σ_k window/x · w[c, k] over the channel's non-zero taps
    const T* taps = node.vecs[conv_weight].data();
    for (index_t c = 0; c < Wc; ++c) {
        T* acc = z + c * L;
        std::fill(acc, acc + n, T(0) + node.vecs[conv_bias][c]);
        auto window = [&](index_t j, index_t b) -> T& { return window_state[(j * Wc + c) * g + b]; };
        if (node.live_channels[c]) conv_channel(xb + c * L, acc, g, tc, Kc, taps + c * Kc, window);
        advance_window(xb + c * L, g, tc, Kc, window);
    }

    // RG-LRU gates (z W: the descriptor holds the transposed matrices, as the semantics applies them)
    project(node.mats[input_gate], node.vecs[input_gate_bias].data(), z, gi, L, n);
    project(node.mats[recurrent_gate], node.vecs[recurrent_gate_bias].data(), z, gr, L, n);
    const T* sp = node.vecs[softplus_param].data();
    for (index_t c = 0; c < Wc; ++c) {
        if (idle(c)) {
            std::fill(y + c * L, y + c * L + n, T(0));
            continue;
        }
        T* gic = gi + c * L;
        T* grc = gr + c * L;
        T* twice = xb + c * L;
        for (index_t l = 0; l < n; ++l) {
            gic[l] = sigmoid(gic[l]);
            grc[l] = (T(-8) * sigmoid(grc[l])) * sp[c];
            twice[l] = T(2) * grc[l];
        }
        plan.apply(Fn::exp, grc, grc, n);
        plan.apply(Fn::exp, twice, twice, n);
        for (index_t l = 0; l < n; ++l) twice[l] = std::sqrt(T(1) - twice[l]);
        for (index_t b = 0; b < g; ++b)
            if (position[b] == T(0) && tc > 0) {  // the stream's first step: reset
                twice[b] = T(1);
                grc[b] = T(0);
            }
        T* zc = z + c * L;
        for (index_t l = 0; l < n; ++l) zc[l] = (zc[l] * gic[l]) * twice[l];
        T* hc = h + c * g;
        for (index_t t = 0; t < tc; ++t)
            for (index_t b = 0; b < g; ++b) {
                const index_t l = t * g + b;
                hc[b] = grc[l] * hc[b] + zc[l];
                zc[l] = hc[b];
            }
        T* yc = y + c * L;
        for (index_t l = 0; l < n; ++l) yc[l] = zc[l] * yc[l];
    }
    for (index_t b = 0; b < g; ++b) position[b] = position[b] + static_cast<T>(tc);

    T* mixed = normed;
    project(node.mats[lin_out], node.vecs[out_bias].data(), y, mixed, L, n);
    add_rows(H, blk.in, mixed, blk.out, L, n);
    gated_mlp(blk, kMlp, blk.pre);
}

template <typename T>
BlockKind<T> kind() {
    return {"rg_recurrent_block",
            {"W", "K", "I"},
            {{"linear_y", "W", "H", false},
             {"linear_x", "W", "H", false},
             {"linear_out", "H", "W", false},
             {"input_gate", "W", "W", false},
             {"recurrent_gate", "W", "W", false},
             {"mlp_gate", "I", "H", false},
             {"mlp_up", "I", "H", false},
             {"mlp_down", "H", "I", false}},
            {{"temporal_norm_weight", "H"},
             {"linear_y_bias", "W"},
             {"linear_x_bias", "W"},
             {"linear_out_bias", "H"},
             {"conv_weight", "W*K"},
             {"conv_bias", "W"},
             {"softplus_param", "W"},
             {"input_gate_bias", "W"},
             {"recurrent_gate_bias", "W"},
             {"channel_norm_weight", "H"},
             {"mlp_gate_bias", "I"},
             {"mlp_up_bias", "I"},
             {"mlp_down_bias", "H"}},
            {"eps"},
            {Fn::exp},
            {Fn::tanh},
            true,
            &normalised_stream<T>,
            &find_live_channels<T>,
            &state_dim<T>,
            &rows<T>,
            &no_scratch<T>,
            &run<T>};
}

}  // namespace recurrent

const KindRegistrar<BlockKind> embed_registrar(embed_block::kind<double>(), embed_block::kind<float>());
const KindRegistrar<BlockKind> final_norm_registrar(final_norm::kind<double>(), final_norm::kind<float>());
const KindRegistrar<BlockKind> attention_registrar(attention::kind<double>(), attention::kind<float>());
const KindRegistrar<BlockKind> recurrent_registrar(recurrent::kind<double>(), recurrent::kind<float>());

}  // namespace
}  // namespace kernel
}  // namespace lsrl
