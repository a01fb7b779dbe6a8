// Python binding of the whole-model executor (executor.hpp): class lsrl._kernel.Plan.
//
// A plan is built once from node descriptors (lsrl/runtime/executor.py writes them from an IR
// module) and then runs any number of batches.  Everything is validated here:
//   * when the plan is built: node kinds, operand indices (topological), every dimension, CSR
//     structure (indptr/indices ranges), parameter dtypes (exactly the plan's dtype: TypeError
//     otherwise) and finiteness of every weight, bias and initial state (ValueError);
//   * when it runs: xs and the states must be numpy arrays of the plan's dtype (TypeError), with
//     the right ndim and shape and C-contiguous (ValueError; nothing is copied or cast silently).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "binding_util.hpp"
#include "blocks.hpp"
#include "cells.hpp"
#include "executor.hpp"

namespace lsrl {
namespace binding {

using kernel::Csr;
using kernel::Node;
using kernel::NodeKind;
using kernel::Plan;
using kernel::RunShape;

namespace {

struct KindInfo {
    const char* name;
    NodeKind kind;
};
// The core kinds; any other kind is a registered cell (cells.hpp) or block (blocks.hpp).
constexpr KindInfo kKinds[] = {
    {"input", NodeKind::input},   {"affine", NodeKind::affine}, {"relu", NodeKind::relu},
    {"multi", NodeKind::multi},   {"concat", NodeKind::concat}, {"slice", NodeKind::slice},
    {"linstate", NodeKind::linstate},
};

template <typename T>
const char* kind_str(const Node<T>& node) {
    if (node.kind == NodeKind::cell) return node.cell->name;
    if (node.kind == NodeKind::block) return node.block->name;
    for (const auto& info : kKinds)
        if (info.kind == node.kind) return info.name;
    return "?";
}

template <typename T>
std::string known_kinds() {
    std::string out;
    for (const auto& info : kKinds) out += std::string(out.empty() ? "" : ", ") + info.name;
    for (const auto& entry : kernel::kind_registry<kernel::CellKind<T>>()) out += ", " + entry.first;
    for (const auto& entry : kernel::kind_registry<kernel::BlockKind<T>>()) out += ", " + entry.first;
    return out;
}

// Dimensions, offsets and block sizes too large for one index (and any product of two of them) are refused
// before anything is allocated.
constexpr index_t kMaxSize = index_t(1) << 31;

// Reads one node dict; `who` names the node in every message.
class NodeReader {
   public:
    NodeReader(const py::handle& obj, std::size_t index) {
        if (!py::isinstance<py::dict>(obj))
            throw py::type_error("lsrl._kernel.Plan: node " + std::to_string(index) + " must be a dict, got " +
                                 type_name(obj));
        d_ = py::reinterpret_borrow<py::dict>(obj);
        who_ = "lsrl._kernel.Plan: node " + std::to_string(index);
        if (d_.contains("name") && !d_["name"].is_none()) {
            name_ = py::str(d_["name"]).cast<std::string>();
            who_ += " (" + name_ + ")";
        }
        who_ += ": ";
    }

    const std::string& who() const { return who_; }
    const std::string& name() const { return name_; }
    bool has(const char* key) const { return d_.contains(key) && !d_[key].is_none(); }

    py::object get(const char* key) const {
        if (!has(key)) throw py::value_error(who_ + "missing '" + key + "'");
        return d_[key];
    }

    // An int in [0, kMaxSize] (a dimension or an offset).
    index_t integer(const char* key) const {
        py::object v = get(key);
        if (!py::isinstance<py::int_>(v) || py::isinstance<py::bool_>(v))
            throw py::type_error(who_ + "'" + key + "' must be an int, got " + type_name(v));
        const index_t x = checked_int(v, "'" + std::string(key) + "'");
        if (x < 0 || x > kMaxSize)
            throw py::value_error(who_ + "'" + key + "' must be between 0 and 2^31, got " + std::to_string(x));
        return x;
    }

    bool boolean(const char* key) const {
        py::object v = get(key);
        if (!py::isinstance<py::bool_>(v))
            throw py::type_error(who_ + "'" + key + "' must be a bool, got " + type_name(v));
        return v.cast<bool>();
    }

