"""lsrl: compile LSRL programs to exact recurrent neural networks."""
from . import ir
from .compiler import compile
from .errors import (AssumptionError, CompileError, InputDomainError, LsrlError, ModelFormatError, ModelSaveError,
                     NumericRangeError, OptionError, ParseError, PassError, PrecisionError, SequenceLengthError,
                     ShapeError, VerifyError)
from .lang import *  # noqa: F401,F403  (the language: Input, Linear, LinState, …, ForEach)
from .lang import __all__ as _lang_names
from .model import Model, load
from .sugar import *  # noqa: F401,F403  (f_step, f_larger, f_ifelse, …)
from .sugar import __all__ as _sugar_names
from . import viz  # graphs and weight pictures (matplotlib is imported only when drawing)

__version__ = "0.1.0"

# sub-packages and modules reachable as attributes without importing them first (``lsrl.programs.token_map``);
# imported on first use (PEP 562) so that ``import lsrl`` stays light (experiments pulls in pandas and dask)
_LAZY_SUBMODULES = frozenset({"programs", "opt", "runtime", "passes", "targets", "experiments", "precision",
                              "inspection", "assumptions", "serialization", "demo"})


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'lsrl' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | _LAZY_SUBMODULES)

__all__ = ["ir", "viz", "compile", "Model", "load", "CompileError", "LsrlError", "ParseError", "PassError",
           "ShapeError", "VerifyError", "OptionError", "AssumptionError", "InputDomainError",
           "SequenceLengthError", "NumericRangeError", "PrecisionError", "ModelFormatError", "ModelSaveError", "__version__", *_lang_names,
           *_sugar_names]
