"""Integer bit ops: bitwise and/or/xor/not, shifts with ONNX's out-of-range rule, and bit-reinterpreting casts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..dtypes import DType, promote
from ..types import TensorType
from .registry import Attr, ShapeError, register_op
from .shapes import broadcast, tt
from .traits import Trait, elementwise_flow

_EW = [Trait.ELEMENTWISE]


def _int_binary_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    a, b = types
    dt = promote([a.dtype, b.dtype], [a.rank, b.rank])
    if dt.is_float:
        raise ShapeError(f"bit ops take integer or bool operands, got {a.dtype} and {b.dtype}")
    return tt(dt, broadcast(a.shape, b.shape))


def _bitwise(name: str, fn: Any, doc: str) -> None:
    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        dt = promote([DType.from_numpy(a.dtype), DType.from_numpy(b.dtype)], [a.ndim, b.ndim]).numpy
        return fn(a.astype(dt, copy=False), b.astype(dt, copy=False))

    register_op(name, inputs=["a", "b"], infer=_int_binary_infer, commutative=True, doc=doc, traits=_EW,
                dim_flow=elementwise_flow,
                flops=lambda i, o, a: o[0].numel)(kernel)


_bitwise("bitwise_and", np.bitwise_and, "a & b")
_bitwise("bitwise_or", np.bitwise_or, "a | b")
_bitwise("bitwise_xor", np.bitwise_xor, "a ^ b")


def _int_unary_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    if types[0].dtype.is_float:
        raise ShapeError(f"bitwise_not takes an integer or bool operand, got {types[0].dtype}")
    return types[0]


@register_op("bitwise_not", inputs=["x"], infer=_int_unary_infer, flops=lambda i, o, a: o[0].numel, traits=_EW,
             dim_flow=elementwise_flow)
def _bitwise_not(x: np.ndarray) -> np.ndarray:
    """~x (logical not for bool)."""
    return np.invert(x)


def _shift_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    a, b = types
    if not a.dtype.is_int or not b.dtype.is_int:
        raise ShapeError(f"shifts take integer operands, got {a.dtype} and {b.dtype}")
    return tt(a.dtype, broadcast(a.shape, b.shape))


@register_op("shift", inputs=["x", "amount"], infer=_shift_infer, attrs={"left": Attr("bool")}, traits=_EW,
             dim_flow=elementwise_flow,
             flops=lambda i, o, a: o[0].numel)
def _shift(x: np.ndarray, amount: np.ndarray, *, left: bool) -> np.ndarray:
    """x << amount or x >> amount (arithmetic); amounts outside [0, bits) give 0 (or -1 for negative x >> big)."""
    x, amount = np.broadcast_arrays(x, amount.astype(np.int64))
    bits = np.iinfo(x.dtype).bits
    valid = (amount >= 0) & (amount < bits)
    safe = np.where(valid, amount, 0)
    if left:
        unsigned = np.dtype(f"u{x.dtype.itemsize}")
        y = np.left_shift(x.view(unsigned), safe.astype(unsigned)).view(x.dtype)
        return np.where(valid, y, np.zeros((), x.dtype))
    y = np.right_shift(x, safe.astype(x.dtype))
    fill = np.where(x < 0, -1, 0).astype(x.dtype) if np.issubdtype(x.dtype, np.signedinteger) else np.zeros((), x.dtype)
    return np.where(valid, y, fill)


def _bitcast_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    x, to = types[0], attrs["dtype"]
    if x.dtype.numpy.itemsize != to.numpy.itemsize:
        raise ShapeError(f"bitcast needs equal widths, {x.dtype} → {to}")
    return x.with_dtype(to)


@register_op("bitcast", inputs=["x"], infer=_bitcast_infer, attrs={"dtype": Attr("dtype")},
             flops=lambda i, o, a: 0)
def _bitcast(x: np.ndarray, *, dtype: DType) -> np.ndarray:
    """Reinterpret the bits of x as dtype (same width)."""
    return np.array(x, order="C").view(dtype.numpy)

