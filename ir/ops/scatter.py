"""Scatter ops: write `updates` into a copy of `x` at given indices, optionally reducing with what is there."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..types import TensorType
from .registry import Attr, ShapeError, register_op

REDUCTIONS = ("none", "add", "mul", "max", "min")
_UFUNC = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _write(y: np.ndarray, index: tuple[Any, ...], updates: np.ndarray, reduction: str) -> np.ndarray:
    if reduction == "none":
        y[index] = updates
    else:
        _UFUNC[reduction].at(y, index, updates)
    return y


def _elements_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    x, idx, upd = types
    if not idx.dtype.is_int or idx.rank != x.rank or upd.shape != idx.shape or upd.dtype != x.dtype:
        raise ShapeError(f"scatter_elements needs integer indices of x's rank and updates shaped like them, got "
                         f"{x}, {idx}, {upd}")
    return x


@register_op("scatter_elements", inputs=["x", "indices", "updates"], infer=_elements_infer,
             attrs={"axis": Attr("int", 0), "reduction": Attr("str", "none", choices=REDUCTIONS)},
             flops=lambda i, o, a: i[2].numel)
def _scatter_elements(x: np.ndarray, indices: np.ndarray, updates: np.ndarray, *, axis: int,
                      reduction: str) -> np.ndarray:
    """y = x; y[..., indices[i, j], ...] (along axis) = updates[i, j] (torch.scatter / scatter_reduce)."""
    axis %= x.ndim
    index: list[Any] = list(np.indices(indices.shape, sparse=True))
    index[axis] = indices.astype(np.int64)
    return _write(x.copy(), tuple(index), updates, reduction)


def _nd_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    x, idx, upd = types
    k = idx.shape[-1] if idx.rank else None
    if not idx.dtype.is_int or not isinstance(k, int) or k > x.rank or upd.dtype != x.dtype or \
            tuple(upd.shape) != tuple(idx.shape[:-1]) + tuple(x.shape[k:]):
        raise ShapeError(f"scatter_nd needs indices[..., k] and updates shaped indices[:-1] + x[k:], got {x}, {idx}, "
                         f"{upd}")
    return x


@register_op("scatter_nd", inputs=["x", "indices", "updates"], infer=_nd_infer,
             attrs={"reduction": Attr("str", "none", choices=REDUCTIONS)}, flops=lambda i, o, a: i[2].numel)
def _scatter_nd(x: np.ndarray, indices: np.ndarray, updates: np.ndarray, *, reduction: str) -> np.ndarray:
    """y = x; y[indices[i][0], ..., indices[i][k-1]] = updates[i] (ONNX ScatterND)."""
    idx = indices.astype(np.int64)
    return _write(x.copy(), tuple(idx[..., j] for j in range(idx.shape[-1])), updates, reduction)
