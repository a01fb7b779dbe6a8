// Batched drivers for the linear-recurrence scans declared in scan.hpp.
#include "scan.hpp"

#include <algorithm>
#include <atomic>
#include <system_error>
#include <thread>
#include <vector>

namespace lsrl {
namespace kernel {

namespace {
// Below this many multiply-adds in total a single thread is faster than
// starting workers.
constexpr double kMinWorkForThreads = 1.0e6;
// Each thread should get at least this much work.
constexpr double kMinWorkPerThread = 2.5e5;
}  // namespace

int choose_threads(index_t batch, double work_per_seq, int requested) {
    if (batch <= 1) return 1;
    const index_t cap = batch;
    if (requested > 0) return static_cast<int>(std::min<index_t>(requested, cap));
    const double total = work_per_seq * static_cast<double>(batch);
    if (!(total >= kMinWorkForThreads)) return 1;
    unsigned hw = std::thread::hardware_concurrency();
    if (hw == 0) hw = 1;
    index_t n = static_cast<index_t>(hw);
    const index_t by_work = static_cast<index_t>(total / kMinWorkPerThread);
    n = std::min(n, std::max<index_t>(by_work, 1));
    n = std::min(n, cap);
    return static_cast<int>(std::max<index_t>(n, 1));
}

void parallel_for_batch(index_t batch, int threads, batch_body_fn body, void* ctx) {
    if (batch <= 0) return;
    if (threads <= 1 || batch == 1) {
        for (index_t b = 0; b < batch; ++b) body(ctx, b);
        return;
    }
    // Dynamic distribution: each worker grabs the next unprocessed sequence.
    std::atomic<index_t> next{0};
    auto worker = [&]() {
        for (;;) {
            const index_t b = next.fetch_add(1, std::memory_order_relaxed);
            if (b >= batch) break;
            body(ctx, b);
        }
    };
    std::vector<std::thread> pool;
    pool.reserve(static_cast<std::size_t>(threads - 1));
    for (int i = 0; i + 1 < threads; ++i) {
        try {
            pool.emplace_back(worker);
        } catch (const std::system_error&) {
            break;  // could not start another thread: the remaining work runs below
        }
    }
    worker();  // the calling thread works too
    for (auto& th : pool) th.join();
}

namespace {

template <typename T>
struct DiagCtx {
    index_t steps, k;
    const T *a, *U, *s0;
    T* S;
    static void run(void* p, index_t b) {
        auto* c = static_cast<DiagCtx*>(p);
        const index_t blk = c->steps * c->k;
        scan_diag_one<T>(c->k, c->steps, c->a, c->U + b * blk, c->s0 + b * c->k, c->S + b * blk);
    }
};

template <typename T>
struct DenseCtx {
    index_t steps, k;
    const T *A, *U, *s0;
    T* S;
    static void run(void* p, index_t b) {
        auto* c = static_cast<DenseCtx*>(p);
        const index_t blk = c->steps * c->k;
        scan_dense_one<T>(c->k, c->steps, c->A, c->U + b * blk, c->s0 + b * c->k, c->S + b * blk);
    }
};

template <typename T>
struct StructuredCtx {
    index_t steps, k;
    const Recurrence<T>* R;
    const T *U, *s0;
    T* S;
    static void run(void* p, index_t b) {
        auto* c = static_cast<StructuredCtx*>(p);
        const index_t blk = c->steps * c->k;
        scan_structured_one<T>(*c->R, c->steps, c->U + b * blk, c->s0 + b * c->k, c->S + b * blk);
    }
};

// Narrow states (k <= 8): the per-step loop over k is too short to run well, and each coordinate is
// a dependency chain (multiply, then add) whose latency bounds the speed.  These kernels keep the
// state of P sequences in registers and advance P * k independent chains per step.
template <typename T, int K, int P, bool Selective>
void scan_narrow(index_t steps, const T* a_diag, const T* const* A, const T* const* U, const T* const* S0,
                 T* const* S) {
    T st[P][K];
    T av[K];
    for (int p = 0; p < P; ++p)
        for (int i = 0; i < K; ++i) st[p][i] = S0[p][i];
    if (!Selective)
        for (int i = 0; i < K; ++i) av[i] = a_diag[i];
    for (index_t t = 0; t < steps; ++t) {
        for (int p = 0; p < P; ++p) {
            for (int i = 0; i < K; ++i) {
                const T coef = Selective ? A[p][t * K + i] : av[i];
                const T prod = coef * st[p][i];
                st[p][i] = prod + U[p][t * K + i];
                S[p][t * K + i] = st[p][i];
            }
        }
    }
}

template <typename T>
using NarrowFn = void (*)(index_t, const T*, const T* const*, const T* const*, const T* const*, T* const*);

// Sequences per register group for a state of k coordinates: enough for about 8 chains.
constexpr int narrow_group(int k) { return k <= 2 ? 4 : k <= 4 ? 2 : 1; }

template <typename T, bool Selective, int K>
void pick_narrow_k(NarrowFn<T>* group, NarrowFn<T>* single) {
    *group = &scan_narrow<T, K, narrow_group(K), Selective>;
    *single = &scan_narrow<T, K, 1, Selective>;
}

template <typename T, bool Selective>
bool pick_narrow(index_t k, NarrowFn<T>* group, NarrowFn<T>* single) {
    switch (k) {
        case 1: pick_narrow_k<T, Selective, 1>(group, single); return true;
        case 2: pick_narrow_k<T, Selective, 2>(group, single); return true;
        case 3: pick_narrow_k<T, Selective, 3>(group, single); return true;
        case 4: pick_narrow_k<T, Selective, 4>(group, single); return true;
        case 5: pick_narrow_k<T, Selective, 5>(group, single); return true;
        case 6: pick_narrow_k<T, Selective, 6>(group, single); return true;
        case 7: pick_narrow_k<T, Selective, 7>(group, single); return true;
        case 8: pick_narrow_k<T, Selective, 8>(group, single); return true;
        default: return false;
    }
}

// The column kernels, cloned per instruction set (lanes.hpp).
LSRL_CLONES void diag_cols(index_t k, index_t steps, index_t c0, index_t c1, const double* a, const double* u,
                           const double* s0, double* s) {
    scan_diag_cols<double>(k, steps, c0, c1, a, u, s0, s);
}
LSRL_CLONES void diag_cols(index_t k, index_t steps, index_t c0, index_t c1, const float* a, const float* u,
                           const float* s0, float* s) {
    scan_diag_cols<float>(k, steps, c0, c1, a, u, s0, s);
}
LSRL_CLONES void selective_cols(index_t k, index_t steps, index_t c0, index_t c1, const double* a,
                                const double* b, const double* h0, double* h) {
    selective_scan_cols<double>(k, steps, c0, c1, a, b, h0, h);
}
LSRL_CLONES void selective_cols(index_t k, index_t steps, index_t c0, index_t c1, const float* a, const float* b,
                                const float* h0, float* h) {
    selective_scan_cols<float>(k, steps, c0, c1, a, b, h0, h);
}
// A work item is (batch element, column chunk); chunks are whole multiples of 16 columns so that
// two threads never write to one cache line.  For narrow states a work item is a group of `per_item`
// sequences run by the register kernels instead.
template <typename T>
struct ColumnSplitCtx {
    index_t batch, steps, k, chunks, width;
    const T *A, *Bv, *h0;  // A: diagonal (k,) for the time-invariant scan, or (B, T, k)
    T* H;
    bool selective;
    index_t per_item = 0;  // > 0: narrow kernels, this many sequences per item
    NarrowFn<T> group_fn = nullptr, single_fn = nullptr;

