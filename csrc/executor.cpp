// The whole-model executor declared in executor.hpp.
#include "executor.hpp"

#include <algorithm>
#include <cstring>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace lsrl {
namespace kernel {

namespace {

// Lanes per block when the caller does not choose: measured on the compiled token program
// (benchmarks/kernel.py --lanes); large enough to amortise the per-node loop overhead, small
// enough for a block of the widest live values to stay in L2.
constexpr index_t kDefaultLanes = 128;
// Automatic blocks never make the arena larger than this (an explicit `lanes` overrides it).
constexpr double kArenaBudgetBytes = 8.0 * 1024 * 1024;
// Below this much work in total one thread is faster than starting others.
constexpr double kMinWorkForThreads = 2.0e6;

// First-fit allocation of row ranges, for the liveness-based arena layout.
class RowAllocator {
   public:
    index_t allocate(index_t n) {
        if (n <= 0) return 0;
        for (std::size_t k = 0; k < free_.size(); ++k) {
            if (free_[k].second >= n) {
                const index_t off = free_[k].first;
                free_[k].first += n;
                free_[k].second -= n;
                if (free_[k].second == 0) free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(k));
                return off;
            }
        }
        if (!free_.empty() && free_.back().first + free_.back().second == top_) {
            const index_t off = free_.back().first;
            free_.pop_back();
            top_ = off + n;
            return off;
        }
        const index_t off = top_;
        top_ += n;
        return off;
    }
    void release(index_t off, index_t n) {
        if (n <= 0) return;
        auto it = std::lower_bound(free_.begin(), free_.end(), std::make_pair(off, index_t(0)));
        it = free_.insert(it, {off, n});
        // merge with the next and the previous block
        if (it + 1 != free_.end() && it->first + it->second == (it + 1)->first) {
            it->second += (it + 1)->second;
            free_.erase(it + 1);
        }
        if (it != free_.begin() && (it - 1)->first + (it - 1)->second == it->first) {
            (it - 1)->second += it->second;
            free_.erase(it);
        }
    }
    index_t top() const { return top_; }

   private:
    std::vector<std::pair<index_t, index_t>> free_;  // (offset, size), sorted by offset
    index_t top_ = 0;
};

// Rows a node needs besides its value while it runs: the input-side gates of an LSTM or a GRU.
template <typename T>
index_t scratch_rows(const Node<T>& n) {
    return n.kind == NodeKind::lstm ? 4 * n.dim : n.kind == NodeKind::gru ? 3 * n.dim : 0;
}

}  // namespace

