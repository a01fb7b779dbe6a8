"""Type stubs for the C++ extension ``lsrl._kernel`` (built from csrc/ by CMakeLists.txt)."""

import numpy as np
import numpy.typing as npt

__version__: str
sanitized: bool

def linear_scan_diag(
    a: npt.NDArray[np.floating], U: npt.NDArray[np.floating], s0: npt.NDArray[np.floating], *, num_threads: int = 0
) -> npt.NDArray[np.floating]: ...
def linear_scan_dense(
    A: npt.NDArray[np.floating], U: npt.NDArray[np.floating], s0: npt.NDArray[np.floating], *, num_threads: int = 0
) -> npt.NDArray[np.floating]: ...
def linear_scan_csr(
    indptr: npt.NDArray[np.integer],
    indices: npt.NDArray[np.integer],
    data: npt.NDArray[np.floating],
    U: npt.NDArray[np.floating],
    s0: npt.NDArray[np.floating],
    *,
    num_threads: int = 0,
) -> npt.NDArray[np.floating]: ...
