"""Tensor types: a dtype and a shape whose dims are ints or symbols (`batch`, `seq`).

A symbolic dim is a plain identifier string; the same name means the same size everywhere in a graph, so
symbols flow through shape inference and are bound to ints when the graph runs.

>>> from graphopt.ir import TensorType, DType
>>> t = TensorType(DType.F32, ("batch", 128, 384))
>>> str(t), t.rank, t.is_static
('f32[batch,128,384]', 3, False)
>>> t.numel({"batch": 2})
98304
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Union

from .dtypes import DType

__all__ = ["Dim", "Shape", "TensorType", "is_symbol", "resolve_shape", "SYMBOL_RE"]

Dim = Union[int, str]
Shape = tuple[Dim, ...]

SYMBOL_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def is_symbol(dim: object) -> bool:
    return isinstance(dim, str)


def _check_dim(dim: object) -> Dim:
    if isinstance(dim, bool):
        raise TypeError(f"a dim must be an int or a symbol name, got {dim!r}")
    if isinstance(dim, int):
        if dim < 0:
            raise ValueError(f"a dim must be >= 0, got {dim}")
        return dim
    if hasattr(dim, "__index__"):  # numpy integers
        return _check_dim(int(dim))  # type: ignore[call-overload]
    if isinstance(dim, str) and SYMBOL_RE.match(dim):
        return dim
    raise TypeError(f"a dim must be an int or a symbol name like 'batch', got {dim!r}")


@dataclass(frozen=True)
class TensorType:
    """The static type of a Value. Immutable and hashable."""

    dtype: DType
    shape: Shape

    def __post_init__(self) -> None:
        if not isinstance(self.dtype, DType):
            raise TypeError(f"dtype must be a DType, got {self.dtype!r}")
        object.__setattr__(self, "shape", tuple(_check_dim(d) for d in self.shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    @property
    def symbols(self) -> set[str]:
        return {d for d in self.shape if isinstance(d, str)}

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
        return f"{self.dtype.value}[{','.join(str(d) for d in self.shape)}]"


def resolve_shape(shape: Sequence[Dim], bindings: Mapping[str, int]) -> tuple[int, ...]:
    """Replace symbols by their bound sizes. Raises KeyError naming the first unbound symbol."""
    out = []
    for d in shape:
        if isinstance(d, str):
            if d not in bindings:
                raise KeyError(d)
            out.append(int(bindings[d]))
        else:
            out.append(d)
    return tuple(out)
