"""The LSRL intermediate representation: SSA ops in one block, verifier, printer, parser, interpreter."""
from ..errors import ParseError, VerifyError
from .core import OPS, AttrSpec, Location, Module, Op, OpDef, register_op
from .matrix import Matrix, Vector
from .printer import print_module
from .parser import parse
from .interpreter import interpret

__all__ = ["Module", "Op", "OpDef", "OPS", "AttrSpec", "Location", "register_op", "Matrix", "Vector",
           "print_module", "parse", "interpret", "VerifyError", "ParseError"]
