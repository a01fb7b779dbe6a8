"""The linear-scan runtime: C++ kernel vs numpy backend vs a plain per-step loop, plus argument validation.

The scan computes s_t = A s_{t-1} + u_t for t = 0..T-1 from s_{-1} = s0.
"""

from __future__ import annotations

import threading
import zlib
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsrl.runtime import kernel_available, linear_scan, scan_structure
from strategies import profile_examples

K = pytest.importorskip("lsrl._kernel", reason="C++ extension lsrl._kernel is not built")


# --------------------------------------------------------------------------------------------- helpers


def reference_scan(A, U, s0):
    """Plain per-step loop in float64 with a dense A; U (B, T, k), s0 (B, k)."""
    A = np.asarray(A.toarray() if sp.issparse(A) else A, dtype=np.float64)
    U = np.asarray(U, dtype=np.float64)
    B, T, k = U.shape
    S = np.zeros((B, T, k))
    for b in range(B):
        s = np.array(s0[b], dtype=np.float64)
        for t in range(T):
            s = A @ s + U[b, t]
            S[b, t] = s
    return S


def assert_rel_close(x, ref, rel):
    x = np.asarray(x, dtype=np.float64)
    assert x.shape == ref.shape
    scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    err = float(np.max(np.abs(x - ref))) if ref.size else 0.0
    assert err <= rel * scale, f"max abs error {err:.3e} > {rel:.1e} * {scale:.3e}"


def rotation_blocks(rng, nblocks):
    blocks = []
    for _ in range(nblocks):
        th = rng.uniform(0, 2 * np.pi)
        blocks.append(np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]))
    return sp.block_diag(blocks, format="csr")


def shift_matrix(k):
    """Nilpotent down-shift: (A s)_i = s_{i-1}."""
    return sp.diags([np.ones(max(k - 1, 0))], [-1], shape=(k, k), format="csr")


def random_sparse(rng, k, density):
    A = sp.random(k, k, density=density, random_state=rng, format="csr")
    A.data = rng.uniform(-1, 1, A.nnz)
    # keep the recurrence bounded: scale to spectral-norm-ish <= 1
    norm = max(1.0, float(np.abs(A).sum(axis=1).max()))
    return (A / norm).tocsr()


def random_dense(rng, k):
    A = rng.standard_normal((k, k))
    return A / max(1.0, np.linalg.norm(A, 2))


def make_matrices(rng):
    """(name, A, expected kernel structure) covering every path."""
    k = 6
    cases = [
        ("diag", sp.diags(rng.uniform(-1, 1, k), format="csr"), "diag"),
        ("diag-dense-input", np.diag(rng.uniform(-1, 1, k)), "diag"),
        ("diag-with-zeros", sp.diags([0.5, 0.0, -1.0, 1.0, 0.0, 0.25], format="dia"), "diag"),
        ("dense-small", random_dense(rng, 5), "dense"),
        ("rotations-2x2", rotation_blocks(rng, 3), "dense"),
        ("rotations-2x2-large", rotation_blocks(rng, 40), "csr"),
        ("shift", shift_matrix(7), "dense"),
        ("shift-large", shift_matrix(50), "csr"),
        ("sparse-large", random_sparse(rng, 60, 0.05), "csr"),
        ("dense-large", random_dense(rng, 40), "dense"),
    ]
    return cases


ALL_CASES = make_matrices(np.random.default_rng(1234))


def random_inputs(rng, k, B, T, dtype=np.float64):
    U = rng.standard_normal((B, T, k)).astype(dtype)
    s0 = rng.standard_normal((B, k)).astype(dtype)
    return U, s0


# --------------------------------------------------------------------------------------------- agreement


def test_kernel_available():
    assert kernel_available()
    assert K.sanitized in (True, False)


def _spy_on_kernel(monkeypatch) -> list:
    """Record every call of the kernel path (both backends give the same bits, so only a spy can tell)."""
    import lsrl.scan as scan

    calls = []
    real = scan._kernel_scan

    def spy(structure, *args, **kwargs):
        calls.append(structure)
        return real(structure, *args, **kwargs)

    monkeypatch.setattr(scan, "_kernel_scan", spy)
    return calls