    // A finite number that the plan's dtype T holds without overflow or flushing to 0 (blocks compute with it in T).
    template <typename T>
    double number(const char* key) const {
        py::object v = get(key);
        if (!py::isinstance<py::float_>(v) && !(py::isinstance<py::int_>(v) && !py::isinstance<py::bool_>(v)))
            throw py::type_error(who_ + "'" + key + "' must be a number, got " + type_name(v));
        const double x = PyFloat_AsDouble(v.ptr());
        if (PyErr_Occurred()) {  // an int past float64's range
            PyErr_Clear();
            throw py::value_error(who_ + "'" + key + "' must be finite, got an int too large for float64");
        }
        // past T's range the conversion itself is undefined: compare first
        const bool in_range = std::isfinite(x) && std::fabs(x) <= static_cast<double>(std::numeric_limits<T>::max());
        if (!in_range || (x != 0 && static_cast<T>(x) == T(0))) {
            std::ostringstream os;
            os << who_ << "'" << key << "' must be finite and, if non-zero, not round to 0 in "
               << (sizeof(T) == 4 ? "float32" : "float64") << "; got " << x;
            throw py::value_error(os.str());
        }
        return x;
    }

    std::string string(const char* key) const {
        py::object v = get(key);
        if (!py::isinstance<py::str>(v))
            throw py::type_error(who_ + "'" + key + "' must be a str, got " + type_name(v));
        return v.cast<std::string>();
    }

    std::vector<index_t> inputs() const {
        py::object v = get("inputs");
        if (!py::isinstance<py::list>(v) && !py::isinstance<py::tuple>(v))
            throw py::type_error(who_ + "'inputs' must be a list of ints, got " + type_name(v));
        std::vector<index_t> out;
        for (py::handle h : v) {
            if (!py::isinstance<py::int_>(h) || py::isinstance<py::bool_>(h))
                throw py::type_error(who_ + "'inputs' must be a list of ints, found " + type_name(h));
            out.push_back(checked_int(h, "'inputs'"));
        }
        return out;
    }

    // A float vector of exactly `length` entries of dtype T, all finite.
    template <typename T>
    std::vector<T> vector(const char* key, index_t length) const {
        const std::string what = who_ + "'" + key + "'";
        py::array a = require_ndarray(get(key), what);
        require_kind<T>(a, what);
        require_ndim(a, what, 1, "(n,)");
        if (a.shape(0) != length)
            throw py::value_error(what + " has shape " + shape_str(a) + ", expected (" + std::to_string(length) +
                                  ",)");
        auto c = contiguous<T>(a);
        require_finite(c.data(), c.size(), what);
        return std::vector<T>(c.data(), c.data() + c.size());
    }

    // An optional bias: absent/None -> empty.
    template <typename T>
    std::vector<T> optional_vector(const char* key, index_t length) const {
        return has(key) ? vector<T>(key, length) : std::vector<T>();
    }

    // A rows x cols CSR matrix given as (indptr, indices, data).
    template <typename T>
    Csr<T> csr(const char* key, index_t rows, index_t cols) const {
        const std::string what = who_ + "'" + key + "'";
        py::object v = get(key);
        if (!py::isinstance<py::tuple>(v) || py::len(v) != 3)
            throw py::type_error(what + " must be a tuple (indptr, indices, data)");
        py::tuple t = py::reinterpret_borrow<py::tuple>(v);
        py::array ip = require_ndarray(t[0], what + " indptr");
        py::array ix = require_ndarray(t[1], what + " indices");
        py::array data = require_ndarray(t[2], what + " data");
        require_ndim(ip, what + " indptr", 1, "(rows + 1,)");
        require_ndim(ix, what + " indices", 1, "(nnz,)");
        require_ndim(data, what + " data", 1, "(nnz,)");
        require_kind<T>(data, what + " data");
        if (ix.shape(0) != data.shape(0))
            throw py::value_error(what + ": indices has shape " + shape_str(ix) + " but data has shape " +
                                  shape_str(data));
        Csr<T> m;
        m.rows = rows;
        m.cols = cols;
        m.indptr = to_index_vector(ip, what + " indptr");
        m.indices = to_index_vector(ix, what + " indices");
        check_csr(m.indptr, m.indices, rows, cols, what + ": ");
        auto c = contiguous<T>(data);
        require_finite(c.data(), c.size(), what + " data");
        m.data.assign(c.data(), c.data() + c.size());
        return m;
    }

