// Linear-recurrence scans  s_t = A s_{t-1} + u_t  (t = 0..T-1, s_{-1} = s0).
//
// Pure C++17, no Python.  All arrays are C-contiguous and row-major:
//   U  : (B, T, k)      S : (B, T, k)      s0 : (B, k)
// Every function here trusts its arguments: the shapes, the CSR structure and
// the finiteness of the parameters are checked by the caller (bindings.cpp).
// Nothing here throws except std::bad_alloc from scan_csr's one-off analysis of A
// (on the calling thread, before any worker starts); the thread launcher falls
// back to running the work on the calling thread if a thread cannot start.
//
// Summation order (so that results are reproducible and match the numpy
// backend as closely as possible): for row i the products A[i,j] * s[j] are
// accumulated in storage order starting from 0, and u[i] is added last.
//
// Also: the time-varying diagonal ("selective") scan h_t = a_t * h_{t-1} + b_t.
#pragma once

#include <cstddef>
#include <cstdint>

#include "lanes.hpp"
#include "recurrence.hpp"

namespace lsrl {
namespace kernel {

using index_t = std::int64_t;

// ---------------------------------------------------------------------------
// Single-sequence scans (one batch element).  `u`, `s` point at (T, k) blocks,
// `s0` at a length-k vector.  `s` must not overlap `s0`; it may be `u` itself
// (in place) but must not overlap it otherwise.
// ---------------------------------------------------------------------------

// Columns [c0, c1) of a diagonal scan: the columns are independent, so a long scan of one wide
// sequence can be split over threads.  `s` may be `u` itself (in place).
template <typename T>
LSRL_ALWAYS_INLINE void scan_diag_cols(index_t k, index_t steps, index_t c0, index_t c1, const T* a, const T* u,
                    const T* s0, T* s) {
    const T* prev = s0;
    for (index_t t = 0; t < steps; ++t) {
        const T* ut = u + t * k;
        T* st = s + t * k;
        for (index_t i = c0; i < c1; ++i) {
            const T prod = a[i] * prev[i];
            st[i] = prod + ut[i];
        }
        prev = st;
    }
}

template <typename T>
void scan_diag_one(index_t k, index_t steps, const T* a, const T* u, const T* s0, T* s) {
    scan_diag_cols<T>(k, steps, 0, k, a, u, s0, s);
}

// Time-varying diagonal ("selective") scan h_t = a_t * h_{t-1} + b_t on columns [c0, c1);
// a, b, h are (T, k) blocks.  `h` may be `a` or `b` itself (in place).
template <typename T>
LSRL_ALWAYS_INLINE void selective_scan_cols(index_t k, index_t steps, index_t c0, index_t c1, const T* a, const T* b,
                         const T* h0, T* h) {
    const T* prev = h0;
    for (index_t t = 0; t < steps; ++t) {
        const T* at = a + t * k;
        const T* bt = b + t * k;
        T* ht = h + t * k;
        for (index_t i = c0; i < c1; ++i) {
            const T prod = at[i] * prev[i];
            ht[i] = prod + bt[i];
        }
        prev = ht;
    }
}

template <typename T>
void scan_dense_one(index_t k, index_t steps, const T* A, const T* u, const T* s0, T* s) {
    const T* prev = s0;
    for (index_t t = 0; t < steps; ++t) {
        const T* ut = u + t * k;
        T* st = s + t * k;
        for (index_t i = 0; i < k; ++i) {
            const T* row = A + i * k;
            T acc = T(0);
            for (index_t j = 0; j < k; ++j) acc += row[j] * prev[j];
            st[i] = acc + ut[i];
        }
        prev = st;
    }
}

// Sparse A, analysed once (recurrence.hpp): diagonal, shift, rotation-pair and general rows each
// run their own loop.  `s` must not overlap `u` except by being `u` itself.
template <typename T>
void scan_structured_one(const Recurrence<T>& R, index_t steps, const T* u, const T* s0, T* s) {
    const index_t k = R.k;
    const T* prev = s0;
    for (index_t t = 0; t < steps; ++t) {
        recurrence_step<T, 1>(R, 1, prev, 1, u + t * k, 1, s + t * k, 1);
        prev = s + t * k;
    }
}

// ---------------------------------------------------------------------------
// Batch driver: runs fn(b) for b in [0, batch), optionally on several threads.
// Each batch element is independent, so the result does not depend on the
// number of threads (bitwise).
// ---------------------------------------------------------------------------

// Number of worker threads to use for `batch` sequences of `work_per_seq`
// multiply-adds each.  requested > 0 forces that many (capped at batch);
// requested == 0 picks automatically (1 for small problems).
int choose_threads(index_t batch, double work_per_seq, int requested);

// Calls body(b) for every b in [0, batch) using `threads` threads (>= 1).
// Implemented in scan.cpp; `body` is called through a plain function pointer
// so that this header stays free of <thread>/<functional>.
using batch_body_fn = void (*)(void* ctx, index_t b);
void parallel_for_batch(index_t batch, int threads, batch_body_fn body, void* ctx);

// ---------------------------------------------------------------------------
// Batched entry points (B sequences).  `threads` as returned by choose_threads.
// ---------------------------------------------------------------------------

template <typename T>
void scan_diag(index_t batch, index_t steps, index_t k, const T* a, const T* U, const T* s0,
               T* S, int threads);

template <typename T>
void scan_dense(index_t batch, index_t steps, index_t k, const T* A, const T* U, const T* s0,
                T* S, int threads);

// Analyses A's rows (recurrence.hpp) once, then scans every sequence with the structured loops.
template <typename T>
void scan_csr(index_t batch, index_t steps, index_t k, const index_t* indptr,
              const index_t* indices, const T* data, const T* U, const T* s0, T* S, int threads);

// Diagonal and selective scans split over batch elements and, when the batch is smaller than the
// number of threads, over column ranges too.  `threads` as returned by choose_threads for
// `batch * column_chunks(...)` work items.
index_t column_chunks(index_t batch, index_t k, int threads);

template <typename T>
void scan_diag_split(index_t batch, index_t steps, index_t k, const T* a, const T* U,
                     const T* s0, T* S, int threads);

// h_t = a_t * h_{t-1} + b_t; A, Bv, H: (B, T, k), h0: (B, k).
template <typename T>
void selective_scan(index_t batch, index_t steps, index_t k, const T* A, const T* Bv, const T* h0,
                    T* H, int threads);

}  // namespace kernel
}  // namespace lsrl