def test_auto_backend_uses_kernel(monkeypatch):
    calls = _spy_on_kernel(monkeypatch)
    rng = np.random.default_rng(2)
    A = random_sparse(rng, 20, 0.2)
    U, s0 = random_inputs(rng, 20, 2, 5)
    auto = linear_scan(A, U, s0, backend="auto")
    assert calls == ["csr"]
    assert_rel_close(auto, reference_scan(A, U, s0), 1e-12)
    linear_scan(A, U, s0, backend="numpy")
    assert calls == ["csr"]


def test_interpreter_auto_backend_scans_in_the_kernel(monkeypatch):
    from lsrl.ir import interpret
    from lsrl.programs import more_ones

    calls = _spy_on_kernel(monkeypatch)
    bits = np.array([0, 1, 1, 0, 1], dtype=float)[:, None]
    np.testing.assert_array_equal(interpret(more_ones().ir, bits)[:, 0], [0, 0, 1, 0, 1])
    assert calls


@pytest.mark.parametrize("name,A,expected", ALL_CASES, ids=[c[0] for c in ALL_CASES])
def test_structure_detection(name, A, expected):
    assert scan_structure(A) == expected


@pytest.mark.parametrize("name,A,_expected", ALL_CASES, ids=[c[0] for c in ALL_CASES])
@pytest.mark.parametrize("structure", ["auto", "dense", "csr"])
@pytest.mark.parametrize("B,T", [(1, 1), (1, 17), (3, 25), (5, 0)])
def test_float64_agreement(name, A, _expected, structure, B, T):
    rng = np.random.default_rng(zlib.crc32(f"{name}/{structure}/{B}/{T}".encode()))
    k = A.shape[0]
    U, s0 = random_inputs(rng, k, B, T)
    ref = reference_scan(A, U, s0)
    Sk = linear_scan(A, U, s0, backend="kernel", structure=structure)
    Sn = linear_scan(A, U, s0, backend="numpy", structure=structure)
    assert Sk.dtype == np.float64 and Sn.dtype == np.float64
    assert Sk.shape == U.shape and Sn.shape == U.shape
    assert_rel_close(Sk, ref, 1e-12)
    assert_rel_close(Sn, ref, 1e-12)
    if structure == "csr" or (structure == "auto" and scan_structure(A) != "dense"):
        # same operations in the same order -> identical bits
        np.testing.assert_array_equal(Sk, Sn)


@pytest.mark.parametrize("name,A,_expected", [c for c in ALL_CASES if c[2] == "diag"],
                         ids=[c[0] for c in ALL_CASES if c[2] == "diag"])
def test_diag_path_forced(name, A, _expected):
    rng = np.random.default_rng(7)
    U, s0 = random_inputs(rng, A.shape[0], 4, 30)
    ref = reference_scan(A, U, s0)
    Sk = linear_scan(A, U, s0, structure="diag")
    Sn = linear_scan(A, U, s0, structure="diag", backend="numpy")
    np.testing.assert_array_equal(Sk, Sn)
    assert_rel_close(Sk, ref, 1e-12)


@pytest.mark.parametrize("name,A,_expected", ALL_CASES, ids=[c[0] for c in ALL_CASES])
def test_float32(name, A, _expected):
    rng = np.random.default_rng(99)
    k = A.shape[0]
    U, s0 = random_inputs(rng, k, 3, 20, dtype=np.float32)
    A32 = A.astype(np.float32)
    ref = reference_scan(A32, U, s0)  # float64 loop on the float32 parameters
    Sk = linear_scan(A32, U, s0)
    Sn = linear_scan(A32, U, s0, backend="numpy")
    assert Sk.dtype == np.float32 and Sn.dtype == np.float32
    assert_rel_close(Sk, ref, 2e-5)
    assert_rel_close(Sn, ref, 2e-5)
    if scan_structure(A32) != "dense":
        np.testing.assert_array_equal(Sk, Sn)


