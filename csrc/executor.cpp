// The whole-model executor declared in executor.hpp.
#include "executor.hpp"

#include "blocks.hpp"
#include "cells.hpp"

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

// Rows a node needs besides its value while it runs: a cell's arena scratch (e.g. its input-side gates), a
// block's intermediate values.
template <typename T>
index_t scratch_rows(const Node<T>& n) {
    if (n.kind == NodeKind::cell) return n.cell->arena_rows_per_unit * n.dim;
    if (n.kind == NodeKind::block) return n.block->arena_rows(n);
    return 0;
}

}  // namespace

template <typename T>
void Plan<T>::apply(Fn f, const T* in, T* out, index_t n) const {
    if (n <= 0) return;
    const Loop& loop = loops[static_cast<int>(f)];
    if (loop.fn != nullptr) {
        auto call = [&](index_t from, index_t to) {
            char* args[2] = {reinterpret_cast<char*>(const_cast<T*>(in + from)), reinterpret_cast<char*>(out + from)};
            const std::intptr_t dims[1] = {static_cast<std::intptr_t>(to - from)};
            const std::intptr_t steps[2] = {static_cast<std::intptr_t>(sizeof(T)), static_cast<std::intptr_t>(sizeof(T))};
            loop.fn(args, dims, steps, loop.data);
        };
        if (f != Fn::exp) {
            call(0, n);
            return;
        }
        // exp below the underflow cut is 0 (correctly rounded; the bindings' self-test checks NumPy agrees), and
        // NumPy's loop takes a slow path there: saturated RG-LRU gates put whole rows at exp(-1024)
        const T cut = ExpUnderflow<T>::cut;
        index_t i = 0;
        while (i < n) {
            if (in[i] <= cut) {
                out[i++] = T(0);
                continue;
            }
            index_t j = i + 1;
            while (j < n && in[j] > cut) ++j;
            call(i, j);
            i = j;
        }
        return;
    }
    switch (f) {  // the C library's functions
        case Fn::tanh:
            for (index_t i = 0; i < n; ++i) out[i] = tanh_(in[i]);
            return;
        case Fn::exp:
            for (index_t i = 0; i < n; ++i) out[i] = std::exp(in[i]);
            return;
        case Fn::log1p:
            for (index_t i = 0; i < n; ++i) out[i] = std::log1p(in[i]);
            return;
    }
}

template <typename T>
bool Plan<T>::needs(Fn f) const {
    for (const Node<T>& n : nodes) {
        if (f == Fn::tanh && n.kind == NodeKind::cell && !n.ideal) return true;
        if (n.kind != NodeKind::block) continue;
        for (Fn g : n.block->functions)
            if (g == f) return true;
        if (!n.ideal)
            for (Fn g : n.block->activation_functions)
                if (g == f) return true;
    }
    return false;
}

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
        if (node.kind == NodeKind::cell)
            scratch_per_lane = std::max(scratch_per_lane, node.cell->scratch_per_unit * node.dim);
        if (node.kind == NodeKind::block) {
            one_sequence_per_group = one_sequence_per_group || node.state_dim > 0;
            for (const Csr<T>& m : node.mats) work_per_step += static_cast<double>(m.nnz());
            work_per_step += static_cast<double>(node.block->arena_rows(node) + node.state_dim);
            scratch_per_lane = std::max(scratch_per_lane, node.block->scratch_per_sequence(node));
        }
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
    index_t bg = one_sequence_per_group ? 1 : std::max<index_t>(1, (batch + threads - 1) / threads);
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
            case NodeKind::cell:
                node.cell->run(CellBlock<T>{plan, node, L, mem.scratch[k] >= 0 ? arena + mem.scratch[k] * L : nullptr,
                                            in, out, buf.state[node.state_slot].data(), buf.scratch.data(), g,
                                            tc, n});
                return;
            case NodeKind::block:
                node.block->run(CellBlock<T>{plan, node, L, mem.scratch[k] >= 0 ? arena + mem.scratch[k] * L : nullptr,
                                             in, out, node.state_dim > 0 ? buf.state[node.state_slot].data() : nullptr,
                                             buf.scratch.data(), g, tc, n});
                return;
        }
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
