// Python bindings of the lsrl C++ kernels (module `lsrl._kernel`).
//
// Everything that comes from Python is validated here, before any kernel runs:
//   * every argument must be a numpy.ndarray;
//   * float arguments must all be float64 or all float32 (native byte order);
//     a wrong or mixed dtype raises TypeError -- nothing is cast silently;
//   * integer CSR arrays may have any integer dtype (they are copied to int64);
//   * ndim and shapes must agree (ValueError naming the argument and shapes);
//   * CSR structure is checked (indptr length k+1, indptr[0] == 0, monotone,
//     indptr[k] == len(indices) == len(data), 0 <= indices < k);
//   * parameters (A, its CSR data, the diagonal a) must be finite (ValueError);
//     U and s0 may hold anything: non-finite values simply propagate.
// Non-contiguous or misaligned inputs are copied to C-contiguous arrays.
// The GIL is released while a kernel runs.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "binding_util.hpp"
#include "lanes.hpp"
#include "scan.hpp"

namespace py = pybind11;
using lsrl::kernel::index_t;
using namespace lsrl::binding;

namespace {

struct ScanShape {
    index_t batch, steps, k;
};

// Validates U (B, T, k) and s0 (B, k) given the k implied by the parameters.
ScanShape check_state_args(const py::array& U, const py::array& s0, index_t k, const char* who,
                           const std::string& param_desc) {
    require_ndim(U, "U", 3, "(B, T, k)");
    require_ndim(s0, "s0", 2, "(B, k)");
    ScanShape sh{static_cast<index_t>(U.shape(0)), static_cast<index_t>(U.shape(1)),
                 static_cast<index_t>(U.shape(2))};
    if (sh.k != k) {
        std::ostringstream os;
        os << "lsrl._kernel." << who << ": U has shape " << shape_str(U) << " (k = " << sh.k
           << ") but " << param_desc << " implies k = " << k;
        throw py::value_error(os.str());
    }
    if (s0.shape(0) != U.shape(0) || s0.shape(1) != U.shape(2)) {
        std::ostringstream os;
        os << "lsrl._kernel." << who << ": s0 has shape " << shape_str(s0)
           << " but U has shape " << shape_str(U) << "; expected s0 of shape (" << sh.batch
           << ", " << sh.k << ")";
        throw py::value_error(os.str());
    }
    return sh;
}

double mul_adds(index_t steps, double per_step) { return static_cast<double>(steps) * per_step; }

// The result array: a new one, or `out` after checking it (same dtype and shape as the result,
// C-contiguous, writeable).  `out` may be exactly one of `in_place` (same memory, same size: the
// kernels read each element before writing it) but must not otherwise overlap any input.
template <typename T>
py::array_t<T> make_output(const py::object& out_obj, const std::vector<py::ssize_t>& shape,
                           std::initializer_list<const py::array*> in_place,
                           std::initializer_list<const py::array*> others, const char* who) {
    if (out_obj.is_none()) return py::array_t<T>(shape);
    py::array out = require_ndarray(out_obj, "out");
    require_kind<T>(out, "out");
    bool same_shape = out.ndim() == static_cast<py::ssize_t>(shape.size());
    for (std::size_t i = 0; same_shape && i < shape.size(); ++i) same_shape = out.shape(i) == shape[i];
    if (!same_shape) {
        std::ostringstream os;
        os << "lsrl._kernel." << who << ": out has shape " << shape_str(out) << ", expected (";
        for (std::size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
        os << ")";
        throw py::value_error(os.str());
    }
    require_contiguous(out, "out");
    if (!out.writeable()) throw py::value_error(std::string("lsrl._kernel.") + who + ": out is read-only");
    for (const py::array* a : in_place) {
        if (overlaps(out, *a) && !(out.data() == a->data() && out.nbytes() == a->nbytes()))
            throw py::value_error(std::string("lsrl._kernel.") + who +
                                  ": out partially overlaps an input; it must be that input exactly (in place) "
                                  "or separate memory");
    }
    for (const py::array* a : others) {
        if (overlaps(out, *a))
            throw py::value_error(std::string("lsrl._kernel.") + who + ": out overlaps an input it must not overwrite");
    }
    return py::reinterpret_borrow<py::array_t<T>>(out);
}

std::vector<py::ssize_t> shape3(const ScanShape& sh) {
    return {static_cast<py::ssize_t>(sh.batch), static_cast<py::ssize_t>(sh.steps), static_cast<py::ssize_t>(sh.k)};
}

// ---------------------------------------------------------------- diag
template <typename T>
py::array run_diag(const py::array& a_in, const py::array& U_in, const py::array& s0_in,
                   const ScanShape& sh, int num_threads, const py::object& out_obj) {
    auto a = contiguous<T>(a_in);
    auto U = contiguous<T>(U_in);
    auto s0 = contiguous<T>(s0_in);
    require_finite(a.data(), a.size(), "a (the diagonal of A)");
    py::array_t<T> S = make_output<T>(out_obj, shape3(sh), {&U}, {&a, &s0}, "linear_scan_diag");
    const index_t items = sh.batch * std::max<index_t>(1, sh.k / 256);
    const int threads = lsrl::kernel::choose_threads(
        items, mul_adds(sh.steps, double(sh.k)) * double(sh.batch) / double(std::max<index_t>(items, 1)),
        num_threads);
    const T* pa = a.data();
    const T* pU = U.data();
    const T* ps0 = s0.data();
    T* pS = S.mutable_data();
    {
        py::gil_scoped_release nogil;
        lsrl::kernel::scan_diag_split<T>(sh.batch, sh.steps, sh.k, pa, pU, ps0, pS, threads);
    }
    return std::move(S);
}

py::array linear_scan_diag(const py::object& a_obj, const py::object& U_obj,
                           const py::object& s0_obj, int num_threads, const py::object& out) {
    check_threads(num_threads);
    py::array a = require_ndarray(a_obj, "a");
    py::array U = require_ndarray(U_obj, "U");
    py::array s0 = require_ndarray(s0_obj, "s0");
    const FloatKind kind = common_kind({{&a, "a"}, {&U, "U"}, {&s0, "s0"}});
    require_ndim(a, "a", 1, "(k,) (the diagonal of A)");
    const ScanShape sh = check_state_args(U, s0, static_cast<index_t>(a.shape(0)),
                                          "linear_scan_diag", "a of shape " + shape_str(a));
    return kind == FloatKind::f64 ? run_diag<double>(a, U, s0, sh, num_threads, out)
                                  : run_diag<float>(a, U, s0, sh, num_threads, out);
}

// ---------------------------------------------------------------- selective (time-varying diagonal)
template <typename T>
py::array run_selective(const py::array& a_in, const py::array& b_in, const py::array& h0_in,
                        const ScanShape& sh, int num_threads, const py::object& out_obj) {
    auto a = contiguous<T>(a_in);
    auto b = contiguous<T>(b_in);
    auto h0 = contiguous<T>(h0_in);
    py::array_t<T> H = make_output<T>(out_obj, shape3(sh), {&a, &b}, {&h0}, "selective_scan");
    const index_t items = sh.batch * std::max<index_t>(1, sh.k / 256);
    const int threads = lsrl::kernel::choose_threads(
        items, mul_adds(sh.steps, double(sh.k)) * double(sh.batch) / double(std::max<index_t>(items, 1)),
        num_threads);
    const T* pa = a.data();
    const T* pb = b.data();
    const T* ph0 = h0.data();
    T* pH = H.mutable_data();
    {
        py::gil_scoped_release nogil;
        lsrl::kernel::selective_scan<T>(sh.batch, sh.steps, sh.k, pa, pb, ph0, pH, threads);
    }
    return std::move(H);
}

py::array selective_scan(const py::object& a_obj, const py::object& b_obj, const py::object& h0_obj,
                         int num_threads, const py::object& out) {
    check_threads(num_threads);
    py::array a = require_ndarray(a_obj, "a");
    py::array b = require_ndarray(b_obj, "b");
    py::array h0 = require_ndarray(h0_obj, "h0");
    const FloatKind kind = common_kind({{&a, "a"}, {&b, "b"}, {&h0, "h0"}});
    require_ndim(a, "a", 3, "(B, T, k)");
    require_ndim(b, "b", 3, "(B, T, k)");
    require_ndim(h0, "h0", 2, "(B, k)");
    if (a.shape(0) != b.shape(0) || a.shape(1) != b.shape(1) || a.shape(2) != b.shape(2))
        throw py::value_error("lsrl._kernel.selective_scan: a has shape " + shape_str(a) + " but b has shape " +
                              shape_str(b) + "; they must be equal");
    if (h0.shape(0) != a.shape(0) || h0.shape(1) != a.shape(2))
        throw py::value_error("lsrl._kernel.selective_scan: h0 has shape " + shape_str(h0) + " but a has shape " +
                              shape_str(a) + "; expected h0 of shape (" + std::to_string(a.shape(0)) + ", " +
                              std::to_string(a.shape(2)) + ")");
    const ScanShape sh{static_cast<index_t>(a.shape(0)), static_cast<index_t>(a.shape(1)),
                       static_cast<index_t>(a.shape(2))};
    return kind == FloatKind::f64 ? run_selective<double>(a, b, h0, sh, num_threads, out)
                                  : run_selective<float>(a, b, h0, sh, num_threads, out);
}

// ---------------------------------------------------------------- dense
template <typename T>
py::array run_dense(const py::array& A_in, const py::array& U_in, const py::array& s0_in,
                    const ScanShape& sh, int num_threads, const py::object& out_obj) {
    auto A = contiguous<T>(A_in);
    auto U = contiguous<T>(U_in);
    auto s0 = contiguous<T>(s0_in);
    require_finite(A.data(), A.size(), "A");
    py::array_t<T> S = make_output<T>(out_obj, shape3(sh), {&U}, {&A, &s0}, "linear_scan_dense");
    const int threads = lsrl::kernel::choose_threads(
        sh.batch, mul_adds(sh.steps, double(sh.k) * double(sh.k)), num_threads);
    const T* pA = A.data();
    const T* pU = U.data();
    const T* ps0 = s0.data();
    T* pS = S.mutable_data();
    {
        py::gil_scoped_release nogil;
        lsrl::kernel::scan_dense<T>(sh.batch, sh.steps, sh.k, pA, pU, ps0, pS, threads);
    }
    return std::move(S);
}

py::array linear_scan_dense(const py::object& A_obj, const py::object& U_obj,
                            const py::object& s0_obj, int num_threads, const py::object& out) {
    check_threads(num_threads);
    py::array A = require_ndarray(A_obj, "A");
    py::array U = require_ndarray(U_obj, "U");
    py::array s0 = require_ndarray(s0_obj, "s0");
    const FloatKind kind = common_kind({{&A, "A"}, {&U, "U"}, {&s0, "s0"}});
    require_ndim(A, "A", 2, "(k, k)");
    if (A.shape(0) != A.shape(1))
        throw py::value_error("lsrl._kernel.linear_scan_dense: A must be square (k, k), got shape " +
                              shape_str(A));
    const ScanShape sh = check_state_args(U, s0, static_cast<index_t>(A.shape(0)),
                                          "linear_scan_dense", "A of shape " + shape_str(A));
    return kind == FloatKind::f64 ? run_dense<double>(A, U, s0, sh, num_threads, out)
                                  : run_dense<float>(A, U, s0, sh, num_threads, out);
}

// ---------------------------------------------------------------- CSR
template <typename T>
py::array run_csr(const std::vector<index_t>& indptr, const std::vector<index_t>& indices,
                  const py::array& data_in, const py::array& U_in, const py::array& s0_in,
                  const ScanShape& sh, int num_threads, const py::object& out_obj) {
    auto data = contiguous<T>(data_in);
    auto U = contiguous<T>(U_in);
    auto s0 = contiguous<T>(s0_in);
    require_finite(data.data(), data.size(), "data (the CSR values of A)");
    py::array_t<T> S = make_output<T>(out_obj, shape3(sh), {&U}, {&data, &s0}, "linear_scan_csr");
    const double nnz = static_cast<double>(indices.size());
    const int threads = lsrl::kernel::choose_threads(
        sh.batch, mul_adds(sh.steps, nnz + double(sh.k)), num_threads);
    const index_t* pip = indptr.data();
    const index_t* pix = indices.data();
    const T* pd = data.data();
    const T* pU = U.data();
    const T* ps0 = s0.data();
    T* pS = S.mutable_data();
    {
        py::gil_scoped_release nogil;
        lsrl::kernel::scan_csr<T>(sh.batch, sh.steps, sh.k, pip, pix, pd, pU, ps0, pS, threads);
    }
    return std::move(S);
}

py::array linear_scan_csr(const py::object& indptr_obj, const py::object& indices_obj,
                          const py::object& data_obj, const py::object& U_obj,
                          const py::object& s0_obj, int num_threads, const py::object& out) {
    static const char* who = "lsrl._kernel.linear_scan_csr: ";
    check_threads(num_threads);
    py::array indptr_a = require_ndarray(indptr_obj, "indptr");
    py::array indices_a = require_ndarray(indices_obj, "indices");
    py::array data = require_ndarray(data_obj, "data");
    py::array U = require_ndarray(U_obj, "U");
    py::array s0 = require_ndarray(s0_obj, "s0");
    const FloatKind kind = common_kind({{&data, "data"}, {&U, "U"}, {&s0, "s0"}});
    require_ndim(indptr_a, "indptr", 1, "(k + 1,)");
    require_ndim(indices_a, "indices", 1, "(nnz,)");
    require_ndim(data, "data", 1, "(nnz,)");
    if (indptr_a.shape(0) < 1)
        throw py::value_error(std::string(who) + "indptr must have length k + 1 >= 1, got shape " +
                              shape_str(indptr_a));
    const index_t k = static_cast<index_t>(indptr_a.shape(0)) - 1;
    const ScanShape sh = check_state_args(U, s0, k, "linear_scan_csr",
                                          "indptr of shape " + shape_str(indptr_a));
    if (indices_a.shape(0) != data.shape(0)) {
        throw py::value_error(std::string(who) + "indices has shape " + shape_str(indices_a) +
                              " but data has shape " + shape_str(data) +
                              "; they must have the same length nnz");
    }
    std::vector<index_t> indptr = to_index_vector(indptr_a, "indptr");
    std::vector<index_t> indices = to_index_vector(indices_a, "indices");
    const index_t nnz = static_cast<index_t>(indices.size());
    if (indptr[0] != 0)
        throw py::value_error(std::string(who) + "indptr[0] must be 0, got " +
                              std::to_string(indptr[0]));
    for (index_t i = 0; i < k; ++i) {
        if (indptr[i + 1] < indptr[i]) {
            throw py::value_error(std::string(who) + "indptr must be non-decreasing, but indptr[" +
                                  std::to_string(i + 1) + "] = " + std::to_string(indptr[i + 1]) +
                                  " < indptr[" + std::to_string(i) +
                                  "] = " + std::to_string(indptr[i]));
        }
    }
    if (indptr[k] != nnz) {
        throw py::value_error(std::string(who) + "indptr[k] = indptr[" + std::to_string(k) +
                              "] = " + std::to_string(indptr[k]) +
                              " must equal len(indices) = len(data) = " + std::to_string(nnz));
    }
    for (index_t p = 0; p < nnz; ++p) {
        if (indices[p] < 0 || indices[p] >= k) {
            throw py::value_error(std::string(who) + "indices[" + std::to_string(p) + "] = " +
                                  std::to_string(indices[p]) + " is out of range [0, " +
                                  std::to_string(k) + ") for a " + std::to_string(k) + "x" +
                                  std::to_string(k) + " matrix");
        }
    }
    return kind == FloatKind::f64 ? run_csr<double>(indptr, indices, data, U, s0, sh, num_threads, out)
                                  : run_csr<float>(indptr, indices, data, U, s0, sh, num_threads, out);
}

// ---------------------------------------------------------------- structure of a recurrence matrix
py::dict recurrence_structure(const py::object& indptr_obj, const py::object& indices_obj) {
    py::array indptr_a = require_ndarray(indptr_obj, "indptr");
    py::array indices_a = require_ndarray(indices_obj, "indices");
    require_ndim(indptr_a, "indptr", 1, "(k + 1,)");
    require_ndim(indices_a, "indices", 1, "(nnz,)");
    if (indptr_a.shape(0) < 1)
        throw py::value_error("lsrl._kernel.recurrence_structure: indptr must have length k + 1 >= 1");
    const index_t k = static_cast<index_t>(indptr_a.shape(0)) - 1;
    std::vector<index_t> indptr = to_index_vector(indptr_a, "indptr");
    std::vector<index_t> indices = to_index_vector(indices_a, "indices");
    check_csr(indptr, indices, k, k, "lsrl._kernel.recurrence_structure: ");
    std::vector<double> zeros(indices.size(), 0.0);
    const auto R = lsrl::kernel::analyse<double>(k, indptr.data(), indices.data(), zeros.data());
    using lsrl::kernel::RowClass;
    py::dict d;
    d["empty"] = R.rows_of(RowClass::empty);
    d["diag"] = R.rows_of(RowClass::diag);
    d["single"] = R.rows_of(RowClass::single);
    d["pair"] = R.rows_of(RowClass::pair);
    d["general"] = R.rows_of(RowClass::general);
    d["segments"] = static_cast<index_t>(R.segments.size());
    return d;
}

// ---------------------------------------------------------------- sequence-wide elementwise maps
// X: (..., d) C-contiguous float array (any leading shape).
template <typename T>
py::array run_affine(const std::vector<index_t>& indptr, const std::vector<index_t>& indices,
                     const py::array& data_in, const py::array& bias_in, const py::array& X_in, index_t rows,
                     int num_threads) {
    auto data = contiguous<T>(data_in);
    auto bias = contiguous<T>(bias_in);
    auto X = contiguous<T>(X_in);
    require_finite(data.data(), data.size(), "data (the CSR values of W)");
    require_finite(bias.data(), bias.size(), "bias");
    const index_t d = static_cast<index_t>(X.shape(X.ndim() - 1));
    const index_t n = d > 0 ? static_cast<index_t>(X.size()) / d : 0;
    std::vector<py::ssize_t> shape(X.shape(), X.shape() + X.ndim());
    shape.back() = static_cast<py::ssize_t>(rows);
    py::array_t<T> Y(shape);
    if (d == 0) {  // no input coordinates: every output is its bias
        T* py_ = Y.mutable_data();
        const index_t count = static_cast<index_t>(Y.size()) / std::max<index_t>(rows, 1);
        for (index_t r = 0; r < count; ++r)
            for (index_t i = 0; i < rows; ++i) py_[r * rows + i] = bias.data()[i];
        return std::move(Y);
    }
    struct Ctx {
        index_t rows, d, chunk, n;
        const index_t *ip, *ix;
        const T *w, *b, *x;
        T* y;
        static void run(void* p, index_t c) {
            auto* k = static_cast<Ctx*>(p);
            const index_t r0 = c * k->chunk, r1 = std::min(k->n, r0 + k->chunk);
            for (index_t r = r0; r < r1; ++r) {
                const T* xr = k->x + r * k->d;
                T* yr = k->y + r * k->rows;
                for (index_t i = 0; i < k->rows; ++i) {
                    T acc = T(0);
                    for (index_t p = k->ip[i]; p < k->ip[i + 1]; ++p) acc += k->w[p] * xr[k->ix[p]];
                    yr[i] = acc + k->b[i];
                }
            }
        }
    };
    const index_t chunk = 4096;
    const index_t chunks = (n + chunk - 1) / chunk;
    Ctx ctx{rows, d, chunk, n, indptr.data(), indices.data(), data.data(), bias.data(), X.data(), Y.mutable_data()};
    const int threads = lsrl::kernel::choose_threads(
        chunks, double(chunk) * double(indices.size() + rows), num_threads);
    {
        py::gil_scoped_release nogil;
        lsrl::kernel::parallel_for_batch(chunks, threads, &Ctx::run, &ctx);
    }
    return std::move(Y);
}

py::array sparse_affine(const py::object& indptr_obj, const py::object& indices_obj, const py::object& data_obj,
                        const py::object& bias_obj, const py::object& X_obj, int num_threads) {
    static const std::string who = "lsrl._kernel.sparse_affine: ";
    check_threads(num_threads);
    py::array indptr_a = require_ndarray(indptr_obj, "indptr");
    py::array indices_a = require_ndarray(indices_obj, "indices");
    py::array data = require_ndarray(data_obj, "data");
    py::array bias = require_ndarray(bias_obj, "bias");
    py::array X = require_ndarray(X_obj, "X");
    const FloatKind kind = common_kind({{&data, "data"}, {&bias, "bias"}, {&X, "X"}});
    require_ndim(indptr_a, "indptr", 1, "(m + 1,)");
    require_ndim(indices_a, "indices", 1, "(nnz,)");
    require_ndim(data, "data", 1, "(nnz,)");
    require_ndim(bias, "bias", 1, "(m,)");
    if (X.ndim() < 1) throw py::value_error(who + "X must have at least one axis (..., d)");
    if (indptr_a.shape(0) < 1) throw py::value_error(who + "indptr must have length m + 1 >= 1");
    const index_t rows = static_cast<index_t>(indptr_a.shape(0)) - 1;
    if (bias.shape(0) != rows)
        throw py::value_error(who + "bias has shape " + shape_str(bias) + " but indptr implies m = " +
                              std::to_string(rows));
    if (indices_a.shape(0) != data.shape(0))
        throw py::value_error(who + "indices has shape " + shape_str(indices_a) + " but data has shape " +
                              shape_str(data) + "; they must have the same length nnz");
    const index_t d = static_cast<index_t>(X.shape(X.ndim() - 1));
    std::vector<index_t> indptr = to_index_vector(indptr_a, "indptr");
    std::vector<index_t> indices = to_index_vector(indices_a, "indices");
    check_csr(indptr, indices, rows, d, who);
    return kind == FloatKind::f64 ? run_affine<double>(indptr, indices, data, bias, X, rows, num_threads)
                                  : run_affine<float>(indptr, indices, data, bias, X, rows, num_threads);
}

template <typename T>
py::array run_relu(const py::array& X_in) {
    auto X = contiguous<T>(X_in);
    py::array_t<T> Y(std::vector<py::ssize_t>(X.shape(), X.shape() + X.ndim()));
    const T* x = X.data();
    T* y = Y.mutable_data();
    const py::ssize_t n = X.size();
    py::gil_scoped_release nogil;
    for (py::ssize_t i = 0; i < n; ++i) y[i] = lsrl::kernel::relu(x[i]);
    return std::move(Y);
}

py::array relu(const py::object& X_obj) {
    py::array X = require_ndarray(X_obj, "X");
    return float_kind(X, "X") == FloatKind::f64 ? run_relu<double>(X) : run_relu<float>(X);
}

template <typename T>
py::array run_multi(const py::array& X_in) {
    auto X = contiguous<T>(X_in);
    std::vector<py::ssize_t> shape(X.shape(), X.shape() + X.ndim());
    const index_t d = static_cast<index_t>(shape.back()), h = d / 2;
    shape.back() = static_cast<py::ssize_t>(h);
    py::array_t<T> Y(shape);
    const index_t n = d > 0 ? static_cast<index_t>(X.size()) / d : 0;
    const T* x = X.data();
    T* y = Y.mutable_data();
    py::gil_scoped_release nogil;
    for (index_t r = 0; r < n; ++r)
        for (index_t i = 0; i < h; ++i) y[r * h + i] = x[r * d + i] * x[r * d + h + i];
    return std::move(Y);
}

py::array multi(const py::object& X_obj) {
    py::array X = require_ndarray(X_obj, "X");
    const FloatKind kind = float_kind(X, "X");
    if (X.ndim() < 1 || X.shape(X.ndim() - 1) % 2 != 0)
        throw py::value_error("lsrl._kernel.multi: X must have an even last axis (..., 2h), got shape " +
                              shape_str(X));
    return kind == FloatKind::f64 ? run_multi<double>(X) : run_multi<float>(X);
}

}  // namespace

PYBIND11_MODULE(_kernel, m) {
    m.doc() =
        "lsrl C++ kernels.\n\n"
        "Scans: linear_scan_diag / _dense / _csr run s_t = A s_{t-1} + U[:, t] over U of shape (B, T, k)\n"
        "from s0 (B, k) and return S (B, T, k); the CSR path detects A's row structure (diagonal,\n"
        "shift, rotation pairs, general) and runs a specialised loop for each.  selective_scan runs\n"
        "h_t = a_t * h_{t-1} + b_t.  sparse_affine, relu and multi map whole sequences.  Plan runs a\n"
        "whole compiled model (see lsrl.runtime.executor).\n\n"
        "Float arguments must all be float64 or all float32 (TypeError otherwise; nothing is cast).\n"
        "Shape/structure/stride errors and non-finite parameters raise ValueError.\n"
        "num_threads: 0 = automatic, n > 0 = at most n threads.  out: an optional preallocated result\n"
        "(same dtype and shape, C-contiguous); it may be the array that holds the per-step inputs\n"
        "(in place).";

    m.def("linear_scan_diag", &linear_scan_diag, py::arg("a"), py::arg("U"), py::arg("s0"),
          py::kw_only(), py::arg("num_threads") = 0, py::arg("out") = py::none(),
          "Scan with diagonal A = diag(a); a: (k,), U: (B, T, k), s0: (B, k) -> S: (B, T, k).");
    m.def("linear_scan_dense", &linear_scan_dense, py::arg("A"), py::arg("U"), py::arg("s0"),
          py::kw_only(), py::arg("num_threads") = 0, py::arg("out") = py::none(),
          "Scan with dense row-major A: (k, k); U: (B, T, k), s0: (B, k) -> S: (B, T, k).");
    m.def("linear_scan_csr", &linear_scan_csr, py::arg("indptr"), py::arg("indices"),
          py::arg("data"), py::arg("U"), py::arg("s0"), py::kw_only(), py::arg("num_threads") = 0,
          py::arg("out") = py::none(),
          "Scan with sparse A in CSR form (indptr: (k+1,), indices/data: (nnz,)); "
          "U: (B, T, k), s0: (B, k) -> S: (B, T, k). Duplicate entries are summed; "
          "column indices need not be sorted.");
    m.def("selective_scan", &selective_scan, py::arg("a"), py::arg("b"), py::arg("h0"), py::kw_only(),
          py::arg("num_threads") = 0, py::arg("out") = py::none(),
          "Time-varying diagonal scan h_t = a_t * h_{t-1} + b_t; a, b: (B, T, k), h0: (B, k) -> (B, T, k). "
          "out may be a or b (in place).");
    m.def("recurrence_structure", &recurrence_structure, py::arg("indptr"), py::arg("indices"),
          "Row classes the CSR scan detects in a square sparse A: counts of 'empty', 'diag', 'single' "
          "(shift), 'pair' (e.g. 2x2 rotations) and 'general' rows, and the number of 'segments'.");
    m.def("sparse_affine", &sparse_affine, py::arg("indptr"), py::arg("indices"), py::arg("data"),
          py::arg("bias"), py::arg("X"), py::kw_only(), py::arg("num_threads") = 0,
          "X @ W.T + bias over the last axis of X (..., d) for W (m x d) in CSR form -> (..., m).");
    m.def("relu", &relu, py::arg("X"), "max(X, 0) elementwise (NaN stays NaN).");
    m.def("multi", &multi, py::arg("X"), "X[..., :h] * X[..., h:] for X (..., 2h) -> (..., h).");

    register_executor(m);
    m.attr("isa") = lsrl::kernel::lanes_isa();

#ifdef LSRL_SANITIZE
    m.attr("sanitized") = true;
#else
    m.attr("sanitized") = false;
#endif
    m.attr("__version__") = "0.2.0";
}