def test_dtype_promotion():
    A = np.eye(3, dtype=np.float32) * 0.5
    U32 = np.ones((4, 3), dtype=np.float32)
    assert linear_scan(A, U32, np.zeros(3, np.float32)).dtype == np.float32
    assert linear_scan(A, U32, np.zeros(3)).dtype == np.float64  # mixed -> float64
    assert linear_scan(A, U32.astype(int), None).dtype == np.float64  # ints -> float64
    assert linear_scan(A.astype(np.float64), U32, None, dtype=np.float32).dtype == np.float32


@pytest.mark.parametrize("backend", ["kernel", "numpy"])
def test_exact_small_integers(backend):
    """Shift + integer inputs: every intermediate is a small integer, so float64 is exact."""
    k, T = 5, 12
    A = shift_matrix(k) + 2 * sp.eye(k)  # lower bidiagonal, integer
    rng = np.random.default_rng(3)
    U = rng.integers(-3, 4, size=(2, T, k)).astype(np.float64)
    s0 = rng.integers(-3, 4, size=(2, k)).astype(np.float64)
    Ad = A.toarray()
    S = linear_scan(A, U, s0, backend=backend, structure="csr")
    for b in range(2):
        s = [Fraction(int(v)) for v in s0[b]]
        for t in range(T):
            s = [sum(Fraction(int(Ad[i, j])) * s[j] for j in range(k)) + Fraction(int(U[b, t, i]))
                 for i in range(k)]
            assert [Fraction(float(v)) for v in S[b, t]] == s


def test_nilpotent_shift_forgets():
    """After k steps of the shift, s0 has left the state entirely."""
    k = 4
    A = shift_matrix(k)
    U = np.zeros((2 * k, k))
    S = linear_scan(A, U, np.arange(1.0, k + 1))
    assert np.all(S[k - 1:] == 0)
    np.testing.assert_array_equal(S[0], [0, 1, 2, 3])


def test_rotation_preserves_norm():
    rng = np.random.default_rng(5)
    A = rotation_blocks(rng, 8)
    s0 = rng.standard_normal(16)
    S = linear_scan(A, np.zeros((500, 16)), s0, structure="csr")
    norms = np.linalg.norm(S.reshape(500, 8, 2), axis=2)
    np.testing.assert_allclose(norms, np.broadcast_to(np.linalg.norm(s0.reshape(8, 2), axis=1), (500, 8)),
                               rtol=1e-12)


@pytest.mark.parametrize("backend", ["kernel", "numpy"])
@pytest.mark.parametrize("structure", ["auto", "diag", "dense", "csr"])
def test_empty_shapes(backend, structure):
    # k = 0
    S = linear_scan(np.zeros((0, 0)), np.zeros((3, 0)), np.zeros(0), backend=backend, structure=structure)
    assert S.shape == (3, 0)
    S = linear_scan(sp.csr_matrix((0, 0)), np.zeros((2, 3, 0)), None, backend=backend, structure=structure)
    assert S.shape == (2, 3, 0)
    # T = 0
    A = np.eye(3) * 0.5
    S = linear_scan(A, np.zeros((0, 3)), np.ones(3), backend=backend, structure=structure)
    assert S.shape == (0, 3)
    # B = 0
    S = linear_scan(A, np.zeros((0, 4, 3)), np.zeros((0, 3)), backend=backend, structure=structure)
    assert S.shape == (0, 4, 3)


