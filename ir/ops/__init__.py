"""The built-in op set. Importing this package registers every op once; see `registry` for the machinery."""

from . import bits, elementwise, layout, nn, reduce, sampling, scatter  # noqa: F401  (registration)
from .registry import REQUIRED, Attr, ConcreteType, OpDef, ShapeError, get_op, register_op, registered_ops, same_as_input

__all__ = [
    "Attr",
    "ConcreteType",
    "OpDef",
    "REQUIRED",
    "ShapeError",
    "get_op",
    "register_op",
    "registered_ops",
    "same_as_input",
]