template <typename T>
void Plan<T>::finalise() {
    const index_t count = static_cast<index_t>(nodes.size());
    stateful.clear();
    work_per_step = 0;
    for (index_t n = 0; n < count; ++n) {
        Node<T>& node = nodes[n];
        if (node.state_dim > 0) {
            node.state_slot = static_cast<index_t>(stateful.size());
            stateful.push_back(n);
        }
        work_per_step += static_cast<double>(node.W.nnz() + node.R.nnz() + node.dim * (1 + node.gates));
        if (node.gates > 1) {
            node.constant_row.assign(static_cast<std::size_t>(node.gates * node.dim), 0);
            for (index_t row = 0; row < node.gates * node.dim; ++row)
                node.constant_row[row] = node.W.indptr[row + 1] == node.W.indptr[row] &&
                                         node.R.indptr[row + 1] == node.R.indptr[row];
            node.recurrent_units.clear();
            node.static_units.clear();
            for (index_t j = 0; j < node.dim; ++j) {
                bool recurrent = false;
                for (index_t k = 0; k < node.gates; ++k) {
                    const index_t row = k * node.dim + j;
                    recurrent = recurrent || node.R.indptr[row + 1] > node.R.indptr[row];
                }
                (recurrent ? node.recurrent_units : node.static_units).push_back(j);
            }
        }
        if (node.kind == NodeKind::lstm) scratch_per_lane = std::max(scratch_per_lane, 2 * node.dim);
        if (node.kind == NodeKind::gru) scratch_per_lane = std::max(scratch_per_lane, 5 * node.dim);
    }
    // A ReLU that is the only reader of an affine map is applied as the map's results are stored; the
    // ReLU node then aliases the map's rows (like a slice from row 0).
    std::vector<index_t> readers(count, 0);
    for (const Node<T>& node : nodes)
        for (index_t in : node.inputs) ++readers[in];
    for (index_t n = 0; n < count; ++n) {
        Node<T>& node = nodes[n];
        if (node.kind != NodeKind::relu) continue;
        Node<T>& src = nodes[node.inputs[0]];
        if (src.kind == NodeKind::affine && readers[node.inputs[0]] == 1 && node.inputs[0] != output) {
            src.relu_after = true;
            node.kind = NodeKind::slice;
            node.start = 0;
        }
    }
    // Slices alias their operand's rows: liveness is tracked per owner of the storage.
    std::vector<index_t> owner(count), last_use(count, -1);
    for (index_t n = 0; n < count; ++n) {
        const Node<T>& node = nodes[n];
        owner[n] = node.kind == NodeKind::slice ? owner[node.inputs[0]] : n;
        for (index_t in : node.inputs) last_use[owner[in]] = std::max(last_use[owner[in]], n);
    }
    last_use[owner[output]] = count;  // the output is read after the last node
    MemoryPlan mem;
    mem.offset.assign(count, 0);
    mem.scratch.assign(count, -1);
    RowAllocator rows;
    for (index_t n = 0; n < count; ++n) {
        const Node<T>& node = nodes[n];
        if (node.kind == NodeKind::slice) {
            mem.offset[n] = mem.offset[node.inputs[0]] + node.start;
        } else {
            mem.offset[n] = rows.allocate(node.dim);
            const index_t extra = scratch_rows(node);
            if (extra > 0) {
                mem.scratch[n] = rows.allocate(extra);
                rows.release(mem.scratch[n], extra);
            }
        }
        // operands whose storage nobody reads later (each owner once)
        for (std::size_t k = 0; k < node.inputs.size(); ++k) {
            const index_t o = owner[node.inputs[k]];
            bool seen = false;
            for (std::size_t q = 0; q < k; ++q) seen = seen || owner[node.inputs[q]] == o;
            if (!seen && last_use[o] == n) rows.release(mem.offset[o], nodes[o].dim);
        }
        if (owner[n] == n && last_use[n] < 0) rows.release(mem.offset[n], node.dim);  // dead value
    }
    mem.rows = rows.top();
    memory = std::move(mem);
}

template <typename T>
RunShape Plan<T>::shape_for(index_t batch, index_t steps, int requested_threads, index_t lanes) const {
    RunShape s;
    s.batch = batch;
    s.steps = steps;
    const index_t target = lanes > 0 ? lanes : kDefaultLanes;
    index_t hw = static_cast<index_t>(std::thread::hardware_concurrency());
    if (hw <= 0) hw = 1;
    const double work = static_cast<double>(batch) * static_cast<double>(steps) * work_per_step;
    index_t threads = requested_threads > 0 ? requested_threads : (work < kMinWorkForThreads ? 1 : hw);
    threads = std::max<index_t>(1, std::min<index_t>(threads, std::max<index_t>(batch, 1)));
    index_t bg = std::max<index_t>(1, (batch + threads - 1) / threads);
    bg = std::min(bg, target);
    index_t tb = std::max<index_t>(1, target / bg);
    tb = std::min(tb, std::max<index_t>(steps, 1));
    if (lanes <= 0) {
        const double row_bytes = static_cast<double>(memory.rows) * sizeof(T);
        while (tb > 1 && row_bytes * double(tb * bg) > kArenaBudgetBytes) tb = (tb + 1) / 2;
        while (bg > 1 && row_bytes * double(tb * bg) > kArenaBudgetBytes) bg = (bg + 1) / 2;
    }
    const index_t groups = batch > 0 ? (batch + bg - 1) / bg : 0;
    s.bg = bg;
    s.tb = tb;
    s.threads = static_cast<int>(std::max<index_t>(1, std::min(threads, groups)));
    return s;
}

