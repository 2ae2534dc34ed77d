"""Element types of the IR and PyTorch-compatible type promotion.

>>> from graphopt.ir import DType
>>> DType.parse("f32").numpy
dtype('float32')
>>> promote([DType.I64, DType.F32], [1, 1])
<DType.F32: 'f32'>
"""

from __future__ import annotations

import enum
from typing import Any
from collections.abc import Sequence

import ml_dtypes
import numpy as np

__all__ = ["DType", "promote"]


class DType(enum.Enum):
    """A tensor element type. The value is the short name used in the text form."""

    BOOL = "bool"
    U8 = "u8"
    U16 = "u16"
    U32 = "u32"
    U64 = "u64"
    I8 = "i8"
    I16 = "i16"
    I32 = "i32"
    I64 = "i64"
    F16 = "f16"
    BF16 = "bf16"
    F32 = "f32"
    F64 = "f64"

    # Members are singletons compared by identity; Enum's own __hash__ hashes the name in Python code (a call per
    # dict lookup keyed by a dtype, which type inference and codegen do constantly).
    __hash__ = object.__hash__

    @classmethod
    def parse(cls, name: str) -> DType:
        try:
            return cls(name)
        except ValueError:
            known = ", ".join(d.value for d in cls)
            raise ValueError(f"unknown dtype {name!r}; known dtypes: {known}") from None

    @classmethod
    def from_numpy(cls, dtype: np.dtype | type) -> DType:
        dtype = np.dtype(dtype)
        try:
            return _FROM_NUMPY[dtype]
        except KeyError:
            raise ValueError(f"numpy dtype {dtype} has no graphopt equivalent") from None

    @property
    def numpy(self) -> np.dtype:
        return _TO_NUMPY[self]

    @property
    def torch(self) -> Any:
        """The matching torch.dtype (imports torch on first use)."""
        import torch

        return getattr(torch, _TORCH_NAMES[self])

    @classmethod
    def from_torch(cls, dtype: Any) -> DType:
        name = str(dtype).removeprefix("torch.")
        for d, n in _TORCH_NAMES.items():
            if n == name:
                return d
        raise ValueError(f"torch dtype {dtype} has no graphopt equivalent")

    @property
    def itemsize(self) -> int:
        return self.numpy.itemsize

    @property
    def is_float(self) -> bool:
        return self in _FLOATS

    @property
    def is_int(self) -> bool:
        return self in _INTS

    @property
    def is_wide_unsigned(self) -> bool:
        """u16, u32, u64: ONNX has them, torch has almost no kernels for them and does not promote them with any
        other integer type (so neither does the IR)."""
        return self in _WIDE_UNSIGNED

    @property
    def category(self) -> int:
        """0 bool, 1 integer, 2 floating point: PyTorch's promotion categories."""
        return 2 if self.is_float else 1 if self.is_int else 0

    def __str__(self) -> str:
        return self.value


# Membership by identity in a tuple: spelling `DType.F16` inside the property looked the member up on the enum
# class every call (0.5 µs; type inference asks is_float for nearly every node).
_FLOATS = (DType.F32, DType.F16, DType.BF16, DType.F64)
_INTS = (DType.I64, DType.I32, DType.U8, DType.I8, DType.I16, DType.U16, DType.U32, DType.U64)
_WIDE_UNSIGNED = (DType.U16, DType.U32, DType.U64)

_TO_NUMPY: dict[DType, np.dtype] = {
    DType.BOOL: np.dtype(np.bool_),
    DType.U8: np.dtype(np.uint8),
    DType.U16: np.dtype(np.uint16),
    DType.U32: np.dtype(np.uint32),
    DType.U64: np.dtype(np.uint64),
    DType.I8: np.dtype(np.int8),
    DType.I16: np.dtype(np.int16),
    DType.I32: np.dtype(np.int32),
    DType.I64: np.dtype(np.int64),
    DType.F16: np.dtype(np.float16),
    DType.BF16: np.dtype(ml_dtypes.bfloat16),
    DType.F32: np.dtype(np.float32),
    DType.F64: np.dtype(np.float64),
}
_FROM_NUMPY = {v: k for k, v in _TO_NUMPY.items()}

# PyTorch's promotion lattice (torch.promote_types), by rank within a category.
_INT_ORDER = [DType.U8, DType.I8, DType.I16, DType.I32, DType.I64]
_FLOAT_ORDER = [DType.F16, DType.BF16, DType.F32, DType.F64]


_TORCH_NAMES = {
    DType.BOOL: "bool", DType.U8: "uint8", DType.U16: "uint16", DType.U32: "uint32", DType.U64: "uint64", DType.I8: "int8", DType.I16: "int16", DType.I32: "int32",
    DType.I64: "int64", DType.F16: "float16", DType.BF16: "bfloat16", DType.F32: "float32", DType.F64: "float64",
}


def _promote_pair(a: DType, b: DType) -> DType:
    if a == b:
        return a
    if a.category != b.category:
        if (a.is_wide_unsigned or b.is_wide_unsigned) and not (a.is_float or b.is_float):
            raise ValueError(f"{a} and {b} do not promote (as in torch): cast one of them first")
        return a if a.category > b.category else b
    if a.is_wide_unsigned or b.is_wide_unsigned:
        raise ValueError(f"{a} and {b} do not promote (as in torch): cast one of them first")
    if a.is_float:
        if {a, b} == {DType.F16, DType.BF16}:
            return DType.F32
        return max(a, b, key=_FLOAT_ORDER.index)
    if {a, b} == {DType.U8, DType.I8}:
        return DType.I16
    return max(a, b, key=_INT_ORDER.index)


def promote(dtypes: Sequence[DType], ranks: Sequence[int]) -> DType:
    """Result dtype of an elementwise op, following torch.result_type.

    Zero-rank operands only decide the result when their category (bool < int < float) is higher than that
    of every ranked operand, as in PyTorch.
    """
    ranked = [d for d, r in zip(dtypes, ranks) if r > 0]
    scalars = [d for d, r in zip(dtypes, ranks) if r == 0]
    result = _fold(ranked) if ranked else _fold(scalars)
    if ranked and scalars:
        top = _fold(scalars)
        if top.category > result.category:
            result = top
    return result


def _fold(dtypes: Sequence[DType]) -> DType:
    result = dtypes[0]
    for d in dtypes[1:]:
        result = _promote_pair(result, d)
    return result
