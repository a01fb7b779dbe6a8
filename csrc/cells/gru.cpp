// The GRU cell (target gru, python/lsrl/targets/gru.py; PyTorch gate order r, z, n; r applied to W_hn h + b_hn).
// ---- GRU.  numpy: hh = W_hh h + b_hh; r = sigmoid(pre_r + hh_r); z = sigmoid(pre_z + hh_z);
//      n = tanh(pre_n + r * hh_n); h = (1 - z) * n + z * h.
// `pre` (3H rows) holds the input-side gates; scratch: hh (3H*g), candidate (H*g), z (H*g).
// Static units (no recurrent weight: hh = b_hh) run first over the whole block, the others step.
#include "../cells.hpp"

namespace lsrl {
namespace kernel {
namespace {

// The recurrent units, one step at a time (FixedG = 1: one sequence per group).
template <typename T, bool Ideal, int FixedG>
void gru_steps(const CellBlock<T>& blk) {
    const index_t g = FixedG > 0 ? FixedG : blk.g;
    const Node<T>& node = blk.node;
    const index_t L = blk.L, tc = blk.tc;
    const T* pre = blk.pre;
    T* out = blk.out;
    const T* state = blk.state;
    T* scratch = blk.scratch;
    const index_t H = node.dim;
    const T* b2 = node.bias2.data();
    const index_t R_ = static_cast<index_t>(node.recurrent_units.size());
    T* hh = scratch;                // 3H x g (only the recurrent units' rows are used)
    T* cand = scratch + 3 * H * g;  // R_ x g
    T* zs = cand + H * g;           // R_ x g
    for (index_t t = 0; t < tc; ++t) {
        const T* prev = t == 0 ? state : out + (t - 1) * g;
        const index_t ps = t == 0 ? g : L;
        const T* p = pre + t * g;
        for (index_t q = 0; q < R_; ++q) {
            const index_t j = node.recurrent_units[q];
            for (index_t k = 0; k < 3; ++k) {
                const index_t row = k * H + j;
                for (index_t b = 0; b < g; ++b) hh[row * g + b] = b2[row];
            }
        }
        recurrent_add(node.R, g, prev, ps, hh, g);
        for (index_t q = 0; q < R_; ++q) {
            const index_t j = node.recurrent_units[q];
            for (index_t b = 0; b < g; ++b) {
                const T r = gate<Ideal>(p[j * L + b] + hh[j * g + b]);
                zs[q * g + b] = gate<Ideal>(p[(H + j) * L + b] + hh[(H + j) * g + b]);
                const T rh = r * hh[(2 * H + j) * g + b];
                cand[q * g + b] = p[(2 * H + j) * L + b] + rh;
            }
        }
        squash_vec<Ideal>(blk.plan, cand, cand, R_ * g);
        T* h = out + t * g;
        for (index_t q = 0; q < R_; ++q) {
            const index_t j = node.recurrent_units[q];
            const T* hp = prev + j * ps;
            T* hj = h + j * L;
            for (index_t b = 0; b < g; ++b) {
                const T z = zs[q * g + b];
                const T keep = (T(1) - z) * cand[q * g + b];
                const T carry = z * hp[b];
                hj[b] = keep + carry;
            }
        }
    }
}

template <typename T, bool Ideal>
void gru_cells(const CellBlock<T>& blk) {
    const Node<T>& node = blk.node;
    const index_t L = blk.L, g = blk.g, tc = blk.tc, n = blk.n;
    T* pre = blk.pre;
    T* out = blk.out;
    const T* state = blk.state;
    const index_t H = node.dim;
    const T* b2 = node.bias2.data();
    if (n > 0) {
        for (index_t j : node.static_units) {
            T* pr = pre + j * L;
            T* pz = pre + (H + j) * L;
            T* pn = pre + (2 * H + j) * L;
            const T br = b2[j], bz = b2[H + j], bn = b2[2 * H + j];
            const bool cr = node.constant_row[j], cz = node.constant_row[H + j],
                       cn = node.constant_row[2 * H + j];
            if (cr && cz && cn) {  // the whole unit is a constant map
                const T r = gate<Ideal>(pr[0] + br);
                const T z = gate<Ideal>(pz[0] + bz);
                const T rh = r * bn;
                T v = pn[0] + rh;
                squash_vec<Ideal>(blk.plan, &v, &v, 1);
                for (index_t l = 0; l < n; ++l) {
                    pz[l] = z;
                    pn[l] = v;
                }
            } else {
                for (index_t l = 0; l < n; ++l) {
                    const T r = gate<Ideal>(pr[l] + br);
                    pz[l] = gate<Ideal>(pz[l] + bz);
                    const T rh = r * bn;
                    pn[l] = pn[l] + rh;
                }
                squash_vec<Ideal>(blk.plan, pn, pn, n);
            }
        }
        // h_t = (1 - z) n + z h_{t-1} along time, four units at a time (independent chains)
        const auto& units = node.static_units;
        const std::size_t count = units.size();
        std::size_t u = 0;
        for (; u + 4 <= count; u += 4) {
            const T *pz[4], *pn[4];
            T* hj[4];
            for (int k = 0; k < 4; ++k) {
                const index_t j = units[u + static_cast<std::size_t>(k)];
                pz[k] = pre + (H + j) * L;
                pn[k] = pre + (2 * H + j) * L;
                hj[k] = out + j * L;
            }
            for (index_t b = 0; b < g; ++b) {
                T hb[4];
                for (int k = 0; k < 4; ++k) hb[k] = state[units[u + static_cast<std::size_t>(k)] * g + b];
                for (index_t t = 0; t < tc; ++t) {
                    const index_t l = t * g + b;
                    for (int k = 0; k < 4; ++k) {
                        const T keep = (T(1) - pz[k][l]) * pn[k][l];
                        const T carry = pz[k][l] * hb[k];
                        hb[k] = keep + carry;
                        hj[k][l] = hb[k];
                    }
                }
            }
        }
        for (; u < count; ++u) {
            const index_t j = units[u];
            const T* pz = pre + (H + j) * L;
            const T* pn = pre + (2 * H + j) * L;
            T* hj = out + j * L;
            for (index_t b = 0; b < g; ++b) {
                T hb = state[j * g + b];
                for (index_t t = 0; t < tc; ++t) {
                    const index_t l = t * g + b;
                    const T keep = (T(1) - pz[l]) * pn[l];
                    const T carry = pz[l] * hb;
                    hb = keep + carry;
                    hj[l] = hb;
                }
            }
        }
    }
    if (node.recurrent_units.empty()) return;
    if (g == 1)
        gru_steps<T, Ideal, 1>(blk);
    else
        gru_steps<T, Ideal, 0>(blk);
}

template <typename T>
void run(const CellBlock<T>& blk) {
    input_projection(blk, blk.pre);
    if (blk.node.ideal)
        gru_cells<T, true>(blk);
    else
        gru_cells<T, false>(blk);
    save_last_column(blk, blk.node.dim);
}

// 3 gate blocks; state h; the input-side gates in 3H arena rows; scratch 5H per sequence; b2 = b_hh.
template <typename T>
CellKind<T> kind() {
    return {"gru", 3, 1, 3, 5, true, true, &run<T>};
}

const KindRegistrar<CellKind> registrar(kind<double>(), kind<float>());

}  // namespace
}  // namespace kernel
}  // namespace lsrl