namespace {

template <typename T>
struct Worker {
    const Plan<T>& plan;
    const RunShape& shape;
    const T* xs;
    T* ys;
    const std::vector<const T*>& states_in;
    const std::vector<T*>& states_out;
    index_t L;  // lane stride of the arena

    // Per-thread storage, allocated by the caller.
    struct Buffers {
        std::vector<T> arena;
        std::vector<std::vector<T>> state;  // per slot: state_dim x bg
        std::vector<T> scratch;             // scratch_per_lane x bg (contiguous vectors for tanh)
    };

    void run_group(Buffers& buf, index_t b0, index_t g) const {
        const index_t T_ = shape.steps;
        const auto& nodes = plan.nodes;
        // states before the first step
        for (std::size_t s = 0; s < plan.stateful.size(); ++s) {
            const Node<T>& node = nodes[plan.stateful[s]];
            const index_t sd = node.state_dim;
            T* st = buf.state[s].data();
            const T* src = states_in[s];
            for (index_t b = 0; b < g; ++b)
                for (index_t j = 0; j < sd; ++j)
                    st[j * g + b] = src ? src[(b0 + b) * sd + j] : node.init[j];
        }
        for (index_t t0 = 0; t0 < T_; t0 += shape.tb) {
            const index_t tc = std::min(shape.tb, T_ - t0);
            run_block(buf, b0, g, t0, tc);
        }
        for (std::size_t s = 0; s < plan.stateful.size(); ++s) {
            const index_t sd = nodes[plan.stateful[s]].state_dim;
            const T* st = buf.state[s].data();
            T* dst = states_out[s];
            for (index_t b = 0; b < g; ++b)
                for (index_t j = 0; j < sd; ++j) dst[(b0 + b) * sd + j] = st[j * g + b];
        }
    }

    void run_block(Buffers& buf, index_t b0, index_t g, index_t t0, index_t tc) const {
        const index_t T_ = shape.steps;
        const index_t n = tc * g;
        T* arena = buf.arena.data();
        const auto& mem = plan.memory;
        {  // gather the inputs: lane t*g + b <- xs[b0 + b, t0 + t, :]
            const index_t d = plan.d_in;
            T* dst = arena + mem.offset[0] * L;
            for (index_t b = 0; b < g; ++b)
                for (index_t t = 0; t < tc; ++t) {
                    const T* src = xs + ((b0 + b) * T_ + t0 + t) * d;
                    for (index_t i = 0; i < d; ++i) dst[i * L + t * g + b] = src[i];
                }
        }
        for (std::size_t k = 1; k < plan.nodes.size(); ++k) run_node(buf, static_cast<index_t>(k), g, tc, n);
        {  // scatter the outputs
            const index_t d = plan.d_out;
            const T* src = arena + mem.offset[plan.output] * L;
            for (index_t b = 0; b < g; ++b)
                for (index_t t = 0; t < tc; ++t) {
                    T* dst = ys + ((b0 + b) * T_ + t0 + t) * d;
                    for (index_t i = 0; i < d; ++i) dst[i] = src[i * L + t * g + b];
                }
        }
    }

    // Step t of the recurrence out_t = R out_{t-1} + out_t (out_t holds the input-side term), with
    // out_{-1} = the carried state (rows g apart); in place on `out`.
    static void step_recurrence(const Recurrence<T>& R, index_t g, index_t t, const T* state, T* out,
                                index_t L) {
        const T* prev = t == 0 ? state : out + (t - 1) * g;
        const index_t ps = t == 0 ? g : L;
        T* cur = out + t * g;
        if (g == 1)
            recurrence_step<T, 1>(R, 1, prev, ps, cur, L, cur, L);
        else
            recurrence_step<T, 0>(R, g, prev, ps, cur, L, cur, L);
    }

    static void save_last_column(const T* out, index_t rows, index_t L, index_t g, index_t tc, T* state) {
        const T* last = out + (tc - 1) * g;
        for (index_t j = 0; j < rows; ++j)
            for (index_t b = 0; b < g; ++b) state[j * g + b] = last[j * L + b];
    }