@pytest.mark.parametrize("backend", ["kernel", "numpy"])
def test_input_layouts(backend):
    rng = np.random.default_rng(11)
    A = random_sparse(rng, 30, 0.1)
    U = rng.standard_normal((3, 10, 30))
    s0 = rng.standard_normal(30)
    full = linear_scan(A, U, s0, backend=backend)
    # (k,) s0 is shared by the batch
    np.testing.assert_array_equal(full, linear_scan(A, U, np.tile(s0, (3, 1)), backend=backend))
    # 2-D U gives 2-D output equal to the batched row
    np.testing.assert_array_equal(linear_scan(A, U[1], s0, backend=backend), full[1])
    # None s0 == zeros
    np.testing.assert_array_equal(linear_scan(A, U, None, backend=backend),
                                  linear_scan(A, U, np.zeros(30), backend=backend))
    # every scipy format and sparse arrays give the same result
    for fmt in ("csr", "csc", "coo", "lil", "dok", "bsr", "dia"):
        np.testing.assert_array_equal(linear_scan(A.asformat(fmt), U, s0, backend=backend), full)
    np.testing.assert_array_equal(linear_scan(sp.csr_array(A), U, s0, backend=backend), full)
    # non-contiguous / Fortran / big-endian inputs
    Ubig = np.zeros((3, 20, 30))
    Ubig[:, ::2] = U
    np.testing.assert_array_equal(linear_scan(A, Ubig[:, ::2], s0, backend=backend), full)
    np.testing.assert_array_equal(linear_scan(A, np.asfortranarray(U), s0, backend=backend), full)
    np.testing.assert_array_equal(linear_scan(A, U.astype(">f8"), s0, backend=backend), full)
    # lists
    np.testing.assert_array_equal(
        linear_scan(A.toarray().tolist(), U.tolist(), s0.tolist(), backend=backend, structure="csr"), full)


def test_threads_bitwise_identical():
    rng = np.random.default_rng(21)
    A = random_sparse(rng, 64, 0.1)
    U, s0 = random_inputs(rng, 64, 9, 200)
    one = linear_scan(A, U, s0, num_threads=1)
    for n in (0, 2, 3, 16):
        np.testing.assert_array_equal(linear_scan(A, U, s0, num_threads=n), one)
    Ad = random_dense(rng, 64)
    np.testing.assert_array_equal(linear_scan(Ad, U, s0, num_threads=1), linear_scan(Ad, U, s0, num_threads=4))
    a = rng.uniform(-1, 1, 64)
    np.testing.assert_array_equal(K.linear_scan_diag(a, U, s0, num_threads=1),
                                  K.linear_scan_diag(a, U, s0, num_threads=5))


def test_python_threads_concurrently():
    """The kernel releases the GIL; concurrent calls from Python threads must be safe and correct."""
    rng = np.random.default_rng(8)
    A = random_sparse(rng, 50, 0.1)
    U, s0 = random_inputs(rng, 50, 4, 300)
    expected = linear_scan(A, U, s0)
    results, errors = [None] * 6, []

    def work(i):
        try:
            results[i] = linear_scan(A, U, s0, num_threads=2)
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for r in results:
        np.testing.assert_array_equal(r, expected)


def test_nonfinite_inputs_propagate():
    A = np.eye(2) * 0.5
    U = np.zeros((3, 2))
    U[1, 0] = np.nan
    for backend in ("kernel", "numpy"):
        S = linear_scan(A, U, np.zeros(2), backend=backend)
        assert np.isnan(S[1:, 0]).all() and np.all(S[:, 1] == 0)


@pytest.mark.parametrize("backend", ["kernel", "numpy"])
def test_inputs_past_the_dtypes_range_are_refused(backend):
    # they became inf with only a RuntimeWarning
    with pytest.raises(ValueError, match="U has values beyond float32's range"):
        linear_scan(np.eye(2), np.full((3, 2), 1e39), dtype="float32", backend=backend)
    with pytest.raises(ValueError, match="s0 has values beyond float32's range"):
        linear_scan(np.eye(2), np.ones((3, 2)), np.array([1e39, 0.0]), dtype="float32", backend=backend)
    for structure in ("diag", "dense", "csr"):  # A too: the kernel said its (finite) diagonal had an inf
        with pytest.raises(ValueError, match="A has values beyond float32's range"):
            linear_scan(np.array([[1e39, 0.0], [0.0, 0.5]]), np.ones((3, 2)), dtype="float32", backend=backend,
                        structure=structure)
        with pytest.raises(ValueError, match="A has values beyond float32's range"):
            linear_scan(sp.csr_matrix(np.array([[1e39, 0.0], [0.0, 0.5]])), np.ones((3, 2)), dtype="float32",
                        backend=backend, structure=structure)
    S = linear_scan(np.eye(2), np.array([[np.inf, 1.0]]), dtype="float32", backend=backend)  # an inf stays one
    assert np.isinf(S[0, 0]) and S[0, 1] == 1


