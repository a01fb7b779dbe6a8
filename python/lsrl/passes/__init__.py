"""Pass infrastructure: the :class:`Pass` base class, the registry and the pipeline parser.

A pass is a ``@dataclass`` subclass of :class:`Pass` registered with :func:`register_pass`; its dataclass
fields are its options (``bool``, ``int``, ``float``, ``str``, ``X | None`` or ``Literal[...]``, each with a
default).  A pipeline is text such as ``"canonicalize{use_ranges=true},cse,dce"`` and
:func:`parse_pipeline` turns it into configured pass instances.  Running pipelines (verification,
IR dumps, timing, checking mode) is :mod:`lsrl.opt`'s job.
"""
from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from typing import ClassVar, Literal

from ..errors import PassError

__all__ = ["Pass", "PASSES", "PassOption", "register_pass", "parse_pipeline", "pass_options", "get_pass",
           "format_pipeline", "load_passes", "forget_analyses", "PassError"]

#: the metadata keys passes record about a module's ops (``range-analysis``, ``error-bound``; ``materialize-steps``'
#: step differences, which ``separate-large-terms`` reads)
ANALYSIS_KEYS = ("ranges", "error_bound", "step_differences")


def forget_analyses(module) -> None:
    """Drop what analyses recorded about ``module``'s ops: a pass that changed the ops made it stale."""
    for key in ANALYSIS_KEYS:
        module.metadata.pop(key, None)


class Pass:
    """Base class of every pass.

    Subclasses are dataclasses whose fields are the pass options, and set the class variables ``name``
    (the pipeline name, e.g. ``"canonicalize"``) and ``summary`` (one line).  :meth:`run` either mutates
    the module in place and returns ``None`` or returns a new :class:`~lsrl.ir.Module`.  A pass must
    preserve the module's input→output map (exactly for exact constants, within rounding for floats);
    :func:`lsrl.opt.run` clones the caller's module first, so passes may mutate freely.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def run(self, module):  # pragma: no cover - abstract
        raise NotImplementedError(f"pass {self.name!r} does not implement run()")

    def options(self) -> dict:
        """Current option values, by option name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} \
            if dataclasses.is_dataclass(self) else {}

    def pipeline_text(self, *, all_options: bool = False) -> str:
        """This pass as pipeline text; options equal to their default are left out unless ``all_options``."""
        parts = []
        for opt in pass_options(type(self)):
            value = getattr(self, opt.name)
            if all_options or value != opt.default:
                parts.append(f"{opt.name}={_format_value(value)}")
        return self.name + ("{" + ",".join(parts) + "}" if parts else "")

    def __str__(self) -> str:
        return self.pipeline_text()