   private:
    // A Python int as an index; one past int64 is a ValueError, not pybind's cast error.
    index_t checked_int(const py::handle& v, const std::string& what) const {
        int overflow = 0;
        const long long x = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
        if (overflow != 0)
            throw py::value_error(who_ + what + " must be between 0 and 2^31, got " + py::str(v).cast<std::string>());
        return static_cast<index_t>(x);
    }

    py::dict d_;
    std::string who_, name_;
};

// A dimension expression of a block kind's parameter list: "H", "d", a size name or "A*B".
template <typename T>
index_t block_dim(const NodeReader& r, const Node<T>& node, index_t d, const std::string& expr) {
    const std::size_t star = expr.find('*');
    if (star != std::string::npos)
        return block_dim(r, node, d, expr.substr(0, star)) * block_dim(r, node, d, expr.substr(star + 1));
    if (expr == "H") return node.dim;
    if (expr == "d") return d;
    const auto& sizes = node.block->sizes;
    for (std::size_t k = 0; k < sizes.size(); ++k)
        if (expr == sizes[k]) return node.sizes[k];
    throw std::logic_error(std::string("block kind ") + node.block->name + ": unknown dimension '" + expr + "'");
}

template <typename T>
void read_block(const NodeReader& r, Node<T>& node, index_t d) {
    const kernel::BlockKind<T>& kind = *node.block;
    if (node.dim < 1) throw py::value_error(r.who() + kind.name + ": dim must be >= 1, got 0");
    for (const char* name : kind.sizes) {
        const index_t v = r.integer(name);
        if (v < 1)
            throw py::value_error(r.who() + "'" + name + "' must be between 1 and 2^31, got " + std::to_string(v));
        node.sizes.push_back(v);
    }
    for (const auto& spec : kind.matrices) {
        if (spec.optional && !r.has(spec.name)) {
            node.mats.emplace_back();
            continue;
        }
        node.mats.push_back(r.csr<T>(spec.name, block_dim(r, node, d, spec.rows), block_dim(r, node, d, spec.cols)));
    }
    for (const auto& spec : kind.vectors) node.vecs.push_back(r.vector<T>(spec.name, block_dim(r, node, d, spec.length)));
    for (const char* name : kind.numbers) node.numbers.push_back(r.number<T>(name));
    if (kind.has_activation_choice) node.ideal = r.boolean("ideal");
    const std::string problem = kind.problem(node, d);
    if (!problem.empty()) throw py::value_error(r.who() + kind.name + ": " + problem);
    if (kind.prepare != nullptr) kind.prepare(node);
    node.state_dim = kind.state_dim(node);
    if (node.state_dim > 0) node.init = r.vector<T>("init", node.state_dim);
}

template <typename T>
std::unique_ptr<Plan<T>> build_plan(const py::list& descriptors, index_t output) {
    auto plan = std::make_unique<Plan<T>>();
    const std::size_t count = descriptors.size();
    if (count == 0) throw py::value_error("lsrl._kernel.Plan: no nodes (node 0 must be the input)");
    plan->nodes.reserve(count);
    for (std::size_t n = 0; n < count; ++n) {
        NodeReader r(descriptors[n], n);
        Node<T> node;
        node.name = r.name();
        const std::string kind = r.string("kind");
        bool known = false;
        for (const auto& info : kKinds)
            if (kind == info.name) {
                node.kind = info.kind;
                known = true;
            }
        if (!known && (node.cell = kernel::find_kind<kernel::CellKind<T>>(kind)) != nullptr) {
            node.kind = NodeKind::cell;
            known = true;
        }
        if (!known && (node.block = kernel::find_kind<kernel::BlockKind<T>>(kind)) != nullptr) {
            node.kind = NodeKind::block;
            known = true;
        }
        if (!known) throw py::value_error(r.who() + "unknown kind '" + kind + "' (known: " + known_kinds<T>() + ")");
        if ((n == 0) != (node.kind == NodeKind::input))
            throw py::value_error(r.who() + (n == 0 ? "node 0 must be the input" : "only node 0 may be an input"));
        node.dim = r.integer("dim");
        node.inputs = node.kind == NodeKind::input ? std::vector<index_t>() : r.inputs();
        const std::size_t arity = node.inputs.size();
        if (node.kind == NodeKind::concat ? arity < 1 : (node.kind != NodeKind::input && arity != 1))
            throw py::value_error(r.who() + kind + " takes " + (node.kind == NodeKind::concat ? "at least one" : "one") +
                                  " operand, got " + std::to_string(arity));
        for (index_t in : node.inputs)
            if (in < 0 || in >= static_cast<index_t>(n))
                throw py::value_error(r.who() + "operand index " + std::to_string(in) +
                                      " must refer to an earlier node (0.." + std::to_string(n) + ")");
        const index_t d = node.inputs.empty() ? 0 : plan->nodes[node.inputs[0]].dim;
        const index_t H = node.dim;
        auto require_dim = [&](bool ok, const std::string& expected) {
            if (!ok)
                throw py::value_error(r.who() + kind + " with operand dim " + std::to_string(d) + " has dim " +
                                      std::to_string(H) + "; expected " + expected);
        };
        if (node.kind == NodeKind::linstate || node.kind == NodeKind::cell)  // no coordinates: no state slot
            require_dim(H >= 1, "dim >= 1 (a " + kind + " has a state)");
        switch (node.kind) {
            case NodeKind::input:
                break;
            case NodeKind::affine:
                node.W = r.csr<T>("W", H, d);
                node.bias = r.optional_vector<T>("b", H);
                break;
            case NodeKind::relu:
                require_dim(H == d, "dim == operand dim");
                break;
            case NodeKind::multi:
                require_dim(2 * H == d, "operand dim == 2 * dim");
                break;
            case NodeKind::concat: {
                index_t total = 0;
                for (index_t in : node.inputs) total += plan->nodes[in].dim;
                require_dim(H == total, "the sum of the operand dims (" + std::to_string(total) + ")");
                break;
            }
            case NodeKind::slice:
                node.start = r.integer("start");
                require_dim(node.start + H <= d, "start + dim <= operand dim (start = " + std::to_string(node.start) + ")");
                break;
            case NodeKind::linstate:
                node.W = r.csr<T>("W", H, d);
                node.bias = r.optional_vector<T>("b", H);
                break;
            case NodeKind::cell:
                node.gates = node.cell->gates;
                node.W = r.csr<T>("W", node.gates * H, d);
                node.bias = r.optional_vector<T>("b", node.gates * H);
                if (node.cell->reads_bias2) node.bias2 = r.vector<T>("b2", node.gates * H);
                if (node.cell->has_activation_choice) node.ideal = r.boolean("ideal");
                break;
            case NodeKind::block:
                read_block(r, node, d);
                break;
        }
        if (node.kind == NodeKind::linstate || node.kind == NodeKind::cell) {
            const index_t rows = node.kind == NodeKind::linstate ? H : node.gates * H;
            const Csr<T> R = r.csr<T>("R", rows, H);
            node.R = kernel::analyse<T>(rows, R.indptr.data(), R.indices.data(), R.data.data());
            node.state_dim = node.kind == NodeKind::cell ? node.cell->state_parts * H : H;
            node.init = r.vector<T>("init", node.state_dim);
        }
        plan->nodes.push_back(std::move(node));
    }
    if (output < 0 || output >= static_cast<index_t>(count))
        throw py::value_error("lsrl._kernel.Plan: output " + std::to_string(output) + " is not a node index (0.." +
                              std::to_string(count - 1) + ")");
    plan->output = output;
    plan->d_in = plan->nodes[0].dim;
    plan->d_out = plan->nodes[static_cast<std::size_t>(output)].dim;
    plan->finalise();
    return plan;
}

// The leading fields of NumPy's PyUFuncObject (numpy/ufuncobject.h).  They are part of NumPy's public C
// ABI and identical in NumPy 1.x and 2.x; the loop found through them is only used after it reproduced
// numpy.tanh bit for bit on a test vector.
struct UFuncHead {
    PyObject_HEAD
    int nin, nout, nargs;
    int identity;
    kernel::UnaryLoopFn* functions;
    void* const* data;
    int ntypes;
    int reserved1;
    const char* name;
    const char* types;
};

struct FunctionSource {
    kernel::Fn fn;
    const char* name;         // numpy's ufunc
    bool positive_arguments;  // the self-test uses |x| (log1p is defined above -1)
};
constexpr FunctionSource kFunctions[] = {
    {kernel::Fn::tanh, "tanh", false},
    {kernel::Fn::exp, "exp", false},
    {kernel::Fn::log1p, "log1p", true},
};

// NumPy's inner loop of `source` for T ('d->d' or 'f->f'), if it can be found and reproduces the ufunc's
// values on a test vector.  Blocks and standard-mode cells then evaluate the function exactly as the numpy
// backend does (NumPy's vectorised tanh, exp and log1p differ from the C library's in the last bit for many
// arguments).
template <typename T>
bool find_numpy_loop(const FunctionSource& source, kernel::UnaryLoopFn* fn, void** data) {
    *fn = nullptr;
    *data = nullptr;
    try {
        py::module_ np = py::module_::import("numpy");
        const std::string version = py::str(np.attr("__version__")).cast<std::string>();
        if (version.size() < 2 || (version[0] != '1' && version[0] != '2') || version[1] != '.') return false;
        py::object ufunc = np.attr(source.name);
        if (!py::isinstance(ufunc, np.attr("ufunc"))) return false;
        const auto* u = reinterpret_cast<const UFuncHead*>(ufunc.ptr());
        if (u->nin != 1 || u->nout != 1 || u->nargs != 2 || u->name == nullptr ||
            std::string(u->name) != source.name || u->functions == nullptr || u->types == nullptr ||
            u->ntypes <= 0 || u->ntypes > 64)
            return false;
        const char want = sizeof(T) == 8 ? 12 : 11;  // NPY_DOUBLE, NPY_FLOAT
        for (int i = 0; i < u->ntypes; ++i) {
            if (u->types[2 * i] == want && u->types[2 * i + 1] == want) {
                *fn = u->functions[i];
                *data = u->data ? u->data[i] : nullptr;
                break;
            }
        }
        if (*fn == nullptr) return false;
        // self-test: the loop must give exactly the ufunc's values
        const py::ssize_t n = 203;
        py::array_t<T> x(n);
        T* px = x.mutable_data();
        for (py::ssize_t i = 0; i < n; ++i) {
            double v = (static_cast<double>(i) - 101.0) / 4.0;
            v = i % 3 == 0 ? v * 1e-3 : (i % 3 == 1 ? v : v * 0.37);
            px[i] = static_cast<T>(source.positive_arguments ? std::fabs(v) : v);
        }
        if (source.fn == kernel::Fn::exp) {  // Plan::apply answers 0 at and below the underflow cut itself
            const T cut = kernel::ExpUnderflow<T>::cut;
            px[0] = cut;
            px[1] = cut * T(1.5);
            px[2] = cut * T(20);
        }
        py::array_t<T> ref = py::array_t<T>::ensure(ufunc(x));
        if (!ref || ref.size() != n) return false;
        if (source.fn == kernel::Fn::exp)  // Plan::apply's shortcut must be what NumPy answers there
            for (py::ssize_t i = 0; i < 3; ++i)
                if (ref.data()[i] != T(0)) return false;
        std::vector<T> got(static_cast<std::size_t>(n));
        char* args[2] = {reinterpret_cast<char*>(px), reinterpret_cast<char*>(got.data())};
        const std::intptr_t dims[1] = {static_cast<std::intptr_t>(n)};
        const std::intptr_t steps[2] = {static_cast<std::intptr_t>(sizeof(T)), static_cast<std::intptr_t>(sizeof(T))};
        (*fn)(args, dims, steps, *data);
        if (std::memcmp(got.data(), ref.data(), static_cast<std::size_t>(n) * sizeof(T)) != 0) {
            *fn = nullptr;
            *data = nullptr;
            return false;
        }
        return true;
    } catch (const py::error_already_set&) {
        *fn = nullptr;
        *data = nullptr;
        return false;
    }
}

template <typename T>
void attach_functions(Plan<T>& plan) {
    for (const auto& source : kFunctions)
        if (plan.needs(source.fn)) {
            auto& loop = plan.loops[static_cast<int>(source.fn)];
            find_numpy_loop<T>(source, &loop.fn, &loop.data);
        }
}

class PyPlan {
   public:
    PyPlan(const py::list& nodes, index_t output, const std::string& dtype) {
        if (dtype == "float64") {
            p64_ = build_plan<double>(nodes, output);
            attach_functions(*p64_);
        } else if (dtype == "float32") {
            p32_ = build_plan<float>(nodes, output);
            attach_functions(*p32_);
        } else {
            throw py::type_error("lsrl._kernel.Plan: dtype must be 'float64' or 'float32', got '" + dtype + "'");
        }
    }