def test_kernel_direct_csr_unsorted_and_duplicates():
    # row 0: columns 1, 0, 1 (unsorted, duplicate) -> A[0] = [2, 3+4]
    indptr = np.array([0, 3, 4], dtype=np.int32)
    indices = np.array([1, 0, 1, 0], dtype=np.int64)
    data = np.array([3.0, 2.0, 4.0, 1.0])
    U = np.zeros((1, 2, 2))
    s0 = np.array([[1.0, 1.0]])
    S = K.linear_scan_csr(indptr, indices, data, U, s0)
    np.testing.assert_array_equal(S[0, 0], [9.0, 1.0])
    np.testing.assert_array_equal(S[0, 1], [2 * 9.0 + 7 * 1.0, 9.0])


def test_missing_kernel(monkeypatch):
    import lsrl.scan as scan_mod

    monkeypatch.setattr(scan_mod, "_KERNEL_TRIED", True)
    monkeypatch.setattr(scan_mod, "_KERNEL", None)
    monkeypatch.setattr(scan_mod, "_KERNEL_ERROR", ImportError("simulated"))
    assert not kernel_available()
    A = np.eye(2) * 0.5
    U = np.ones((3, 2))
    with pytest.raises(RuntimeError, match="lsrl._kernel is not available"):
        linear_scan(A, U, None, backend="kernel")
    np.testing.assert_array_equal(linear_scan(A, U, None, backend="auto"), linear_scan(A, U, None, backend="numpy"))


# --------------------------------------------------------------------------------------------- errors (kernel)


def _ok_args(k=3, B=2, T=4, dtype=np.float64):
    A = sp.random(k, k, density=0.5, random_state=0, format="csr").astype(dtype)
    U = np.ones((B, T, k), dtype=dtype)
    s0 = np.zeros((B, k), dtype=dtype)
    return A, U, s0


def test_kernel_rejects_wrong_dtypes():
    A, U, s0 = _ok_args()
    a = np.ones(3)
    with pytest.raises(TypeError, match="U must have dtype float64 or float32"):
        K.linear_scan_diag(a, U.astype(np.int64), s0)
    with pytest.raises(TypeError, match="dtype mismatch"):
        K.linear_scan_diag(a, U.astype(np.float32), s0)
    with pytest.raises(TypeError, match="dtype mismatch"):
        K.linear_scan_dense(A.toarray().astype(np.float32), U, s0)
    with pytest.raises(TypeError, match="float64 or float32"):
        K.linear_scan_dense(A.toarray(), U.astype(np.float16), s0.astype(np.float16))
    with pytest.raises(TypeError, match="float64 or float32"):
        K.linear_scan_dense(A.toarray().astype(np.complex128), U, s0)
    with pytest.raises(TypeError, match="native byte order"):
        K.linear_scan_diag(a, U.astype(">f8"), s0)
    with pytest.raises(TypeError, match="must be a numpy.ndarray"):
        K.linear_scan_diag([1.0, 1.0, 1.0], U, s0)
    with pytest.raises(TypeError, match="dtype mismatch"):
        K.linear_scan_csr(A.indptr, A.indices, A.data.astype(np.float32), U, s0)
    with pytest.raises(TypeError, match="indices must have an integer dtype"):
        K.linear_scan_csr(A.indptr, A.indices.astype(np.float64), A.data, U, s0)
    with pytest.raises(TypeError, match="indptr must have an integer dtype"):
        K.linear_scan_csr(A.indptr.astype(bool), A.indices, A.data, U, s0)
    with pytest.raises(TypeError):
        K.linear_scan_diag(a, U, None)


