// Structure-specialised application of a sparse square matrix A inside a recurrence
//     cur = A prev + u
// as every linear state (LinState, compiled linear-RNN layer) needs once per time step.
//
// Compiled LSRL programs have very regular state matrices: diagonal entries (counters, registers,
// A = 1; passthroughs, A = 0 or an empty row), one entry per row away from the diagonal (the shift
// buffer / delay line), two entries per row (the 2x2 rotation blocks of the modulo counters), and
// only occasionally a general row.  analyse() classifies the rows once and groups consecutive rows
// of one class into segments; recurrence_step() then runs a loop without indirection for each
// segment.  Every class computes, per row, exactly what a CSR loop computes: the products
// A[i,j] * prev[j] accumulated in storage order from 0, then u[i] added last, so all classes give
// the same values as the generic CSR path (up to the sign of a zero).
//
// Layout: "lanes".  An element (row i, lane l) of a vector block lives at p[i * stride + l]; lanes
// are independent sequences (batch elements), so the loops over l vectorise.  A plain state vector
// is the special case G = 1.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lsrl {
namespace kernel {

using index_t = std::int64_t;

enum class RowClass : std::uint8_t {
    empty,    // no entry:                 cur_i = u_i
    diag,     // one entry, on the diagonal: cur_i = a_i prev_i + u_i
    single,   // one entry elsewhere (shift): cur_i = c_i prev_j + u_i
    pair,     // two entries (rotations):   cur_i = (c0 prev_j0 + c1 prev_j1) + u_i
    general,  // three or more entries
};

struct Segment {
    RowClass cls;
    index_t begin, end;  // rows [begin, end)
};

// Also used for the rectangular recurrent weights W_hh of the recurrent cells: a row whose only
// entry is in column i (its own index) is then "diag" too, which only means "reads prev[i]".
template <typename T>
struct Recurrence {
    index_t k = 0;  // number of rows
    std::vector<index_t> indptr, indices;  // CSR of A (trusted: validated by the caller)
    std::vector<T> data;
    std::vector<Segment> segments;

    index_t rows_of(RowClass c) const {
        index_t n = 0;
        for (const Segment& s : segments)
            if (s.cls == c) n += s.end - s.begin;
        return n;
    }
    index_t nnz() const { return static_cast<index_t>(data.size()); }
};

inline RowClass classify_row(index_t i, const index_t* indptr, const index_t* indices) {
    const index_t n = indptr[i + 1] - indptr[i];
    if (n == 0) return RowClass::empty;
    if (n == 1) return indices[indptr[i]] == i ? RowClass::diag : RowClass::single;
    if (n == 2) return RowClass::pair;
    return RowClass::general;
}

// k = number of rows; the column indices must be valid for the `prev` vectors it will be applied to.
template <typename T>
Recurrence<T> analyse(index_t k, const index_t* indptr, const index_t* indices, const T* data) {
    Recurrence<T> r;
    r.k = k;
    r.indptr.assign(indptr, indptr + k + 1);
    const index_t nnz = indptr[k];
    r.indices.assign(indices, indices + nnz);
    r.data.assign(data, data + nnz);
    for (index_t i = 0; i < k; ++i) {
        const RowClass c = classify_row(i, indptr, indices);
        if (!r.segments.empty() && r.segments.back().cls == c)
            r.segments.back().end = i + 1;
        else
            r.segments.push_back(Segment{c, i, i + 1});
    }
    return r;
}

// cur[i*cs + l] = (sum_p A[i, j_p] prev[j_p*ps + l]) + u[i*us + l]   for i < k, l < G.
// `cur` may be `u` itself (same pointer and stride); `prev` must not overlap `cur`.
// FixedG > 0 fixes the lane count at compile time (FixedG = 1: a plain vector).
template <typename T, int FixedG>
void recurrence_step(const Recurrence<T>& R, index_t G_runtime, const T* prev, index_t ps,
                     const T* u, index_t us, T* cur, index_t cs) {
    const index_t G = FixedG > 0 ? FixedG : G_runtime;
    const index_t* ip = R.indptr.data();
    const index_t* ix = R.indices.data();
    const T* d = R.data.data();
    for (const Segment& seg : R.segments) {
        switch (seg.cls) {
            case RowClass::empty:
                if (cur != u || cs != us) {
                    for (index_t i = seg.begin; i < seg.end; ++i) {
                        const T* ui = u + i * us;
                        T* ci = cur + i * cs;
                        for (index_t l = 0; l < G; ++l) ci[l] = ui[l];
                    }
                }
                break;
            case RowClass::diag:
                for (index_t i = seg.begin; i < seg.end; ++i) {
                    const T a = d[ip[i]];
                    const T* pi = prev + i * ps;
                    const T* ui = u + i * us;
                    T* ci = cur + i * cs;
                    for (index_t l = 0; l < G; ++l) {
                        const T prod = a * pi[l];
                        ci[l] = prod + ui[l];
                    }
                }
                break;
            case RowClass::single:
                for (index_t i = seg.begin; i < seg.end; ++i) {
                    const index_t p = ip[i];
                    const T c = d[p];
                    const T* pj = prev + ix[p] * ps;
                    const T* ui = u + i * us;
                    T* ci = cur + i * cs;
                    for (index_t l = 0; l < G; ++l) {
                        const T prod = c * pj[l];
                        ci[l] = prod + ui[l];
                    }
                }
                break;
            case RowClass::pair:
                for (index_t i = seg.begin; i < seg.end; ++i) {
                    const index_t p = ip[i];
                    const T c0 = d[p], c1 = d[p + 1];
                    const T* p0 = prev + ix[p] * ps;
                    const T* p1 = prev + ix[p + 1] * ps;
                    const T* ui = u + i * us;
                    T* ci = cur + i * cs;
                    for (index_t l = 0; l < G; ++l) {
                        const T first = c0 * p0[l];
                        const T second = c1 * p1[l];
                        const T acc = first + second;
                        ci[l] = acc + ui[l];
                    }
                }
                break;
            case RowClass::general:
                for (index_t i = seg.begin; i < seg.end; ++i) {
                    const index_t pb = ip[i], pe = ip[i + 1];
                    const T* ui = u + i * us;
                    T* ci = cur + i * cs;
                    for (index_t l = 0; l < G; ++l) {
                        T acc = T(0);
                        for (index_t p = pb; p < pe; ++p) acc += d[p] * prev[ix[p] * ps + l];
                        ci[l] = acc + ui[l];
                    }
                }
                break;
        }
    }
}

}  // namespace kernel
}  // namespace lsrl
