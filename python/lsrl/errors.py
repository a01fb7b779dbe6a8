"""Exception types shared by every layer of lsrl."""
from __future__ import annotations

__all__ = ["LsrlError", "ShapeError", "VerifyError", "ParseError", "CompileError", "PassError", "OptionError",
           "AssumptionError", "InputDomainError", "SequenceLengthError", "NumericRangeError",
           "ModelFormatError", "ModelSaveError"]


class LsrlError(Exception):
    """Base class of every error lsrl raises on purpose (user errors, not bugs)."""


class ShapeError(LsrlError, ValueError):
    """A dimension mismatch, raised where the offending op is built (names the op and the shapes)."""


class VerifyError(LsrlError, ValueError):
    """An IR module breaks an invariant (names the op, its SSA name and its source location)."""


class ParseError(LsrlError, ValueError):
    """Malformed IR text; the message carries ``file:line:col`` and a caret line."""

    def __init__(self, message: str, filename: str | None = None, line: int | None = None,
                 col: int | None = None, source_line: str | None = None):
        self.filename, self.line, self.col, self.source_line = filename, line, col, source_line
        self.reason = message
        where = f"{filename or '<string>'}:{line}:{col}: " if line is not None else ""
        text = f"{where}error: {message}"
        if source_line is not None and col is not None:
            text += f"\n{source_line}\n{' ' * (col - 1)}^"
        super().__init__(text)


class CompileError(LsrlError):
    """A program cannot be compiled for the requested target/mode; the message says why."""


class PassError(LsrlError):
    """A pass pipeline is malformed or a pass failed; names the pass."""


class OptionError(LsrlError, ValueError):
    """An option (``t_max``, a bound, a size) is outside its valid range; names the option and the value."""


class AssumptionError(LsrlError, ValueError):
    """A run breaks an assumption the model was compiled under (base of the three errors below)."""


class InputDomainError(AssumptionError):
    """An input value lies outside the declared input bounds; names the batch element, step, feature and bound."""


class SequenceLengthError(AssumptionError):
    """A sequence (or a stream's running length) is longer than the ``t_max`` the model was compiled for."""


class NumericRangeError(AssumptionError):
    """A run left the float range (an output is inf or NaN); names the first such output."""


class ModelFormatError(LsrlError, ValueError):
    """A saved model is malformed, inconsistent or not an lsrl model (names the file and the entry)."""


class ModelSaveError(LsrlError, OSError):
    """A model cannot be written where :meth:`lsrl.Model.save` was asked to write it (names the path)."""


class PrecisionError(LsrlError):
    """A model's outputs are further from its program than the tolerance asked for (:meth:`lsrl.Model.check`
    with ``raise_on_failure=True``); names the dtype, the error and what the program itself reaches in it."""
