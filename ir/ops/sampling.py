"""grid_sample: read an N-d image at normalized coordinates (ONNX GridSample, torch.nn.functional.grid_sample);
interpolate: resize the spatial axes (torch.nn.functional.interpolate)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..dtypes import DType
from ..types import TensorType
from ..resize_math import interpolate_matrix
from .registry import Attr, ShapeError, register_op
from .shapes import compute_dtype, tt
from .traits import I, O, Tie, tie


def _infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    x, grid = types
    nd = x.rank - 2
    if nd < 1 or grid.rank != x.rank or grid.shape[-1] != nd or grid.dtype != x.dtype:
        raise ShapeError(f"grid_sample needs x[N,C,*spatial] and grid[N,*out,{nd}] of x's dtype, got {x} and {grid}")
    return tt(x.dtype, (x.shape[0], x.shape[1]) + tuple(grid.shape[1:-1]))


def _reflect(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    span = hi - lo
    if span <= 0:
        return np.full_like(v, lo)
    below, above = v < lo, v > hi
    dist = np.where(below, lo - v, np.where(above, v - hi, 0.0))
    turns = np.floor(dist / span)
    rest = dist - turns * span
    even = turns % 2 == 0
    return np.where(below, np.where(even, lo + rest, hi - rest), np.where(above, np.where(even, hi - rest, lo + rest), v))


def _cubic(t: np.ndarray) -> list[np.ndarray]:
    a = -0.75
    return [((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
            ((a + 2) * t - (a + 3)) * t * t + 1,
            ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
            ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a]


@register_op("grid_sample", inputs=["x", "grid"], infer=_infer,
             attrs={"mode": Attr("str", "linear", choices=("linear", "nearest", "cubic")),
                    "padding_mode": Attr("str", "zeros", choices=("zeros", "border", "reflection")),
                    "align_corners": Attr("bool", False)},
             flops=lambda i, o, a: o[0].numel * 4 ** (len(i[0].shape) - 2))
def _grid_sample(x: np.ndarray, grid: np.ndarray, *, mode: str, padding_mode: str, align_corners: bool) -> np.ndarray:
    """Sample x at grid (last dim ordered x, y[, z], in [-1, 1]); out-of-range reads follow padding_mode."""
    dims = x.shape[2:]
    nd = len(dims)
    g = grid.astype(np.float64)
    lo = [0.0 if align_corners else -0.5 for _ in dims]
    hi = [d - 1.0 if align_corners else d - 0.5 for d in dims]
    coords = []
    for i, d in enumerate(dims):
        u = g[..., nd - 1 - i]
        v = (u + 1) / 2 * (d - 1) if align_corners else ((u + 1) * d - 1) / 2
        if mode == "nearest":
            v = np.rint(v)
        if padding_mode == "border":
            v = np.where((v < lo[i]) | (v > hi[i]), np.clip(v, 0, d - 1), v)
        elif padding_mode == "reflection":
            v = _reflect(v, lo[i], hi[i])
        coords.append(v)
    data = x.astype(np.float64)
    n_idx = np.arange(x.shape[0]).reshape((-1,) + (1,) * (g.ndim - 2))

    def pixel(idx: list[np.ndarray]) -> np.ndarray:
        """x[n, :, idx...] as (N, *out, C) with out-of-range reads per padding_mode."""
        ok = np.ones(idx[0].shape, dtype=bool)
        fixed = []
        for i, (j, d) in enumerate(zip(idx, dims)):
            if padding_mode == "zeros":
                ok &= (j >= 0) & (j < d)
                j = np.clip(j, 0, d - 1)
            elif padding_mode == "border":
                j = np.clip(j, 0, d - 1)
            else:
                j = _reflect(j.astype(np.float64), lo[i], hi[i]).astype(np.int64)
            fixed.append(j)
        vals = np.moveaxis(data, 1, -1)[(n_idx, *fixed)]
        return np.where(ok[..., None], vals, 0.0)

    if mode == "nearest":
        out: Any = pixel([c.astype(np.int64) for c in coords])
    else:
        base = [np.floor(c).astype(np.int64) for c in coords]
        frac = [c - b for c, b in zip(coords, base)]
        taps: tuple[int, ...]
        if mode == "linear":
            taps, weights = (0, 1), [[1 - f, f] for f in frac]
        else:
            taps, weights = (-1, 0, 1, 2), [_cubic(f) for f in frac]
        out = 0.0
        for combo in itertools.product(range(len(taps)), repeat=nd):
            w = np.prod([weights[i][k] for i, k in enumerate(combo)], axis=0)
            out = out + w[..., None] * pixel([b + taps[k] for b, k in zip(base, combo)])
    return np.moveaxis(np.asarray(out), -1, 1).astype(x.dtype)


def _interpolate_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    x, sizes, scales = types[0], attrs["sizes"], attrs["scales"]
    if x.rank < 3 or len(sizes) != x.rank - 2 or (scales is not None and len(scales) != len(sizes)):
        raise ShapeError(f"interpolate needs x[N,C,*spatial] and one size (and scale) per spatial axis, got {x}, "
                         f"sizes {list(sizes)}, scales {scales}")
    if not x.dtype.is_float:
        raise ShapeError(f"interpolate takes floating point input, got {x.dtype}")
    if attrs["mode"] == "nearest" and attrs["align_corners"]:
        raise ShapeError("align_corners applies to linear and cubic modes only")
    return x.with_shape(x.shape[:2] + tuple(sizes))


def _interpolate_flow(ins: Any, outs: Any, attrs: Mapping[str, Any]) -> list[Tie]:
    """Batch and channels pass through; each output pixel mixes input pixels (no spatial tie)."""
    return [tie(O(0, 0), I(0, 0)), tie(O(0, 1), I(0, 1))]


def _interpolate_resize(ins: Any, outs: Any, attrs: Mapping[str, Any], removed: Mapping[Any, Any]) -> dict[str, Any]:
    """Pruning removes batch or channel entries only (the tied axes); `sizes` holds the spatial sizes: unchanged."""
    return {}


@register_op("interpolate", inputs=["x"], infer=_interpolate_infer, dim_flow=_interpolate_flow,
             resize=_interpolate_resize,
             attrs={"mode": Attr("str", "nearest", choices=("nearest", "linear", "cubic")), "sizes": Attr("dims"),
                    "scales": Attr("floats", optional=True, default=None), "align_corners": Attr("bool", False)},
             flops=lambda i, o, a: o[0].numel * {"nearest": 1, "linear": 2, "cubic": 4}[a["mode"]] * (len(o[0].shape) - 2))
def _interpolate(x: np.ndarray, *, mode: str, sizes: tuple[int, ...], scales: tuple[float, ...] | None,
                 align_corners: bool) -> np.ndarray:
    """F.interpolate(x, size=sizes, mode=...): each spatial axis through its (out × in) matrix; `scales` are torch's
    scale factors when the call gave them (they, not in/out, map coordinates)."""
    y = x.astype(np.float64)
    for i, n_out in enumerate(sizes):
        m = interpolate_matrix(x.shape[2 + i], n_out, mode, align_corners, scales[i] if scales else None)
        y = np.moveaxis(np.tensordot(m, y, axes=([1], [2 + i])), 0, 2 + i)
    return y.astype(compute_dtype(DType.from_numpy(x.dtype)).numpy).astype(x.dtype, copy=False)