    // Per function some node evaluates: "numpy" (NumPy's own loop) or "libm".
    py::dict function_sources() const { return p64_ ? sources_of(*p64_) : sources_of(*p32_); }

    std::string dtype() const { return p64_ ? "float64" : "float32"; }
    index_t d_in() const { return p64_ ? p64_->d_in : p32_->d_in; }
    index_t d_out() const { return p64_ ? p64_->d_out : p32_->d_out; }
    index_t arena_rows() const { return p64_ ? p64_->memory.rows : p32_->memory.rows; }

    std::vector<index_t> state_dims() const {
        return p64_ ? state_dims_of(*p64_) : state_dims_of(*p32_);
    }
    std::vector<index_t> state_nodes() const { return p64_ ? p64_->stateful : p32_->stateful; }

    py::dict shape_for(index_t batch, index_t steps, int num_threads, index_t lanes) const {
        check_threads(num_threads);
        if (lanes < 0) throw py::value_error("lsrl._kernel.Plan: lanes must be >= 0 (0 = automatic)");
        if (batch < 0 || steps < 0)
            throw py::value_error("lsrl._kernel.Plan.shape_for: batch and steps must be >= 0, got " +
                                  std::to_string(batch) + " and " + std::to_string(steps));
        const RunShape s = p64_ ? p64_->shape_for(batch, steps, num_threads, lanes)
                                : p32_->shape_for(batch, steps, num_threads, lanes);
        py::dict d;
        d["batch_group"] = s.bg;
        d["time_block"] = s.tb;
        d["threads"] = s.threads;
        return d;
    }