PASSES: dict[str, type[Pass]] = {}


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Class decorator adding a pass to :data:`PASSES` (makes it a dataclass if it is not one yet)."""
    if not (isinstance(cls, type) and issubclass(cls, Pass)):
        raise TypeError(f"register_pass expects a subclass of lsrl.passes.Pass, got {cls!r}")
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name:
        raise TypeError(f"pass class {cls.__qualname__} must set a non-empty class variable 'name'")
    if not cls.__dict__.get("summary"):
        raise TypeError(f"pass {name!r} ({cls.__qualname__}) must set a one-line class variable 'summary'")
    existing = PASSES.get(name)
    if existing is not None and existing is not cls:
        if (existing.__module__, existing.__qualname__) == (cls.__module__, cls.__qualname__):
            pass  # the defining module was reloaded (e.g. importlib.reload in tests); the new class wins
        else:
            raise ValueError(f"pass name {name!r} registered twice: by {existing.__module__}.{existing.__qualname__}"
                             f" and by {cls.__module__}.{cls.__qualname__}")
    if not dataclasses.is_dataclass(cls) or "__dataclass_fields__" not in cls.__dict__:
        cls = dataclasses.dataclass(cls)
    _options_of(cls)  # fail at import time, not when a user first names the option
    PASSES[name] = cls
    return cls


# ---------------------------------------------------------------------------- options

@dataclasses.dataclass(frozen=True)
class PassOption:
    """One option of a pass: its name, a printable type (``bool``, ``int``, ``float``, ``str``,
    ``int | None``, ``'a' | 'b'``), the default value and the help text (``metadata={"help": ...}`` on the
    dataclass field)."""
    name: str
    type: str
    default: object
    help: str = ""
    # how text is converted: ("bool"|"int"|"float"|"str", nullable, choices or None)
    _convert: tuple = dataclasses.field(default=(), repr=False, compare=False)


_SCALARS = {bool: "bool", int: "int", float: "float", str: "str"}


def _classify(hint, where: str) -> tuple[str, bool, tuple | None, str]:
    """``(base, nullable, choices, printable)`` for a field type."""
    nullable = False
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(hint))
        if len(args) != 1:
            raise TypeError(f"{where}: option type {hint!r} is not supported (use one of bool/int/float/str, "
                            "optionally '| None', or a Literal)")
        hint = args[0]
        origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if not choices or not all(isinstance(c, str) for c in choices):
            raise TypeError(f"{where}: Literal options must list strings, got {choices!r}")
        printable = " | ".join(repr(c) for c in choices)
        return "str", nullable, tuple(choices), printable + (" | None" if nullable else "")
    if hint not in _SCALARS:
        raise TypeError(f"{where}: option type {hint!r} is not supported (use one of bool/int/float/str, "
                        "optionally '| None', or a Literal)")
    base = _SCALARS[hint]
    return base, nullable, None, base + (" | None" if nullable else "")


def _options_of(cls: type[Pass]) -> list[PassOption]:
    cached = cls.__dict__.get("_lsrl_options")
    if cached is not None:
        return cached
    try:
        hints = typing.get_type_hints(cls)
    except Exception as e:  # noqa: BLE001 - an unresolvable annotation is a bug in the pass
        raise TypeError(f"pass {cls.name!r}: cannot resolve option types: {e}") from e
    out = []
    for f in dataclasses.fields(cls):
        where = f"pass {cls.name!r} option {f.name!r}"
        base, nullable, choices, printable = _classify(hints[f.name], where)
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            raise TypeError(f"{where} needs a default value")
        out.append(PassOption(f.name, printable, default, str(f.metadata.get("help", "")),
                              (base, nullable, choices)))
    setattr(cls, "_lsrl_options", out)
    return out


def pass_options(cls_or_pass) -> list[PassOption]:
    """The options of a pass class (or instance), in declaration order."""
    cls = cls_or_pass if isinstance(cls_or_pass, type) else type(cls_or_pass)
    return list(_options_of(cls))


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _convert(opt: PassOption, text: str):
    """Convert option text to the option's type; raise ValueError with a reason."""
    base, nullable, choices = opt._convert
    if nullable and text.lower() in ("none", "null"):
        return None
    if base == "bool":
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"expected a boolean (true/false), got {text!r}")
    if base == "int":
        try:
            return int(text, 0)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
    if base == "float":
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
    if choices is not None and text not in choices:
        raise ValueError(f"expected one of {', '.join(choices)}, got {text!r}")
    return text


def _format_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    text = str(value)
    if any(c in text for c in ",{}= \t\"") or text == "":
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


# ---------------------------------------------------------------------------- loading

# Modules defining the built-in passes.  A new pass module must be listed here (docs/passes.md).
_BUILTIN_PASS_MODULES = (
    "lsrl.passes.canonicalize",
    "lsrl.passes.constant_fold",
    "lsrl.passes.cse",
    "lsrl.passes.dce",
    "lsrl.passes.fuse_linears",
    "lsrl.passes.materialize_steps",
    "lsrl.passes.separate_large_terms",
    "lsrl.passes.range_analysis",
    "lsrl.passes.error_bound",
    "lsrl.passes.debranch",
    "lsrl.passes.rescale_units",
    "lsrl.passes.lower",
    "lsrl.passes.round_to_float",
)
_loaded = False


def load_passes() -> dict[str, type[Pass]]:
    """Import every built-in pass module (once) and return :data:`PASSES`."""
    global _loaded
    if not _loaded:
        for mod in _BUILTIN_PASS_MODULES:
            importlib.import_module(mod)  # every built-in pass module exists: a failure is a real error
        _loaded = True
    return PASSES


def get_pass(name: str) -> type[Pass]:
    load_passes()
    try:
        return PASSES[name]
    except KeyError:
        raise PassError(f"unknown pass {name!r}; known passes: {', '.join(sorted(PASSES))}") from None


# ---------------------------------------------------------------------------- pipeline text

class _PipelineSyntaxError(Exception):
    def __init__(self, message: str, pos: int):
        super().__init__(message)
        self.message, self.pos = message, pos


def _pipeline_error(text: str, message: str, pos: int) -> PassError:
    pos = max(0, min(pos, len(text)))
    return PassError(f"pipeline:1:{pos + 1}: error: {message}\n  {text}\n  {' ' * pos}^")


