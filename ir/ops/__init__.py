"""The built-in op set. Importing this package registers every op once; see `registry` for the machinery."""

from . import bits, elementwise, layout, nn, quantized, reduce, sampling, scatter  # noqa: F401  (registration)
from .registry import (REQUIRED, Attr, ConcreteType, OpDef, OpRef, ShapeError, get_op, op_names, ops_with, register_op,
                       registered_ops, same_as_input)
from .layout import SLICE_END
from .traits import AxisRef, Tie, Trait, dim_flow

__all__ = [
    "Attr",
    "AxisRef",
    "OpRef",
    "SLICE_END",
    "Tie",
    "Trait",
    "dim_flow",
    "op_names",
    "ops_with",
    "ConcreteType",
    "OpDef",
    "REQUIRED",
    "ShapeError",
    "get_op",
    "register_op",
    "registered_ops",
    "same_as_input",
]
