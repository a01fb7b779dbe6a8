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

#include "scan.hpp"

namespace py = pybind11;
using lsrl::kernel::index_t;

namespace {

constexpr int kContiguous =
    py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ | py::detail::npy_api::NPY_ARRAY_ALIGNED_;

std::string shape_str(const py::array& a) {
    std::ostringstream os;
    os << '(';
    for (py::ssize_t i = 0; i < a.ndim(); ++i) {
        if (i) os << ", ";
        os << a.shape(i);
    }
    if (a.ndim() == 1) os << ',';
    os << ')';
    return os.str();
}

std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

std::string type_name(const py::handle& h) {
    return py::str(py::type::handle_of(h).attr("__name__")).cast<std::string>();
}

py::array require_ndarray(const py::object& obj, const char* name) {
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(std::string("lsrl._kernel: ") + name + " must be a numpy.ndarray, got " +
                             type_name(obj));
    return py::reinterpret_borrow<py::array>(obj);
}

void require_ndim(const py::array& a, const char* name, py::ssize_t ndim, const char* layout) {
    if (a.ndim() != ndim) {
        std::ostringstream os;
        os << "lsrl._kernel: " << name << " must be " << ndim << "-D " << layout << ", got shape "
           << shape_str(a) << " (ndim " << a.ndim() << ")";
        throw py::value_error(os.str());
    }
}

enum class FloatKind { f32, f64 };

const char* kind_name(FloatKind k) { return k == FloatKind::f64 ? "float64" : "float32"; }

FloatKind float_kind(const py::array& a, const char* name) {
    const py::dtype dt = a.dtype();
    if (dt.equal(py::dtype::of<double>())) return FloatKind::f64;
    if (dt.equal(py::dtype::of<float>())) return FloatKind::f32;
    throw py::type_error(std::string("lsrl._kernel: ") + name +
                         " must have dtype float64 or float32 (native byte order), got " +
                         dtype_str(a) + "; no implicit casting is done");
}

// Checks that all float arguments share one dtype; returns it.
FloatKind common_kind(std::initializer_list<std::pair<const py::array*, const char*>> args) {
    const auto* first = args.begin();
    const FloatKind k = float_kind(*first->first, first->second);
    for (const auto& a : args) {
        const FloatKind ka = float_kind(*a.first, a.second);
        if (ka != k) {
            throw py::type_error(std::string("lsrl._kernel: dtype mismatch: ") + first->second +
                                 " is " + kind_name(k) + " but " + a.second + " is " +
                                 kind_name(ka) + "; all float arguments must share one dtype");
        }
    }
    return k;
}

template <typename T>
py::array_t<T> contiguous(const py::array& a) {
    py::array c = py::array::ensure(a, kContiguous);
    if (!c) throw py::value_error("lsrl._kernel: could not make a contiguous copy of an argument");
    return py::reinterpret_borrow<py::array_t<T>>(c);
}

// Copies an integer array into an int64 vector (with a TypeError for non-integer dtypes).
std::vector<index_t> to_index_vector(const py::array& a, const char* name) {
    const char kind = a.dtype().kind();
    if (kind != 'i' && kind != 'u') {
        throw py::type_error(std::string("lsrl._kernel: ") + name +
                             " must have an integer dtype, got " + dtype_str(a));
    }
    // Integer -> int64 conversion (uint64 values >= 2**63 wrap to negative numbers,
    // which the range checks below reject).
    auto c = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
    if (!c) throw py::type_error(std::string("lsrl._kernel: could not convert ") + name + " to int64");
    const std::int64_t* p = c.data();
    return std::vector<index_t>(p, p + c.size());
}

template <typename T>
void require_finite(const T* p, py::ssize_t n, const char* name) {
    for (py::ssize_t i = 0; i < n; ++i) {
        if (!std::isfinite(p[i])) {
            std::ostringstream os;
            os << "lsrl._kernel: " << name << " must be finite, but element " << i << " is "
               << p[i];
            throw py::value_error(os.str());
        }
    }
}

int check_threads(int num_threads) {
    if (num_threads < 0)
        throw py::value_error("lsrl._kernel: num_threads must be >= 0 (0 = automatic), got " +
                              std::to_string(num_threads));
    return num_threads;
}

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

// ---------------------------------------------------------------- diag
template <typename T>
py::array run_diag(const py::array& a_in, const py::array& U_in, const py::array& s0_in,
                   const ScanShape& sh, int num_threads) {
    auto a = contiguous<T>(a_in);
    auto U = contiguous<T>(U_in);
    auto s0 = contiguous<T>(s0_in);
    require_finite(a.data(), a.size(), "a (the diagonal of A)");
    py::array_t<T> S({static_cast<py::ssize_t>(sh.batch), static_cast<py::ssize_t>(sh.steps),
                      static_cast<py::ssize_t>(sh.k)});
    const int threads =
        lsrl::kernel::choose_threads(sh.batch, mul_adds(sh.steps, double(sh.k)), num_threads);
    const T* pa = a.data();
    const T* pU = U.data();
    const T* ps0 = s0.data();
    T* pS = S.mutable_data();
    {
        py::gil_scoped_release nogil;
        lsrl::kernel::scan_diag<T>(sh.batch, sh.steps, sh.k, pa, pU, ps0, pS, threads);
    }
    return std::move(S);
}

py::array linear_scan_diag(const py::object& a_obj, const py::object& U_obj,
                           const py::object& s0_obj, int num_threads) {
    check_threads(num_threads);
    py::array a = require_ndarray(a_obj, "a");
    py::array U = require_ndarray(U_obj, "U");
    py::array s0 = require_ndarray(s0_obj, "s0");
    const FloatKind kind = common_kind({{&a, "a"}, {&U, "U"}, {&s0, "s0"}});
    require_ndim(a, "a", 1, "(k,) (the diagonal of A)");
    const ScanShape sh = check_state_args(U, s0, static_cast<index_t>(a.shape(0)),
                                          "linear_scan_diag", "a of shape " + shape_str(a));
    return kind == FloatKind::f64 ? run_diag<double>(a, U, s0, sh, num_threads)
                                  : run_diag<float>(a, U, s0, sh, num_threads);
}

// ---------------------------------------------------------------- dense
template <typename T>
py::array run_dense(const py::array& A_in, const py::array& U_in, const py::array& s0_in,
                    const ScanShape& sh, int num_threads) {
    auto A = contiguous<T>(A_in);
    auto U = contiguous<T>(U_in);
    auto s0 = contiguous<T>(s0_in);
    require_finite(A.data(), A.size(), "A");
    py::array_t<T> S({static_cast<py::ssize_t>(sh.batch), static_cast<py::ssize_t>(sh.steps),
                      static_cast<py::ssize_t>(sh.k)});
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
                            const py::object& s0_obj, int num_threads) {
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
    return kind == FloatKind::f64 ? run_dense<double>(A, U, s0, sh, num_threads)
                                  : run_dense<float>(A, U, s0, sh, num_threads);
}

// ---------------------------------------------------------------- CSR
template <typename T>
py::array run_csr(const std::vector<index_t>& indptr, const std::vector<index_t>& indices,
                  const py::array& data_in, const py::array& U_in, const py::array& s0_in,
                  const ScanShape& sh, int num_threads) {
    auto data = contiguous<T>(data_in);
    auto U = contiguous<T>(U_in);
    auto s0 = contiguous<T>(s0_in);
    require_finite(data.data(), data.size(), "data (the CSR values of A)");
    py::array_t<T> S({static_cast<py::ssize_t>(sh.batch), static_cast<py::ssize_t>(sh.steps),
                      static_cast<py::ssize_t>(sh.k)});
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
                          const py::object& s0_obj, int num_threads) {
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
    return kind == FloatKind::f64 ? run_csr<double>(indptr, indices, data, U, s0, sh, num_threads)
                                  : run_csr<float>(indptr, indices, data, U, s0, sh, num_threads);
}

}  // namespace

