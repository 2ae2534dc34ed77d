"""Tensor types: a dtype and a shape whose dims are ints, symbols (`batch`, `seq`) or expressions (`batch*seq`).

A symbol is a plain identifier string; the same name means the same size everywhere in a graph, so symbols
flow through shape inference and are bound to ints when the graph runs. Expressions over symbols (see
`graphopt.ir.symbolic`) are kept in canonical form, so equal dims compare equal as strings.

>>> from graphopt.ir import TensorType, DType
>>> t = TensorType(DType.F32, ("batch", 128, 384))
>>> str(t), t.rank, t.is_static
('f32[batch,128,384]', 3, False)
>>> t.numel({"batch": 2})
98304
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .dtypes import DType
from .symbolic import IDENT_RE as SYMBOL_RE
from .symbolic import Dim, canon, evaluate, free_symbols, is_symbol

__all__ = ["Dim", "Shape", "TensorType", "is_symbol", "resolve_shape", "SYMBOL_RE"]

Shape = tuple[Dim, ...]


_CANONICAL: set[str] = set()  # dim strings already seen in canonical form: TensorType skips re-checking them


def _check_dim(dim: object) -> Dim:
    if isinstance(dim, bool):
        raise TypeError(f"a dim must be an int or a symbol name, got {dim!r}")
    if isinstance(dim, int):
        if dim < 0:
            raise ValueError(f"a dim must be >= 0, got {dim}")
        return dim
    if hasattr(dim, "__index__"):  # numpy integers
        return _check_dim(int(dim))  # type: ignore[call-overload]
    if isinstance(dim, str):
        try:
            out = canon(dim)
        except ValueError as e:
            raise TypeError(f"a dim must be an int, a symbol like 'batch' or an expression like 'batch*seq': {e}") from None
        if out == dim and len(_CANONICAL) < 1 << 16:
            _CANONICAL.add(dim)
        return out
    raise TypeError(f"a dim must be an int, a symbol like 'batch' or an expression like 'batch*seq', got {dim!r}")


@dataclass(frozen=True)
class TensorType:
    """The static type of a Value. Immutable and hashable."""

    dtype: DType
    shape: Shape

    def __post_init__(self) -> None:
        if not isinstance(self.dtype, DType):
            raise TypeError(f"dtype must be a DType, got {self.dtype!r}")
        shape = self.shape
        # the fast path: a tuple of non-negative ints and known canonical symbols (what type inference makes);
        # a plain loop, as a generator under all() cost more than the rest of building the type
        if type(shape) is tuple:
            for d in shape:
                if type(d) is int:
                    if d < 0:
                        break
                elif type(d) is not str or d not in _CANONICAL:
                    break
            else:
                return
        object.__setattr__(self, "shape", tuple(_check_dim(d) for d in shape))

    def __eq__(self, other: object) -> bool:
        # what the generated __eq__ computes, without building two tuples per comparison (rewrite checks compare
        # types at every candidate)
        if self is other:
            return True
        if other.__class__ is not TensorType:
            return NotImplemented
        return self.dtype is other.dtype and self.shape == other.shape  # type: ignore[attr-defined]

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    @property
    def symbols(self) -> set[str]:
        return set().union(*(free_symbols(d) for d in self.shape))

    def numel(self, bindings: Mapping[str, int] | None = None) -> int:
        """Number of elements; symbols are looked up in `bindings` (KeyError if absent)."""
        return math.prod(resolve_shape(self.shape, bindings or {}))

    def nbytes(self, bindings: Mapping[str, int] | None = None) -> int:
        return self.numel(bindings) * self.dtype.itemsize

    def with_shape(self, shape: Sequence[Dim]) -> TensorType:
        return TensorType(self.dtype, tuple(shape))

    def with_dtype(self, dtype: DType) -> TensorType:
        return TensorType(dtype, self.shape)

    def __str__(self) -> str:
        return f"{self.dtype.value}[{','.join(format_dim(d) for d in self.shape)}]"


def format_dim(d: Dim) -> str:
    """Ints and symbols print bare, expressions quoted (`"batch*seq"`) so the text form parses back."""
    return str(d) if isinstance(d, int) or is_symbol(d) else json.dumps(d)


def resolve_shape(shape: Sequence[Dim], bindings: Mapping[str, int]) -> tuple[int, ...]:
    """Replace symbols and expressions by their sizes. Raises KeyError naming the first unbound symbol."""
    return tuple(d if isinstance(d, int) else evaluate(d, bindings) for d in shape)