def test_kernel_rejects_wrong_shapes():
    A, U, s0 = _ok_args()
    Ad = A.toarray()
    with pytest.raises(ValueError, match=r"U must be 3-D"):
        K.linear_scan_dense(Ad, U[0], s0)
    with pytest.raises(ValueError, match=r"s0 must be 2-D"):
        K.linear_scan_dense(Ad, U, s0[0])
    with pytest.raises(ValueError, match=r"s0 has shape \(3, 3\) but U has shape \(2, 4, 3\)"):
        K.linear_scan_dense(Ad, U, np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"U has shape \(2, 4, 3\) \(k = 3\) but A of shape \(4, 4\)"):
        K.linear_scan_dense(np.eye(4), U, s0)
    with pytest.raises(ValueError, match="square"):
        K.linear_scan_dense(np.ones((3, 4)), U, s0)
    with pytest.raises(ValueError, match=r"a must be 1-D"):
        K.linear_scan_diag(Ad, U, s0)
    with pytest.raises(ValueError, match=r"implies k = 2"):
        K.linear_scan_diag(np.ones(2), U, s0)
    with pytest.raises(ValueError, match="num_threads"):
        K.linear_scan_diag(np.ones(3), U, s0, num_threads=-1)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda ip, ix, d: (ip[:-1], ix, d), r"implies k = 2"),
        (lambda ip, ix, d: (np.zeros(0, np.int32), ix, d), r"k \+ 1 >= 1"),
        (lambda ip, ix, d: (ip + 1, ix, d), r"indptr\[0\] must be 0"),
        (lambda ip, ix, d: (np.array([0, 3, 1, 4]), np.zeros(4, np.int32), np.ones(4)), "non-decreasing"),
        (lambda ip, ix, d: (np.array([0, 1, 2, 9]), ix, d), r"must equal len\(indices\)"),
        (lambda ip, ix, d: (ip, ix[:-1], d), "same length"),
        (lambda ip, ix, d: (ip, np.where(np.arange(ix.size) == 0, 3, ix), d), r"indices\[0\] = 3 is out of range"),
        (lambda ip, ix, d: (ip, np.where(np.arange(ix.size) == 1, -1, ix), d), r"indices\[1\] = -1 is out of range"),
        (lambda ip, ix, d: (ip, ix.astype(np.uint64) + np.uint64(2**63), d), "out of range"),
        (lambda ip, ix, d: (ip.reshape(1, -1), ix, d), "indptr must be 1-D"),
        (lambda ip, ix, d: (ip, ix, d.reshape(1, -1)), "data must be 1-D"),
        (lambda ip, ix, d: (ip, ix, np.where(np.arange(d.size) == 0, np.nan, d)), "data .* must be finite"),
        (lambda ip, ix, d: (ip, ix, np.where(np.arange(d.size) == 1, -np.inf, d)), "must be finite"),
    ],
)
def test_kernel_rejects_bad_csr(mutate, match):
    indptr = np.array([0, 1, 3, 4], dtype=np.int32)
    indices = np.array([2, 0, 1, 1], dtype=np.int32)
    data = np.array([1.0, 2.0, 3.0, 4.0])
    U = np.ones((2, 4, 3))
    s0 = np.zeros((2, 3))
    ip, ix, d = mutate(indptr, indices, data)
    with pytest.raises(ValueError, match=match):
        K.linear_scan_csr(ip, ix, d, U, s0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_kernel_rejects_nonfinite_parameters(bad):
    U = np.ones((1, 2, 3))
    s0 = np.zeros((1, 3))
    A = np.eye(3)
    A[1, 2] = bad
    with pytest.raises(ValueError, match="A must be finite"):
        K.linear_scan_dense(A, U, s0)
    a = np.ones(3)
    a[0] = bad
    with pytest.raises(ValueError, match="must be finite"):
        K.linear_scan_diag(a, U, s0)
    with pytest.raises(ValueError, match="must be finite"):
        K.linear_scan_diag(a.astype(np.float32), U.astype(np.float32), s0.astype(np.float32))


# --------------------------------------------------------------------------------------------- errors (runtime)


@pytest.mark.parametrize("backend", ["kernel", "numpy"])
def test_runtime_errors(backend):
    A, U, s0 = _ok_args()
    with pytest.raises(ValueError, match=r"square \(k, k\)"):
        linear_scan(np.ones((3, 4)), U, s0, backend=backend)
    with pytest.raises(ValueError, match=r"square \(k, k\)"):
        linear_scan(np.ones(3), U, s0, backend=backend)
    with pytest.raises(ValueError, match=r"U must have shape \(T, k\) or \(B, T, k\)"):
        linear_scan(A, np.ones(3), s0, backend=backend)
    with pytest.raises(ValueError, match=r"U has shape \(2, 4, 5\)"):
        linear_scan(A, np.ones((2, 4, 5)), s0, backend=backend)
    with pytest.raises(ValueError, match=r"s0 has shape \(4,\)"):
        linear_scan(A, U, np.zeros(4), backend=backend)
    with pytest.raises(ValueError, match=r"s0 has shape \(3, 3\)"):
        linear_scan(A, U, np.zeros((3, 3)), backend=backend)
    with pytest.raises(ValueError, match=r"one sequence"):
        linear_scan(A, U[0], s0, backend=backend)
    with pytest.raises(ValueError, match="s0 must have shape"):
        linear_scan(A, U, np.zeros((1, 2, 3)), backend=backend)
    with pytest.raises(TypeError, match="real"):
        linear_scan(A.astype(np.complex128), U, s0, backend=backend)
    with pytest.raises(TypeError, match="real"):
        linear_scan(A, U.astype(np.complex128), s0, backend=backend)
    with pytest.raises(TypeError, match="numeric"):
        linear_scan(A, np.array([["a"]]), None, backend=backend)
    with pytest.raises(TypeError, match="dtype must be float64 or float32"):
        linear_scan(A, U, s0, backend=backend, dtype=np.int32)
    with pytest.raises(ValueError, match="structure must be one of"):
        linear_scan(A, U, s0, backend=backend, structure="banded")
    with pytest.raises(ValueError, match="off-diagonal"):
        linear_scan(A + sp.eye(3, k=1), U, s0, backend=backend, structure="diag")
    with pytest.raises(ValueError, match="off-diagonal"):
        linear_scan(np.ones((3, 3)), U, s0, backend=backend, structure="diag")
    with pytest.raises(ValueError, match="num_threads"):
        linear_scan(A, U, s0, backend=backend, num_threads=-2)
    with pytest.raises(TypeError):
        linear_scan(None, U, s0, backend=backend)
    with pytest.raises(ValueError, match="backend must be one of"):
        linear_scan(A, U, s0, backend="cuda")


@pytest.mark.parametrize("backend", ["kernel", "numpy"])
@pytest.mark.parametrize("structure", ["auto", "diag", "dense", "csr"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("sparse", [False, True])
def test_runtime_rejects_nonfinite_A(backend, structure, bad, sparse):
    A = np.eye(3) * 0.5
    A[1, 1] = bad
    if sparse:
        A = sp.csr_matrix(A)
    with pytest.raises(ValueError, match="A must be finite"):
        linear_scan(A, np.ones((2, 4, 3)), None, backend=backend, structure=structure)


# --------------------------------------------------------------------------------------------- fuzz


@settings(max_examples=profile_examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    k=st.integers(0, 5),
    nnz=st.integers(0, 8),
    B=st.integers(0, 3),
    T=st.integers(0, 4),
    indptr=st.lists(st.integers(-3, 10), min_size=0, max_size=8),
    indices=st.lists(st.integers(-2, 7), min_size=0, max_size=8),
    valid=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fuzz_kernel_csr_never_crashes(k, nnz, B, T, indptr, indices, valid, seed):
    """Arbitrary (mostly invalid) CSR triples: either a ValueError or the right answer."""
    rng = np.random.default_rng(seed)
    if valid:
        A = sp.random(k, k, density=min(1.0, nnz / max(1, k * k)), random_state=rng, format="csr") if k else \
            sp.csr_matrix((0, 0))
        ip, ix, d = A.indptr, A.indices, A.data
    else:
        ip = np.array(indptr, dtype=np.int64)
        ix = np.array(indices, dtype=np.int64)
        d = rng.standard_normal(len(indices))
    U = rng.standard_normal((B, T, k))
    s0 = rng.standard_normal((B, k))
    try:
        S = K.linear_scan_csr(ip, ix, d, U, s0)
    except ValueError:
        assert not valid
        return
    Ad = sp.csr_matrix((d, ix, ip), shape=(k, k)).toarray()
    assert_rel_close(S, reference_scan(Ad, U, s0), 1e-12)