    void run_node(Buffers& buf, index_t k, index_t g, index_t tc, index_t n) const {
        const Node<T>& node = plan.nodes[k];
        const auto& mem = plan.memory;
        T* arena = buf.arena.data();
        T* out = arena + mem.offset[k] * L;
        const T* in = node.inputs.empty() ? nullptr : arena + mem.offset[node.inputs[0]] * L;
        const index_t dim = node.dim;
        switch (node.kind) {
            case NodeKind::input:
            case NodeKind::slice:
                return;
            case NodeKind::affine:
                affine_lanes(node.W.rows, node.W.indptr.data(), node.W.indices.data(), node.W.data.data(),
                             node.bias.empty() ? nullptr : node.bias.data(), in, L, out, L, n, node.relu_after);
                return;
            case NodeKind::relu:
                relu_lanes(dim, in, L, out, L, n);
                return;
            case NodeKind::multi:
                multi_lanes(dim, in, L, out, L, n);
                return;
            case NodeKind::concat: {
                index_t row = 0;
                for (index_t src_node : node.inputs) {
                    const T* src = arena + mem.offset[src_node] * L;
                    const index_t rows = plan.nodes[src_node].dim;
                    for (index_t i = 0; i < rows; ++i)
                        std::memcpy(out + (row + i) * L, src + i * L, static_cast<std::size_t>(n) * sizeof(T));
                    row += rows;
                }
                return;
            }
            case NodeKind::linstate: {
                affine_lanes(node.W.rows, node.W.indptr.data(), node.W.indices.data(), node.W.data.data(),
                                node.bias.empty() ? nullptr : node.bias.data(), in, L, out, L, n);
                T* state = buf.state[node.state_slot].data();
                if (node.R.nnz() > 0)
                    for (index_t t = 0; t < tc; ++t) step_recurrence(node.R, g, t, state, out, L);
                save_last_column(out, dim, L, g, tc, state);
                return;
            }
            case NodeKind::rnn_relu: {
                // without recurrent weights the whole block is one affine map + ReLU
                const bool recurrent = node.R.nnz() > 0;
                affine_lanes(node.W.rows, node.W.indptr.data(), node.W.indices.data(), node.W.data.data(),
                             node.bias.empty() ? nullptr : node.bias.data(), in, L, out, L, n, !recurrent);
                T* state = buf.state[node.state_slot].data();
                if (recurrent) {
                    for (index_t t = 0; t < tc; ++t) {
                        step_recurrence(node.R, g, t, state, out, L);
                        T* cur = out + t * g;
                        for (index_t i = 0; i < dim; ++i)
                            for (index_t b = 0; b < g; ++b) cur[i * L + b] = relu(cur[i * L + b]);
                    }
                }
                save_last_column(out, dim, L, g, tc, state);
                return;
            }
            case NodeKind::lstm:
                run_lstm(buf, node, arena + mem.scratch[k] * L, in, out, g, tc, n);
                return;
            case NodeKind::gru:
                run_gru(buf, node, arena + mem.scratch[k] * L, in, out, g, tc, n);
                return;
        }
    }

    // col += R prev (col's rows `cs` apart, prev's `ps` apart), in place.
    static void recurrent_add(const Recurrence<T>& R, index_t g, const T* prev, index_t ps, T* col, index_t cs) {
        if (g == 1)
            recurrence_step<T, 1>(R, 1, prev, ps, col, cs, col, cs);
        else
            recurrence_step<T, 0>(R, g, prev, ps, col, cs, col, cs);
    }

    // Activations: Ideal = ReLU for both; else sigmoid (scipy's formula) and tanh (plan.tanh_vec).
    template <bool Ideal>
    static T gate(T x) {
        return Ideal ? relu(x) : sigmoid(x);
    }
    template <bool Ideal>
    void squash_vec(const T* in, T* out, index_t n) const {
        if (Ideal)
            for (index_t i = 0; i < n; ++i) out[i] = relu(in[i]);
        else
            plan.tanh_vec(in, out, n);
    }
    template <bool Ideal>
    void gate_rows(T* rows, index_t count, index_t n) const {
        for (index_t r = 0; r < count; ++r) {
            T* x = rows + r * L;
            for (index_t l = 0; l < n; ++l) x[l] = gate<Ideal>(x[l]);
        }
    }

