// Load-time dispatch of the lane kernels: GCC compiles an AVX-512 (x86-64-v4), an AVX2 (x86-64-v3) and a
// baseline clone of each entry point and binds the best one the CPU supports (target_clones / ifunc).
// -ffp-contract=off holds in every clone, so all of them compute bit-identical results.
#include "lanes.hpp"

namespace lsrl {
namespace kernel {

LSRL_CLONES void affine_lanes(index_t rows, const index_t* indptr, const index_t* indices, const double* data,
                              const double* bias, const double* in, index_t is, double* out, index_t os,
                              index_t n, bool relu_after) {
    if (relu_after)
        affine_lanes_impl<double, true>(rows, indptr, indices, data, bias, in, is, out, os, n);
    else
        affine_lanes_impl<double, false>(rows, indptr, indices, data, bias, in, is, out, os, n);
}

LSRL_CLONES void affine_lanes(index_t rows, const index_t* indptr, const index_t* indices, const float* data,
                              const float* bias, const float* in, index_t is, float* out, index_t os,
                              index_t n, bool relu_after) {
    if (relu_after)
        affine_lanes_impl<float, true>(rows, indptr, indices, data, bias, in, is, out, os, n);
    else
        affine_lanes_impl<float, false>(rows, indptr, indices, data, bias, in, is, out, os, n);
}

LSRL_CLONES void relu_lanes(index_t rows, const double* in, index_t is, double* out, index_t os, index_t n) {
    relu_lanes_impl<double>(rows, in, is, out, os, n);
}
LSRL_CLONES void relu_lanes(index_t rows, const float* in, index_t is, float* out, index_t os, index_t n) {
    relu_lanes_impl<float>(rows, in, is, out, os, n);
}
LSRL_CLONES void multi_lanes(index_t rows, const double* in, index_t is, double* out, index_t os, index_t n) {
    multi_lanes_impl<double>(rows, in, is, out, os, n);
}
LSRL_CLONES void multi_lanes(index_t rows, const float* in, index_t is, float* out, index_t os, index_t n) {
    multi_lanes_impl<float>(rows, in, is, out, os, n);
}

const char* lanes_isa() {
#if LSRL_HAVE_CLONES
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4";
    if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3";
#endif
    return "default";
}

}  // namespace kernel
}  // namespace lsrl