    // Per recurrent node: its kind and the row classes of its recurrent matrix.
    py::list structure() const { return p64_ ? structure_of(*p64_) : structure_of(*p32_); }

    py::tuple run(const py::object& xs, const py::object& states, int num_threads, index_t lanes) const {
        check_threads(num_threads);
        if (lanes < 0) throw py::value_error("lsrl._kernel.Plan.run: lanes must be >= 0 (0 = automatic)");
        return p64_ ? run_typed(*p64_, xs, states, num_threads, lanes)
                    : run_typed(*p32_, xs, states, num_threads, lanes);
    }

   private:
    std::unique_ptr<Plan<double>> p64_;
    std::unique_ptr<Plan<float>> p32_;

    template <typename T>
    static py::dict sources_of(const Plan<T>& p) {
        py::dict out;
        for (const auto& source : kFunctions)
            if (p.needs(source.fn))
                out[source.name] = p.loops[static_cast<int>(source.fn)].fn != nullptr ? "numpy" : "libm";
        return out;
    }

    template <typename T>
    static std::vector<index_t> state_dims_of(const Plan<T>& p) {
        std::vector<index_t> out;
        for (index_t n : p.stateful) out.push_back(p.nodes[n].state_dim);
        return out;
    }

    template <typename T>
    static py::list structure_of(const Plan<T>& p) {
        using kernel::RowClass;
        py::list out;
        for (index_t n : p.stateful) {
            const Node<T>& node = p.nodes[n];
            py::dict d;
            d["node"] = n;
            d["name"] = node.name;
            d["kind"] = kind_str(node);
            d["empty"] = node.R.rows_of(RowClass::empty);
            d["diag"] = node.R.rows_of(RowClass::diag);
            d["single"] = node.R.rows_of(RowClass::single);
            d["pair"] = node.R.rows_of(RowClass::pair);
            d["general"] = node.R.rows_of(RowClass::general);
            out.append(d);
        }
        return out;
    }