    // ---- LSTM.  numpy: gates = pre + W_hh h; i, f, o = sigmoid; g = tanh; c = f*c + i*g; h = o*tanh(c).
    // `pre` (4H rows) holds the input-side gates; scratch: 2H*g.
    // Units without recurrent weights ("static") run first, each over the whole block: gates, then the
    // cell recurrence along time, then h = o * tanh(c).  The others step through time (they may read
    // any unit's previous h, the static ones' included).  A gate row with no weights is a constant.
    template <bool Ideal>
    void activate_row(const Node<T>& node, T* pre, index_t row, bool squash, index_t n) const {
        T* x = pre + row * L;
        if (node.constant_row[row]) {
            T v = x[0];
            if (squash)
                squash_vec<Ideal>(&v, &v, 1);
            else
                v = gate<Ideal>(v);
            for (index_t l = 0; l < n; ++l) x[l] = v;
        } else if (squash) {
            squash_vec<Ideal>(x, x, n);
        } else {
            for (index_t l = 0; l < n; ++l) x[l] = gate<Ideal>(x[l]);
        }
    }

    template <bool Ideal>
    void lstm_cells(const Node<T>& node, T* pre, T* out, T* state, T* scratch, index_t g, index_t tc,
                    index_t n) const {
        const index_t H = node.dim;
        T* c = state + H * g;
        if (n > 0) {
            const auto& units = node.static_units;
            for (index_t j : units) {
                activate_row<Ideal>(node, pre, j, false, n);
                activate_row<Ideal>(node, pre, H + j, false, n);
                activate_row<Ideal>(node, pre, 2 * H + j, true, n);
                activate_row<Ideal>(node, pre, 3 * H + j, false, n);
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
                squash_vec<Ideal>(cj, cj, n);
                const T* go = pre + (3 * H + j) * L;
                T* hj = out + j * L;
                for (index_t l = 0; l < n; ++l) hj[l] = go[l] * cj[l];
            }
        }
        if (node.recurrent_units.empty()) return;
        if (g == 1)
            lstm_steps<Ideal, 1>(node, pre, out, state, scratch, g, tc);
        else
            lstm_steps<Ideal, 0>(node, pre, out, state, scratch, g, tc);
    }

