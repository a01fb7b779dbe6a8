// The LSTM cell (target lstm, python/lsrl/targets/lstm.py; PyTorch gate order i, f, g, o).
// ---- LSTM.  numpy: gates = pre + W_hh h; i, f, o = sigmoid; g = tanh; c = f*c + i*g; h = o*tanh(c).
// `pre` (4H rows) holds the input-side gates; scratch: 2H*g.
// Units without recurrent weights ("static") run first, each over the whole block: gates, then the
// cell recurrence along time, then h = o * tanh(c).  The others step through time (they may read
// any unit's previous h, the static ones' included).  A gate row with no weights is a constant.
#include "../cells.hpp"

namespace lsrl {
namespace kernel {
namespace {

// The recurrent units, one step at a time (FixedG = 1: one sequence per group).
template <typename T, bool Ideal, int FixedG>
void lstm_steps(const CellBlock<T>& blk) {
    const index_t g = FixedG > 0 ? FixedG : blk.g;
    const Node<T>& node = blk.node;
    const index_t L = blk.L, tc = blk.tc;
    T* pre = blk.pre;
    T* out = blk.out;
    T* state = blk.state;
    T* scratch = blk.scratch;
    const index_t H = node.dim;
    T* c = state + H * g;
    const index_t R_ = static_cast<index_t>(node.recurrent_units.size());
    T* cand = scratch;          // R_ x g: tanh of the g gates, then tanh(c)
    T* cs = scratch + H * g;    // R_ x g: c of the recurrent units
    for (index_t q = 0; q < R_; ++q)
        for (index_t b = 0; b < g; ++b) cs[q * g + b] = c[node.recurrent_units[q] * g + b];
    for (index_t t = 0; t < tc; ++t) {
        T* gates = pre + t * g;
        const T* prev = t == 0 ? state : out + (t - 1) * g;
        recurrent_add(node.R, g, prev, t == 0 ? g : L, gates, L);
        for (index_t q = 0; q < R_; ++q) {
            const index_t j = node.recurrent_units[q];
            for (index_t b = 0; b < g; ++b) cand[q * g + b] = gates[(2 * H + j) * L + b];
        }
        squash_vec<Ideal>(blk.plan, cand, cand, R_ * g);
        for (index_t q = 0; q < R_; ++q) {
            const index_t j = node.recurrent_units[q];
            const T* gi = gates + j * L;
            const T* gf = gates + (H + j) * L;
            T* go = gates + (3 * H + j) * L;
            for (index_t b = 0; b < g; ++b) {
                const T fc = gate<Ideal>(gf[b]) * cs[q * g + b];
                const T ig = gate<Ideal>(gi[b]) * cand[q * g + b];
                cs[q * g + b] = fc + ig;
                go[b] = gate<Ideal>(go[b]);
            }
        }
        squash_vec<Ideal>(blk.plan, cs, cand, R_ * g);
        T* h = out + t * g;
        for (index_t q = 0; q < R_; ++q) {
            const index_t j = node.recurrent_units[q];
            const T* go = gates + (3 * H + j) * L;
            for (index_t b = 0; b < g; ++b) h[j * L + b] = go[b] * cand[q * g + b];
        }
    }
    for (index_t q = 0; q < R_; ++q)
        for (index_t b = 0; b < g; ++b) c[node.recurrent_units[q] * g + b] = cs[q * g + b];
}

template <typename T, bool Ideal>
void lstm_cells(const CellBlock<T>& blk) {
    const Node<T>& node = blk.node;
    const index_t L = blk.L, g = blk.g, tc = blk.tc, n = blk.n;
    T* pre = blk.pre;
    T* out = blk.out;
    T* state = blk.state;
    const index_t H = node.dim;
    T* c = state + H * g;
    if (n > 0) {
        const auto& units = node.static_units;
        for (index_t j : units) {
            activate_row<Ideal>(blk.plan, node, pre, L, j, false, n);
            activate_row<Ideal>(blk.plan, node, pre, L, H + j, false, n);
            activate_row<Ideal>(blk.plan, node, pre, L, 2 * H + j, true, n);
            activate_row<Ideal>(blk.plan, node, pre, L, 3 * H + j, false, n);
        }
        // c_t = f c_{t-1} + i g along time, stored over the spent i rows; four units at a time so
        // that four independent dependency chains are in flight
        const std::size_t count = units.size();
        std::size_t u = 0;
        for (; u + 4 <= count; u += 4) {
            T* gi[4];
            const T *gf[4], *gg[4];
            for (int k = 0; k < 4; ++k) {
                const index_t j = units[u + static_cast<std::size_t>(k)];
                gi[k] = pre + j * L;
                gf[k] = pre + (H + j) * L;
                gg[k] = pre + (2 * H + j) * L;
            }
            for (index_t b = 0; b < g; ++b) {
                T cb[4];
                for (int k = 0; k < 4; ++k) cb[k] = c[units[u + static_cast<std::size_t>(k)] * g + b];
                for (index_t t = 0; t < tc; ++t) {
                    const index_t l = t * g + b;
                    for (int k = 0; k < 4; ++k) {
                        const T fc = gf[k][l] * cb[k];
                        const T ig = gi[k][l] * gg[k][l];
                        cb[k] = fc + ig;
                        gi[k][l] = cb[k];
                    }
                }
                for (int k = 0; k < 4; ++k) c[units[u + static_cast<std::size_t>(k)] * g + b] = cb[k];
            }
        }
        for (; u < count; ++u) {
            const index_t j = units[u];
            T* gi = pre + j * L;
            const T* gf = pre + (H + j) * L;
            const T* gg = pre + (2 * H + j) * L;
            for (index_t b = 0; b < g; ++b) {
                T cb = c[j * g + b];
                for (index_t t = 0; t < tc; ++t) {
                    const index_t l = t * g + b;
                    const T fc = gf[l] * cb;
                    const T ig = gi[l] * gg[l];
                    cb = fc + ig;
                    gi[l] = cb;
                }
                c[j * g + b] = cb;
            }
        }
        for (index_t j : units) {
            T* cj = pre + j * L;
            squash_vec<Ideal>(blk.plan, cj, cj, n);
            const T* go = pre + (3 * H + j) * L;
            T* hj = out + j * L;
            for (index_t l = 0; l < n; ++l) hj[l] = go[l] * cj[l];
        }
    }
    if (node.recurrent_units.empty()) return;
    if (g == 1)
        lstm_steps<T, Ideal, 1>(blk);
    else
        lstm_steps<T, Ideal, 0>(blk);
}

template <typename T>
void run(const CellBlock<T>& blk) {
    input_projection(blk, blk.pre);
    if (blk.node.ideal)
        lstm_cells<T, true>(blk);
    else
        lstm_cells<T, false>(blk);
    save_last_column(blk, blk.node.dim);  // h; c is updated in place
}

// 4 gate blocks; state (h, c); the input-side gates in 4H arena rows; scratch 2H per sequence.
template <typename T>
CellKind<T> kind() {
    return {"lstm", 4, 2, 4, 2, false, true, &run<T>};
}

const KindRegistrar<CellKind> registrar(kind<double>(), kind<float>());

}  // namespace
}  // namespace kernel
}  // namespace lsrl