    template <typename T>
    static py::tuple run_typed(const Plan<T>& plan, const py::object& xs_obj, const py::object& states_obj,
                               int num_threads, index_t lanes) {
        static const std::string who = "lsrl._kernel.Plan.run: ";
        py::array xs = require_ndarray(xs_obj, "xs");
        require_kind<T>(xs, "xs");
        require_ndim(xs, "xs", 3, "(B, T, d_in)");
        if (xs.shape(2) != plan.d_in)
            throw py::value_error(who + "xs has shape " + shape_str(xs) + " but the plan's input has dim " +
                                  std::to_string(plan.d_in));
        require_contiguous(xs, "xs");
        const index_t batch = static_cast<index_t>(xs.shape(0)), steps = static_cast<index_t>(xs.shape(1));
        const std::size_t slots = plan.stateful.size();
        std::vector<py::array> keep;  // the state arrays stay referenced while the kernel reads them
        std::vector<const T*> states_in(slots, nullptr);
        if (!states_obj.is_none()) {
            if (!py::isinstance<py::list>(states_obj) && !py::isinstance<py::tuple>(states_obj))
                throw py::type_error(who + "states must be None or a list with one entry per recurrent node, got " +
                                     type_name(states_obj));
            py::sequence seq = py::reinterpret_borrow<py::sequence>(states_obj);
            if (static_cast<std::size_t>(py::len(seq)) != slots)
                throw py::value_error(who + "states has " + std::to_string(py::len(seq)) + " entries but the plan has " +
                                      std::to_string(slots) + " recurrent nodes");
            for (std::size_t s = 0; s < slots; ++s) {
                py::object item = seq[s];
                if (item.is_none()) continue;
                const std::string name = "states[" + std::to_string(s) + "]";
                py::array a = require_ndarray(item, name);
                require_kind<T>(a, name);
                require_ndim(a, name, 2, "(B, state_dim)");
                const index_t sd = plan.nodes[plan.stateful[s]].state_dim;
                if (a.shape(0) != batch || a.shape(1) != sd)
                    throw py::value_error(who + name + " has shape " + shape_str(a) + ", expected (" +
                                          std::to_string(batch) + ", " + std::to_string(sd) + ")");
                require_contiguous(a, name);
                keep.push_back(a);
                states_in[s] = static_cast<const T*>(a.data());
            }
        }
        py::array_t<T> ys(std::vector<py::ssize_t>{static_cast<py::ssize_t>(batch), static_cast<py::ssize_t>(steps),
                                                   static_cast<py::ssize_t>(plan.d_out)});
        py::list states_out;
        std::vector<T*> out_ptrs(slots);
        for (std::size_t s = 0; s < slots; ++s) {
            py::array_t<T> a(std::vector<py::ssize_t>{static_cast<py::ssize_t>(batch),
                                                      static_cast<py::ssize_t>(plan.nodes[plan.stateful[s]].state_dim)});
            out_ptrs[s] = a.mutable_data();
            states_out.append(a);
        }
        const RunShape shape = plan.shape_for(batch, steps, num_threads, lanes);
        const T* px = static_cast<const T*>(xs.data());
        T* py_ = ys.mutable_data();
        {
            py::gil_scoped_release nogil;
            plan.run(shape, px, py_, states_in, out_ptrs);
        }
        return py::make_tuple(ys, states_out);
    }
};

}  // namespace

void register_executor(py::module_& m) {
    py::class_<PyPlan>(m, "Plan", R"doc(A compiled model (or program DAG) prepared for whole-sequence execution.

Plan(nodes, output, dtype="float64"): nodes is a list of dicts in topological order, node 0 the input:
  {"kind": "input", "dim": d_in}
  {"kind": "affine", "inputs": [i], "dim": m, "W": (indptr, indices, data), "b": (m,) or None}
  {"kind": "relu" | "multi", "inputs": [i], "dim": m}          (multi: operand dim 2m)
  {"kind": "concat", "inputs": [i, j, ...], "dim": sum}
  {"kind": "slice", "inputs": [i], "dim": m, "start": s}
  {"kind": "linstate", "inputs": [i], "dim": k, "W": B (k x d), "b": bias, "R": A (k x k), "init": (k,)}
  {"kind": <a registered cell>, "inputs": [i], "dim": H, "W": W_ih (gH x d), "b": input-side bias,
   "R": W_hh (gH x H), "b2": recurrent-side bias (cells that read one), "init": the state parts one after the
   other (sH), "ideal": bool (cells with an activation choice)}
  {"kind": <a registered block>, "inputs": [i], "dim": H, its sizes (ints), matrices ((indptr, indices, data);
   optional ones may be None), vectors, numbers, "ideal" (kinds with an activation choice), "init" (kinds with a
   state: state_dim values)}
with g gate blocks and s state parts per cell kind (csrc/cells/; cell_kinds() lists them) and the parameters
block_kinds() lists for each block kind (csrc/blocks/).  Every float array
must have the plan's dtype and be finite.  Optional "name" strings appear in error messages.

run(xs, states=None, *, num_threads=0, lanes=0) -> (ys, states): xs (B, T, d_in) C-contiguous of the plan's
dtype; states None or a list (one entry per recurrent node, in node order) of None or (B, state_dim) arrays;
returns ys (B, T, d_out) and the states after the last step.  lanes: lanes per block (time steps x batch
elements processed node by node; 0 = automatic).)doc")
        .def(py::init<const py::list&, index_t, const std::string&>(), py::arg("nodes"), py::arg("output"),
             py::arg("dtype") = "float64")
        .def("run", &PyPlan::run, py::arg("xs"), py::arg("states") = py::none(), py::kw_only(),
             py::arg("num_threads") = 0, py::arg("lanes") = 0)
        .def("shape_for", &PyPlan::shape_for, py::arg("batch"), py::arg("steps"), py::arg("num_threads") = 0,
             py::arg("lanes") = 0, "The batch group, time block and thread count run() would use.")
        .def_property_readonly("dtype", &PyPlan::dtype)
        .def_property_readonly("d_in", &PyPlan::d_in)
        .def_property_readonly("d_out", &PyPlan::d_out)
        .def_property_readonly("arena_rows", &PyPlan::arena_rows,
                               "Rows of the per-thread work area (one row = one value coordinate for a block of lanes).")
        .def_property_readonly("function_sources", &PyPlan::function_sources,
                               "For each elementwise function some node evaluates (tanh, exp, log1p): 'numpy' "
                               "(NumPy's own loop, bit-identical to the numpy backend) or 'libm'.")
        .def_property_readonly("state_dims", &PyPlan::state_dims)
        .def_property_readonly("state_nodes", &PyPlan::state_nodes)
        .def_property_readonly("structure", &PyPlan::structure,
                               "Row classes of every recurrent matrix (as detected and specialised).");
    m.def(
        "cell_kinds",
        [] {
            py::dict out;
            for (const auto& entry : kernel::kind_registry<kernel::CellKind<double>>()) {
                const auto& k = entry.second;
                py::dict d;
                d["gates"] = k.gates;
                d["state_parts"] = k.state_parts;
                d["reads_bias2"] = k.reads_bias2;
                d["has_activation_choice"] = k.has_activation_choice;
                out[py::str(entry.first)] = d;
            }
            return out;
        },
        "The registered recurrent cell kinds (csrc/cells/) and what their descriptors carry.");
    m.def(
        "block_kinds",
        [] {
            py::dict out;
            for (const auto& entry : kernel::kind_registry<kernel::BlockKind<double>>()) {
                const auto& k = entry.second;
                py::dict d;
                py::list sizes, matrices, vectors, numbers;
                for (const char* s : k.sizes) sizes.append(s);
                for (const auto& spec : k.matrices)
                    matrices.append(py::make_tuple(spec.name, spec.rows, spec.cols, spec.optional));
                for (const auto& spec : k.vectors) vectors.append(py::make_tuple(spec.name, spec.length));
                for (const char* s : k.numbers) numbers.append(s);
                d["sizes"] = sizes;
                d["matrices"] = matrices;
                d["vectors"] = vectors;
                d["numbers"] = numbers;
                d["has_activation_choice"] = k.has_activation_choice;
                out[py::str(entry.first)] = d;
            }
            return out;
        },
        "The registered residual block kinds (csrc/blocks/) and the parameters their descriptors carry: sizes, "
        "matrices (name, rows, cols, optional), vectors (name, length), numbers.");
}

}  // namespace binding
}  // namespace lsrl
