// Kernels over "lane blocks": a vector block of `rows` rows and `n` lanes stored as p[i * stride + l].
// The executor (executor.hpp) lays out every value of a model like this, with the lanes being
// (time step, batch element) pairs, so that every loop over lanes is a contiguous, independent,
// vectorisable loop -- over time for the stateless parts of a model, over the batch for recurrences.
//
// Summation order, shared with the numpy backend: for output row i the products W[i,j] * x[j] are
// accumulated in storage order starting from 0, and the bias is added last.
#pragma once

#include <cmath>
#include <cstdint>

namespace lsrl {
namespace kernel {

using index_t = std::int64_t;

template <typename T>
inline T relu(T x) {
    return x < T(0) ? T(0) : x;  // NaN stays NaN, like numpy.maximum(x, 0)
}

#if defined(__GNUC__)
#define LSRL_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define LSRL_ALWAYS_INLINE inline
#endif

// Functions marked LSRL_CLONES are compiled three times (AVX-512 = x86-64-v4, AVX2 = x86-64-v3, baseline)
// and the best clone for the CPU is bound at load time (GCC target_clones / ifunc).  -ffp-contract=off
// holds in every clone, so all clones compute bit-identical results.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(LSRL_NO_CLONES)
#define LSRL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define LSRL_HAVE_CLONES 1
#else
#define LSRL_CLONES
#define LSRL_HAVE_CLONES 0
#endif

// out[i*os + l] = (sum_p data[p] * in[indices[p]*is + l]) (+ bias[i])   for i < rows, l < n.
// `out` must not overlap `in`.  bias may be null (nothing added).
//
// With GCC/Clang, lanes are processed 64 bytes at a time in vector registers (GNU vector extensions;
// up to four independent accumulators per row so that the add latency is hidden); the compiler maps
// them onto whatever the target offers (SSE2 by default; lanes.cpp compiles AVX2 and AVX-512 clones
// and picks one at load time).  Each lane still gets exactly the scalar sequence of operations.
template <typename T, bool ReluAfter>
LSRL_ALWAYS_INLINE void affine_lanes_impl(index_t rows, const index_t* indptr, const index_t* indices,
                                          const T* data, const T* bias, const T* in, index_t is, T* out,
                                          index_t os, index_t n) {
    for (index_t i = 0; i < rows; ++i) {
        const index_t pb = indptr[i], pe = indptr[i + 1];
        T* o = out + i * os;
        index_t l = 0;
#if defined(__GNUC__)
        typedef T V __attribute__((vector_size(64)));
        constexpr index_t C = 64 / sizeof(T);
        auto load = [](const T* p) {
            V v;
            __builtin_memcpy(&v, p, sizeof(V));
            return v;
        };
        auto store = [](T* p, const V& v) { __builtin_memcpy(p, &v, sizeof(V)); };
        for (; l + 4 * C <= n; l += 4 * C) {
            V a0 = {}, a1 = {}, a2 = {}, a3 = {};
            for (index_t p = pb; p < pe; ++p) {
                const T w = data[p];
                const T* s = in + indices[p] * is + l;
                a0 += w * load(s);
                a1 += w * load(s + C);
                a2 += w * load(s + 2 * C);
                a3 += w * load(s + 3 * C);
            }
            if (bias) {
                const T b = bias[i];
                a0 += b;
                a1 += b;
                a2 += b;
                a3 += b;
            }
            if (ReluAfter) {
                const V zero = {};
                a0 = a0 < zero ? zero : a0;  // lane-wise select: NaN stays NaN, like relu()
                a1 = a1 < zero ? zero : a1;
                a2 = a2 < zero ? zero : a2;
                a3 = a3 < zero ? zero : a3;
            }
            store(o + l, a0);
            store(o + l + C, a1);
            store(o + l + 2 * C, a2);
            store(o + l + 3 * C, a3);
        }
        for (; l + C <= n; l += C) {
            V a0 = {};
            for (index_t p = pb; p < pe; ++p) a0 += data[p] * load(in + indices[p] * is + l);
            if (bias) a0 += bias[i];
            if (ReluAfter) {
                const V zero = {};
                a0 = a0 < zero ? zero : a0;
            }
            store(o + l, a0);
        }
#endif
        for (; l < n; ++l) {
            T acc = T(0);
            for (index_t p = pb; p < pe; ++p) acc += data[p] * in[indices[p] * is + l];
            const T v = bias ? acc + bias[i] : acc;
            o[l] = ReluAfter ? relu(v) : v;
        }
    }
}

// out = max(in, 0) over rows x n lanes (may be in place: out == in, os == is).
template <typename T>
LSRL_ALWAYS_INLINE void relu_lanes_impl(index_t rows, const T* in, index_t is, T* out, index_t os, index_t n) {
    for (index_t i = 0; i < rows; ++i) {
        const T* x = in + i * is;
        T* y = out + i * os;
        for (index_t l = 0; l < n; ++l) y[l] = relu(x[l]);
    }
}

// out[i] = in[i] * in[i + rows] over n lanes (Multi).
template <typename T>
LSRL_ALWAYS_INLINE void multi_lanes_impl(index_t rows, const T* in, index_t is, T* out, index_t os, index_t n) {
    for (index_t i = 0; i < rows; ++i) {
        const T* x = in + i * is;
        const T* z = in + (i + rows) * is;
        T* y = out + i * os;
        for (index_t l = 0; l < n; ++l) y[l] = x[l] * z[l];
    }
}

// The dispatching entry points (lanes.cpp).  relu_after: apply max(., 0) to every result (an affine map
// fused with the ReLU that is its only reader).
void affine_lanes(index_t rows, const index_t* indptr, const index_t* indices, const double* data,
                  const double* bias, const double* in, index_t is, double* out, index_t os, index_t n,
                  bool relu_after = false);
void affine_lanes(index_t rows, const index_t* indptr, const index_t* indices, const float* data,
                  const float* bias, const float* in, index_t is, float* out, index_t os, index_t n,
                  bool relu_after = false);
void relu_lanes(index_t rows, const double* in, index_t is, double* out, index_t os, index_t n);
void relu_lanes(index_t rows, const float* in, index_t is, float* out, index_t os, index_t n);
void multi_lanes(index_t rows, const double* in, index_t is, double* out, index_t os, index_t n);
void multi_lanes(index_t rows, const float* in, index_t is, float* out, index_t os, index_t n);

// Which instruction set the dispatching kernels run with on this CPU ("x86-64-v4", ... or "default").
const char* lanes_isa();


// Beyond these arguments sigmoid and tanh are exactly their limits in floating point, so the
// shortcut returns what the formula would (and skips exp's slow overflow path for the large
// saturating pre-activations of standard-mode models).
template <typename T>
struct Saturation;
template <>
struct Saturation<double> {
    static constexpr double sigmoid_one = 40.0;    // 1 + exp(-40) == 1
    static constexpr double sigmoid_zero = -710.0; // exp(710) == inf
};
template <>
struct Saturation<float> {
    static constexpr float sigmoid_one = 40.0f;
    static constexpr float sigmoid_zero = -89.0f;  // expf(89) == inf
};

// At or below `cut`, exp(x) is below half the smallest subnormal: exactly 0 when correctly rounded.
template <typename T>
struct ExpUnderflow;
template <>
struct ExpUnderflow<double> {
    static constexpr double cut = -746.0;
};
template <>
struct ExpUnderflow<float> {
    static constexpr float cut = -104.0f;
};

// scipy.special.expit's formula, 1 / (1 + exp(-x)).
template <typename T>
inline T sigmoid(T x) {
    if (x >= Saturation<T>::sigmoid_one) return T(1);
    if (x <= Saturation<T>::sigmoid_zero) return T(0);
    return T(1) / (T(1) + std::exp(-x));
}

template <typename T>
inline T tanh_(T x) {
    if (x >= T(22)) return T(1);  // tanh(22) = 1 - 1.6e-19 rounds to 1 in both precisions
    if (x <= T(-22)) return T(-1);
    return std::tanh(x);
}

}  // namespace kernel
}  // namespace lsrl