    static void run(void* p, index_t item) {
        auto* c = static_cast<ColumnSplitCtx*>(p);
        const index_t blk = c->steps * c->k;
        if (c->per_item > 0) {
            const index_t b0 = item * c->per_item;
            const index_t count = std::min(c->per_item, c->batch - b0);
            const T* a_seq[4];
            const T* u_seq[4];
            const T* s0_seq[4];
            T* s_seq[4];
            for (index_t q = 0; q < count; ++q) {
                const index_t b = b0 + q;
                a_seq[q] = c->selective ? c->A + b * blk : nullptr;
                u_seq[q] = c->Bv + b * blk;
                s0_seq[q] = c->h0 + b * c->k;
                s_seq[q] = c->H + b * blk;
            }
            if (count == c->per_item) {
                c->group_fn(c->steps, c->A, a_seq, u_seq, s0_seq, s_seq);
            } else {
                for (index_t q = 0; q < count; ++q)
                    c->single_fn(c->steps, c->A, a_seq + q, u_seq + q, s0_seq + q, s_seq + q);
            }
            return;
        }
        const index_t b = item / c->chunks, chunk = item % c->chunks;
        const index_t c0 = chunk * c->width;
        const index_t c1 = c0 + c->width < c->k ? c0 + c->width : c->k;
        if (c0 >= c1) return;
        if (c->selective)
            selective_cols(c->k, c->steps, c0, c1, c->A + b * blk, c->Bv + b * blk,
                                   c->h0 + b * c->k, c->H + b * blk);
        else
            diag_cols(c->k, c->steps, c0, c1, c->A, c->Bv + b * blk, c->h0 + b * c->k,
                              c->H + b * blk);
    }
};

}  // namespace

template <typename T>
void scan_diag(index_t batch, index_t steps, index_t k, const T* a, const T* U, const T* s0,
               T* S, int threads) {
    if (batch <= 0 || steps <= 0 || k <= 0) return;
    DiagCtx<T> ctx{steps, k, a, U, s0, S};
    parallel_for_batch(batch, threads, &DiagCtx<T>::run, &ctx);
}

template <typename T>
void scan_dense(index_t batch, index_t steps, index_t k, const T* A, const T* U, const T* s0,
                T* S, int threads) {
    if (batch <= 0 || steps <= 0 || k <= 0) return;
    DenseCtx<T> ctx{steps, k, A, U, s0, S};
    parallel_for_batch(batch, threads, &DenseCtx<T>::run, &ctx);
}

template <typename T>
void scan_csr(index_t batch, index_t steps, index_t k, const index_t* indptr,
              const index_t* indices, const T* data, const T* U, const T* s0, T* S, int threads) {
    if (batch <= 0 || steps <= 0 || k <= 0) return;
    const Recurrence<T> R = analyse<T>(k, indptr, indices, data);
    StructuredCtx<T> ctx{steps, k, &R, U, s0, S};
    parallel_for_batch(batch, threads, &StructuredCtx<T>::run, &ctx);
}

index_t column_chunks(index_t batch, index_t k, int threads) {
    if (batch <= 0 || threads <= 1 || batch >= threads) return 1;
    const index_t wanted = (threads + batch - 1) / batch;
    const index_t most = k / 256;  // keep every chunk long enough to stream
    return wanted < most ? wanted : (most > 1 ? most : 1);
}

namespace {
template <typename T>
void run_column_split(index_t batch, index_t steps, index_t k, const T* A, const T* Bv,
                      const T* h0, T* H, int threads, bool selective) {
    if (batch <= 0 || steps <= 0 || k <= 0) return;
    const index_t chunks = column_chunks(batch, k, threads);
    index_t width = (k + chunks - 1) / chunks;
    width = (width + 15) / 16 * 16;
    ColumnSplitCtx<T> ctx{batch, steps, k, chunks, width, A, Bv, h0, H, selective};
    const bool narrow = selective ? pick_narrow<T, true>(k, &ctx.group_fn, &ctx.single_fn)
                                  : pick_narrow<T, false>(k, &ctx.group_fn, &ctx.single_fn);
    if (narrow) {
        // groups of sequences, but never fewer items than threads
        index_t per = narrow_group(static_cast<int>(k));
        while (per > 1 && (batch + per - 1) / per < threads) per = 1;
        if (per != narrow_group(static_cast<int>(k))) ctx.group_fn = ctx.single_fn;
        ctx.per_item = per;
        parallel_for_batch((batch + per - 1) / per, threads, &ColumnSplitCtx<T>::run, &ctx);
        return;
    }
    parallel_for_batch(batch * chunks, threads, &ColumnSplitCtx<T>::run, &ctx);
}
}  // namespace

template <typename T>
void scan_diag_split(index_t batch, index_t steps, index_t k, const T* a, const T* U,
                     const T* s0, T* S, int threads) {
    run_column_split<T>(batch, steps, k, a, U, s0, S, threads, false);
}

template <typename T>
void selective_scan(index_t batch, index_t steps, index_t k, const T* A, const T* Bv, const T* h0,
                    T* H, int threads) {
    run_column_split<T>(batch, steps, k, A, Bv, h0, H, threads, true);
}

// Explicit instantiations for the two supported dtypes.
template void scan_diag<double>(index_t, index_t, index_t, const double*, const double*,
                                const double*, double*, int);
template void scan_diag<float>(index_t, index_t, index_t, const float*, const float*,
                               const float*, float*, int);
template void scan_dense<double>(index_t, index_t, index_t, const double*, const double*,
                                 const double*, double*, int);
template void scan_dense<float>(index_t, index_t, index_t, const float*, const float*,
                                const float*, float*, int);
template void scan_csr<double>(index_t, index_t, index_t, const index_t*, const index_t*,
                               const double*, const double*, const double*, double*, int);
template void scan_csr<float>(index_t, index_t, index_t, const index_t*, const index_t*,
                              const float*, const float*, const float*, float*, int);

}  // namespace kernel
}  // namespace lsrl

namespace lsrl {
namespace kernel {
template void scan_diag_split<double>(index_t, index_t, index_t, const double*, const double*,
                                      const double*, double*, int);
template void scan_diag_split<float>(index_t, index_t, index_t, const float*, const float*,
                                     const float*, float*, int);
template void selective_scan<double>(index_t, index_t, index_t, const double*, const double*,
                                     const double*, double*, int);
template void selective_scan<float>(index_t, index_t, index_t, const float*, const float*,
                                    const float*, float*, int);
}  // namespace kernel
}  // namespace lsrl