PYBIND11_MODULE(_kernel, m) {
    m.doc() =
        "lsrl C++ kernels: batched linear-recurrence scans s_t = A s_{t-1} + u_t.\n\n"
        "All functions take U of shape (B, T, k) and s0 of shape (B, k) and return a new array\n"
        "S of shape (B, T, k) with S[:, t] = A S[:, t-1] + U[:, t] and S[:, -1] := s0.\n"
        "Float arguments must all be float64 or all float32 (TypeError otherwise; nothing is\n"
        "cast). Shape/structure errors and non-finite parameters raise ValueError.\n"
        "num_threads: 0 = automatic, n > 0 = at most n threads over the batch.";

    m.def("linear_scan_diag", &linear_scan_diag, py::arg("a"), py::arg("U"), py::arg("s0"),
          py::kw_only(), py::arg("num_threads") = 0,
          "Scan with diagonal A = diag(a); a: (k,), U: (B, T, k), s0: (B, k) -> S: (B, T, k).");
    m.def("linear_scan_dense", &linear_scan_dense, py::arg("A"), py::arg("U"), py::arg("s0"),
          py::kw_only(), py::arg("num_threads") = 0,
          "Scan with dense row-major A: (k, k); U: (B, T, k), s0: (B, k) -> S: (B, T, k).");
    m.def("linear_scan_csr", &linear_scan_csr, py::arg("indptr"), py::arg("indices"),
          py::arg("data"), py::arg("U"), py::arg("s0"), py::kw_only(), py::arg("num_threads") = 0,
          "Scan with sparse A in CSR form (indptr: (k+1,), indices/data: (nnz,)); "
          "U: (B, T, k), s0: (B, k) -> S: (B, T, k). Duplicate entries are summed; "
          "column indices need not be sorted.");

#ifdef LSRL_SANITIZE
    m.attr("sanitized") = true;
#else
    m.attr("sanitized") = false;
#endif
    m.attr("__version__") = "0.1.0";
}