class _Scanner:
    def __init__(self, text: str):
        self.text, self.pos = text, 0

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip_ws()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, ch: str, what: str) -> None:
        if self.peek() != ch:
            found = repr(self.text[self.pos]) if self.pos < len(self.text) else "end of pipeline"
            raise _PipelineSyntaxError(f"expected {what}, found {found}", self.pos)
        self.pos += 1

    def ident(self, what: str) -> tuple[str, int]:
        self.skip_ws()
        start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos].isalnum() or self.text[self.pos] in "-_."):
            self.pos += 1
        if self.pos == start:
            found = repr(self.text[self.pos]) if self.pos < len(self.text) else "end of pipeline"
            raise _PipelineSyntaxError(f"expected {what}, found {found}", start)
        return self.text[start:self.pos], start

    def value(self) -> tuple[str, int]:
        """An option value: a double-quoted string, or everything up to ``,`` / ``}`` (nested braces kept)."""
        self.skip_ws()
        start = self.pos
        if self.pos < len(self.text) and self.text[self.pos] == '"':
            self.pos += 1
            out = []
            while self.pos < len(self.text) and self.text[self.pos] != '"':
                if self.text[self.pos] == "\\" and self.pos + 1 < len(self.text):
                    self.pos += 1
                out.append(self.text[self.pos])
                self.pos += 1
            if self.pos >= len(self.text):
                raise _PipelineSyntaxError("unterminated string", start)
            self.pos += 1
            return "".join(out), start
        depth = 0
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch in ",}" and depth == 0:
                break
            depth += ch == "{"
            depth -= ch == "}"
            self.pos += 1
        raw = self.text[start:self.pos].strip()
        if not raw:
            raise _PipelineSyntaxError("expected an option value", start)
        return raw, start


def parse_pipeline(text: str) -> list[Pass]:
    """Parse ``"a,b{k=v,k2=v2},c"`` into configured pass instances.

    Option names may be written with ``_`` or ``-``; values are converted to the option's type.  Errors are
    :class:`PassError` naming the pass/option, with the column and a caret under the offending text.
    An empty pipeline is an empty list.
    """
    load_passes()
    sc = _Scanner(text)
    out: list[Pass] = []
    if sc.peek() == "":
        return out
    try:
        while True:
            name, name_pos = sc.ident("a pass name")
            cls = PASSES.get(name)
            if cls is None:
                raise _PipelineSyntaxError(f"unknown pass {name!r}; known passes: {', '.join(sorted(PASSES))}",
                                           name_pos)
            known = {o.name: o for o in _options_of(cls)}
            values: dict = {}
            if sc.peek() == "{":
                sc.pos += 1
                if sc.peek() == "}":
                    sc.pos += 1
                else:
                    while True:
                        key, key_pos = sc.ident(f"an option name of pass {name!r}")
                        opt = known.get(key) or known.get(key.replace("-", "_"))
                        if opt is None:
                            listed = ", ".join(f"{o.name}: {o.type}" for o in known.values()) or "none"
                            raise _PipelineSyntaxError(f"pass {name!r} has no option {key!r} (options: {listed})",
                                                       key_pos)
                        if opt.name in values:
                            raise _PipelineSyntaxError(f"pass {name!r}: option {key!r} given twice", key_pos)
                        sc.expect("=", f"'=' after option {key!r} of pass {name!r}")
                        raw, raw_pos = sc.value()
                        try:
                            values[opt.name] = _convert(opt, raw)
                        except ValueError as e:
                            raise _PipelineSyntaxError(f"pass {name!r} option {opt.name!r} ({opt.type}): {e}",
                                                       raw_pos) from None
                        if sc.peek() == ",":
                            sc.pos += 1
                            continue
                        sc.expect("}", f"',' or '}}' in the options of pass {name!r}")
                        break
            try:
                out.append(cls(**values))
            except (TypeError, ValueError) as e:
                raise _PipelineSyntaxError(f"pass {name!r}: {e}", name_pos) from None
            nxt = sc.peek()
            if nxt == "":
                return out
            sc.expect(",", "',' between passes")
            if sc.peek() == "":
                raise _PipelineSyntaxError("expected a pass name after ','", sc.pos)
    except _PipelineSyntaxError as e:
        raise _pipeline_error(text, e.message, e.pos) from None


def format_pipeline(passes: list[Pass]) -> str:
    """The pipeline text of configured passes (inverse of :func:`parse_pipeline`)."""
    return ",".join(p.pipeline_text() for p in passes)