    // The recurrent units of an LSTM, one step at a time (FixedG = 1: one sequence per group).
    template <bool Ideal, int FixedG>
    void lstm_steps(const Node<T>& node, T* pre, T* out, T* state, T* scratch, index_t g_runtime,
                    index_t tc) const {
        const index_t g = FixedG > 0 ? FixedG : g_runtime;
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
            squash_vec<Ideal>(cand, cand, R_ * g);
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
            squash_vec<Ideal>(cs, cand, R_ * g);
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

    void run_lstm(Buffers& buf, const Node<T>& node, T* pre, const T* in, T* out, index_t g, index_t tc,
                  index_t n) const {
        affine_lanes(node.W.rows, node.W.indptr.data(), node.W.indices.data(), node.W.data.data(),
                     node.bias.empty() ? nullptr : node.bias.data(), in, L, pre, L, n);
        T* state = buf.state[node.state_slot].data();
        if (node.ideal)
            lstm_cells<true>(node, pre, out, state, buf.scratch.data(), g, tc, n);
        else
            lstm_cells<false>(node, pre, out, state, buf.scratch.data(), g, tc, n);
        save_last_column(out, node.dim, L, g, tc, state);  // h; c is updated in place
    }

    // ---- GRU.  numpy: hh = W_hh h + b_hh; r = sigmoid(pre_r + hh_r); z = sigmoid(pre_z + hh_z);
    //      n = tanh(pre_n + r * hh_n); h = (1 - z) * n + z * h.
    // `pre` (3H rows) holds the input-side gates; scratch: hh (3H*g), candidate (H*g), z (H*g).
    // Static units (no recurrent weight: hh = b_hh) run first over the whole block, the others step.
    template <bool Ideal>
    void gru_cells(const Node<T>& node, T* pre, T* out, const T* state, T* scratch, index_t g, index_t tc,
                   index_t n) const {
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
                    squash_vec<Ideal>(&v, &v, 1);
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
                    squash_vec<Ideal>(pn, pn, n);
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
            gru_steps<Ideal, 1>(node, pre, out, state, scratch, g, tc);
        else
            gru_steps<Ideal, 0>(node, pre, out, state, scratch, g, tc);
    }

    // The recurrent units of a GRU, one step at a time (FixedG = 1: one sequence per group).
    template <bool Ideal, int FixedG>
    void gru_steps(const Node<T>& node, const T* pre, T* out, const T* state, T* scratch, index_t g_runtime,
                   index_t tc) const {
        const index_t g = FixedG > 0 ? FixedG : g_runtime;
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
            squash_vec<Ideal>(cand, cand, R_ * g);
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

    void run_gru(Buffers& buf, const Node<T>& node, T* pre, const T* in, T* out, index_t g, index_t tc,
                 index_t n) const {
        affine_lanes(node.W.rows, node.W.indptr.data(), node.W.indices.data(), node.W.data.data(),
                     node.bias.empty() ? nullptr : node.bias.data(), in, L, pre, L, n);
        T* state = buf.state[node.state_slot].data();
        if (node.ideal)
            gru_cells<true>(node, pre, out, state, buf.scratch.data(), g, tc, n);
        else
            gru_cells<false>(node, pre, out, state, buf.scratch.data(), g, tc, n);
        save_last_column(out, node.dim, L, g, tc, state);
    }
};

}  // namespace

template <typename T>
void Plan<T>::run(const RunShape& shape, const T* xs, T* ys, const std::vector<const T*>& states_in,
                  const std::vector<T*>& states_out) const {
    const index_t batch = shape.batch;
    if (batch <= 0) return;
    const index_t bg = shape.bg;
    const index_t L = shape.tb * bg;
    const index_t groups = (batch + bg - 1) / bg;
    const int threads = std::max(1, std::min<int>(shape.threads, static_cast<int>(groups)));
    using W = Worker<T>;
    W worker{*this, shape, xs, ys, states_in, states_out, L};
    // Everything that can throw (allocation) happens here, before any thread starts.
    std::vector<typename W::Buffers> buffers(static_cast<std::size_t>(threads));
    for (auto& b : buffers) {
        b.arena.assign(static_cast<std::size_t>(std::max<index_t>(memory.rows, 1) * L), T(0));
        b.scratch.assign(static_cast<std::size_t>(std::max<index_t>(scratch_per_lane * bg, 1)), T(0));
        b.state.resize(stateful.size());
        for (std::size_t s = 0; s < stateful.size(); ++s)
            b.state[s].assign(static_cast<std::size_t>(nodes[stateful[s]].state_dim * bg), T(0));
    }
    auto work = [&](int w) {
        for (index_t grp = w; grp < groups; grp += threads) {
            const index_t b0 = grp * bg;
            worker.run_group(buffers[static_cast<std::size_t>(w)], b0, std::min(bg, batch - b0));
        }
    };
    if (threads == 1) {
        work(0);
        return;
    }
    std::vector<std::thread> pool;
    pool.reserve(static_cast<std::size_t>(threads - 1));
    int started = 1;
    for (int w = 1; w < threads; ++w) {
        try {
            pool.emplace_back(work, w);
            ++started;
        } catch (const std::system_error&) {
            break;
        }
    }
    work(0);
    for (auto& th : pool) th.join();
    // workers that could not start: their groups run here
    for (int w = started; w < threads; ++w) work(w);
}

template struct Plan<double>;
template struct Plan<float>;

}  // namespace kernel
}  // namespace lsrl
