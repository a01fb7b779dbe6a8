// Linear-recurrence scans  s_t = A s_{t-1} + u_t  (t = 0..T-1, s_{-1} = s0).
//
// Pure C++17, no Python.  All arrays are C-contiguous and row-major:
//   U  : (B, T, k)      S : (B, T, k)      s0 : (B, k)
// Every function here trusts its arguments: the shapes, the CSR structure and
// the finiteness of the parameters are checked by the caller (bindings.cpp).
// Nothing here allocates or throws, except the thread launcher which falls
// back to running the work on the calling thread if a thread cannot start.
//
// Summation order (so that results are reproducible and match the numpy
// backend as closely as possible): for row i the products A[i,j] * s[j] are
// accumulated in storage order starting from 0, and u[i] is added last.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lsrl {
namespace kernel {

using index_t = std::int64_t;

// ---------------------------------------------------------------------------
// Single-sequence scans (one batch element).  `u`, `s` point at (T, k) blocks,
// `s0` at a length-k vector.  `s` must not alias `u` or `s0`.
// ---------------------------------------------------------------------------

template <typename T>
void scan_diag_one(index_t k, index_t steps, const T* a, const T* u, const T* s0, T* s) {
    const T* prev = s0;
    for (index_t t = 0; t < steps; ++t) {
        const T* ut = u + t * k;
        T* st = s + t * k;
        for (index_t i = 0; i < k; ++i) {
            const T prod = a[i] * prev[i];
            st[i] = prod + ut[i];
        }
        prev = st;
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

template <typename T>
void scan_csr_one(index_t k, index_t steps, const index_t* indptr, const index_t* indices,
                  const T* data, const T* u, const T* s0, T* s) {
    const T* prev = s0;
    for (index_t t = 0; t < steps; ++t) {
        const T* ut = u + t * k;
        T* st = s + t * k;
        for (index_t i = 0; i < k; ++i) {
            T acc = T(0);
            const index_t end = indptr[i + 1];
            for (index_t p = indptr[i]; p < end; ++p) acc += data[p] * prev[indices[p]];
            st[i] = acc + ut[i];
        }
        prev = st;
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

template <typename T>
void scan_csr(index_t batch, index_t steps, index_t k, const index_t* indptr,
              const index_t* indices, const T* data, const T* U, const T* s0, T* S, int threads);

}  // namespace kernel
}  // namespace lsrl
