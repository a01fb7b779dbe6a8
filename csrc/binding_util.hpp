// Argument validation shared by the bindings (bindings.cpp, bindings_executor.cpp).
//
// Every check raises a Python exception (TypeError for a wrong type or dtype, ValueError for a
// wrong shape, stride, structure or a non-finite parameter) before any kernel runs; no kernel ever
// sees an argument it would misread.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace lsrl {
namespace binding {

namespace py = pybind11;
using index_t = std::int64_t;

constexpr int kContiguous =
    py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ | py::detail::npy_api::NPY_ARRAY_ALIGNED_;

inline std::string shape_str(const py::array& a) {
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

inline std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

inline std::string type_name(const py::handle& h) {
    return py::str(py::type::handle_of(h).attr("__name__")).cast<std::string>();
}

// The start of a message about argument `name`: names that already say where they come from (a Plan node's
// key) keep their own prefix.
inline std::string about(const std::string& name) {
    return name.rfind("lsrl._kernel", 0) == 0 ? name : "lsrl._kernel: " + name;
}

inline py::array require_ndarray(const py::object& obj, const std::string& name) {
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(about(name) + " must be a numpy.ndarray, got " + type_name(obj));
    return py::reinterpret_borrow<py::array>(obj);
}

inline void require_ndim(const py::array& a, const std::string& name, py::ssize_t ndim, const char* layout) {
    if (a.ndim() != ndim) {
        std::ostringstream os;
        os << about(name) << " must be " << ndim << "-D " << layout << ", got shape "
           << shape_str(a) << " (ndim " << a.ndim() << ")";
        throw py::value_error(os.str());
    }
}

enum class FloatKind { f32, f64 };

inline const char* kind_name(FloatKind k) { return k == FloatKind::f64 ? "float64" : "float32"; }

inline FloatKind float_kind(const py::array& a, const std::string& name) {
    const py::dtype dt = a.dtype();
    if (dt.equal(py::dtype::of<double>())) return FloatKind::f64;
    if (dt.equal(py::dtype::of<float>())) return FloatKind::f32;
    throw py::type_error(about(name) +
                         " must have dtype float64 or float32 (native byte order), got " + dtype_str(a) +
                         "; no implicit casting is done");
}

template <typename T>
constexpr FloatKind kind_of() {
    return sizeof(T) == 8 ? FloatKind::f64 : FloatKind::f32;
}

// Checks that all float arguments share one dtype; returns it.
inline FloatKind common_kind(std::initializer_list<std::pair<const py::array*, const char*>> args) {
    const auto* first = args.begin();
    const FloatKind k = float_kind(*first->first, first->second);
    for (const auto& a : args) {
        const FloatKind ka = float_kind(*a.first, a.second);
        if (ka != k) {
            throw py::type_error(std::string("lsrl._kernel: dtype mismatch: ") + first->second + " is " +
                                 kind_name(k) + " but " + a.second + " is " + kind_name(ka) +
                                 "; all float arguments must share one dtype");
        }
    }
    return k;
}

// Requires exactly dtype T (TypeError otherwise).
template <typename T>
void require_kind(const py::array& a, const std::string& name) {
    const FloatKind k = float_kind(a, name);
    if (k != kind_of<T>())
        throw py::type_error(about(name) + " has dtype " + kind_name(k) + " but this call works in " +
                             kind_name(kind_of<T>()) + "; no implicit casting is done");
}

// A C-contiguous, aligned view of `a` (a copy when it is not one already).
template <typename T>
py::array_t<T> contiguous(const py::array& a) {
    py::array c = py::array::ensure(a, kContiguous);
    if (!c) throw py::value_error("lsrl._kernel: could not make a contiguous copy of an argument");
    return py::reinterpret_borrow<py::array_t<T>>(c);
}

inline bool is_c_contiguous(const py::array& a) {
    return (a.flags() & kContiguous) == kContiguous;
}

// Strict variant: the array must already be C-contiguous and aligned (ValueError otherwise).
inline void require_contiguous(const py::array& a, const std::string& name) {
    if (!is_c_contiguous(a)) {
        std::ostringstream os;
        os << about(name) << " must be C-contiguous and aligned, got shape " << shape_str(a)
           << " with strides (";
        for (py::ssize_t i = 0; i < a.ndim(); ++i) os << (i ? ", " : "") << a.strides(i);
        os << "); pass numpy.ascontiguousarray(...)";
        throw py::value_error(os.str());
    }
}

// Copies an integer array into an int64 vector (with a TypeError for non-integer dtypes).
inline std::vector<index_t> to_index_vector(const py::array& a, const std::string& name) {
    const char kind = a.dtype().kind();
    if (kind != 'i' && kind != 'u')
        throw py::type_error(about(name) + " must have an integer dtype, got " + dtype_str(a));
    // Integer -> int64 conversion (uint64 values >= 2**63 wrap to negative numbers,
    // which the range checks reject).
    auto c = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
    if (!c) throw py::type_error("lsrl._kernel: could not convert " + name + " to int64");
    const std::int64_t* p = c.data();
    return std::vector<index_t>(p, p + c.size());
}

template <typename T>
void require_finite(const T* p, py::ssize_t n, const std::string& name) {
    for (py::ssize_t i = 0; i < n; ++i) {
        if (!std::isfinite(p[i])) {
            std::ostringstream os;
            os << about(name) << " must be finite, but element " << i << " is " << p[i];
            throw py::value_error(os.str());
        }
    }
}

inline int check_threads(int num_threads) {
    if (num_threads < 0)
        throw py::value_error("lsrl._kernel: num_threads must be >= 0 (0 = automatic), got " +
                              std::to_string(num_threads));
    return num_threads;
}

// Validates a CSR structure of a rows x cols matrix (indptr length rows + 1, starting at 0,
// non-decreasing, ending at nnz; 0 <= indices < cols).  `who` prefixes the messages.
inline void check_csr(const std::vector<index_t>& indptr, const std::vector<index_t>& indices, index_t rows,
                      index_t cols, const std::string& who) {
    if (static_cast<index_t>(indptr.size()) != rows + 1)
        throw py::value_error(who + "indptr has length " + std::to_string(indptr.size()) + ", expected rows + 1 = " +
                              std::to_string(rows + 1));
    if (indptr[0] != 0) throw py::value_error(who + "indptr[0] must be 0, got " + std::to_string(indptr[0]));
    for (index_t i = 0; i < rows; ++i) {
        if (indptr[i + 1] < indptr[i])
            throw py::value_error(who + "indptr must be non-decreasing, but indptr[" + std::to_string(i + 1) +
                                  "] = " + std::to_string(indptr[i + 1]) + " < indptr[" + std::to_string(i) +
                                  "] = " + std::to_string(indptr[i]));
    }
    const index_t nnz = static_cast<index_t>(indices.size());
    if (indptr[rows] != nnz)
        throw py::value_error(who + "indptr[" + std::to_string(rows) + "] = " + std::to_string(indptr[rows]) +
                              " must equal len(indices) = len(data) = " + std::to_string(nnz));
    for (index_t p = 0; p < nnz; ++p) {
        if (indices[p] < 0 || indices[p] >= cols)
            throw py::value_error(who + "indices[" + std::to_string(p) + "] = " + std::to_string(indices[p]) +
                                  " is out of range [0, " + std::to_string(cols) + ") for a " +
                                  std::to_string(rows) + "x" + std::to_string(cols) + " matrix");
    }
}

// [begin, end) byte range of a contiguous array's data.
inline std::pair<const char*, const char*> byte_range(const py::array& a) {
    const char* p = static_cast<const char*>(a.data());
    return {p, p + a.nbytes()};
}

inline bool overlaps(const py::array& a, const py::array& b) {
    if (a.nbytes() == 0 || b.nbytes() == 0) return false;
    auto ra = byte_range(a), rb = byte_range(b);
    return ra.first < rb.second && rb.first < ra.second;
}

// Registers the Plan class (bindings_executor.cpp).
void register_executor(py::module_& m);

}  // namespace binding
}  // namespace lsrl
