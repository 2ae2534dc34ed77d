"""ONNX Resize as per-axis linear maps: with static shapes, resizing one axis is `y = M @ x (+ c)` along it.

Every mode (nearest, linear, cubic, antialiased) and coordinate transformation is separable, so the importer
computes, once, an (out × in) matrix per resized axis from the spec's formulas and emits a gather (nearest) or a
matmul (linear/cubic). Backends need no resize kernel; fusion may later map the pattern to `F.interpolate`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from graphopt.ir import DType, Value

from .onnx_import import _attrs, _Ctx, converter


def _nearest(mode: str) -> Callable[[float, float], np.ndarray]:
    def coeffs(ratio: float, scale: float) -> np.ndarray:
        if float(ratio).is_integer():
            return np.array([0.0, 1.0])
        up = {"round_prefer_floor": ratio > 0.5, "round_prefer_ceil": ratio >= 0.5, "floor": False,
              "ceil": True}[mode]
        return np.array([0.0, 1.0]) if up else np.array([1.0, 0.0])

    return coeffs


def _linear(antialias: bool) -> Callable[[float, float], np.ndarray]:
    def coeffs(ratio: float, scale: float) -> np.ndarray:
        if not antialias:
            return np.array([1 - ratio, ratio])
        s = min(scale, 1.0)
        start = int(np.floor(-1 / s) + 1)
        w = np.clip(1 - np.abs((np.arange(start, 2 - start) - ratio) * s), 0, 1)
        return w / w.sum()

    return coeffs


def _cubic(a: float, antialias: bool) -> Callable[[float, float], np.ndarray]:
    def kernel(x: np.ndarray) -> np.ndarray:
        x = np.abs(x)
        return np.where(x <= 1, (a + 2) * x**3 - (a + 3) * x**2 + 1,
                        np.where(x < 2, a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a, 0.0))

    def coeffs(ratio: float, scale: float) -> np.ndarray:
        if not antialias:
            return kernel(np.array([ratio + 1, ratio, 1 - ratio, 2 - ratio]))
        s = min(scale, 1.0)
        start = int(np.floor(-2 / s) + 1)
        w = kernel(s * (np.arange(start, 2 - start) - ratio))
        return w / w.sum()

    return coeffs


def resize_matrix(n_in: int, n_out: int, scale: float, coeffs: Callable[[float, float], np.ndarray], *,
                  ctm: str = "half_pixel", roi: tuple[float, float] | None = None,
                  exclude_outside: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(M, extrapolated): y[i] = sum_j M[i, j] x[j] along one axis; rows flagged extrapolated take a fill value."""
    y = np.arange(n_out, dtype=np.float64)
    width = scale * n_in
    extrapolated = np.zeros(n_out, dtype=bool)
    if ctm == "align_corners":
        x = np.zeros(n_out) if width == 1 else y * (n_in - 1) / (width - 1)
    elif ctm == "asymmetric":
        x = y / scale
    elif ctm == "tf_crop_and_resize":
        lo, hi = roi if roi is not None else (0.0, 1.0)
        x = np.full(n_out, (hi - lo) * (n_in - 1) / 2) if width == 1 else y * (hi - lo) * (n_in - 1) / (width - 1)
        x = x + lo * (n_in - 1)
        extrapolated = (x < 0) | (x > n_in - 1)
    elif ctm == "pytorch_half_pixel":
        x = np.full(n_out, -0.5) if width == 1 else (y + 0.5) / scale - 0.5
    elif ctm == "half_pixel":
        x = (y + 0.5) / scale - 0.5
    elif ctm == "half_pixel_symmetric":
        x = n_in / 2 * (1 - n_out / width) + (y + 0.5) / scale - 0.5
    else:
        raise NotImplementedError(f"coordinate_transformation_mode={ctm!r}")
    base = np.floor(x)
    ratios = np.where(x == base, 1.0, x - base)
    w = np.stack([coeffs(float(r), scale) for r in ratios]) if n_out else np.zeros((0, 2))
    k = w.shape[1]
    pad = math.ceil(k / 2)
    padded = x + pad
    p = np.floor(padded).astype(np.int64)
    frac = padded - p
    if k % 2 == 0:
        offset = np.where(frac == 0, -(k // 2), -(k // 2) + 1)
    else:
        offset = np.where(frac <= 0.5, -((k - 1) // 2), -((k - 1) // 2) + 1)
    idx = (p + offset)[:, None] + np.arange(k)[None, :] - pad
    if exclude_outside:
        w = np.where((idx < 0) | (idx >= n_in), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.repeat(np.arange(n_out), k), np.clip(idx, 0, n_in - 1).ravel()), w.ravel())
    m[extrapolated] = 0.0
    return m, extrapolated


def _round_half_up(v: float) -> int:
    return int(v + 0.5)


@converter("Resize")
def _resize(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    at = _attrs(n)
    x = cx.tensor(a[0])
    rank = x.type.rank
    a = a + [None] * (4 - len(a))
    roi = cx.known(a[1]) if a[1] is not None else None
    scales = cx.known(a[2]) if a[2] is not None else None
    sizes = cx.known(a[3]) if a[3] is not None else None
    if (a[2] is not None and scales is None) or (a[3] is not None and sizes is None):
        raise NotImplementedError("Resize scales and sizes must be known at import time")
    axes = [int(i) % rank for i in at.get("axes", range(rank))]
    shape = list(x.type.shape)
    if any(not isinstance(shape[ax], int) for ax in axes):
        raise NotImplementedError("Resize along a symbolic dim")
    if sizes:
        factors = [sizes[i] / shape[ax] for i, ax in enumerate(axes)]
        policy = at.get("keep_aspect_ratio_policy", "stretch")
        if policy != "stretch":
            s = min(factors) if policy == "not_larger" else max(factors)
            factors = [s] * len(axes)
            out = [_round_half_up(s * shape[ax]) for ax in axes]
        else:
            out = [int(v) for v in sizes]
    elif scales:
        factors = [float(v) for v in scales]
        out = [int(f * shape[ax]) for f, ax in zip(factors, axes)]
    else:
        raise NotImplementedError("Resize without scales or sizes")
    mode = at.get("mode", "nearest")
    antialias = bool(at.get("antialias", 0))
    coeffs = {"nearest": lambda: _nearest(at.get("nearest_mode", "round_prefer_floor")),
              "linear": lambda: _linear(antialias),
              "cubic": lambda: _cubic(at.get("cubic_coeff_a", -0.75), antialias)}[mode]()
    if mode != "nearest" and not x.type.dtype.is_float:
        raise NotImplementedError(f"{mode} Resize of {x.type.dtype} data")
    ctm = at.get("coordinate_transformation_mode", "half_pixel")
    fill = at.get("extrapolation_value", 0.0)
    y: Value = x
    for i, ax in enumerate(axes):
        axis_roi = (float(roi[i]), float(roi[len(axes) + i])) if roi and ctm == "tf_crop_and_resize" else None
        if math.isclose(factors[i], 1.0) and out[i] == shape[ax] and axis_roi in (None, (0.0, 1.0)):
            continue
        m, extra = resize_matrix(shape[ax], out[i], factors[i], coeffs, ctm=ctm, roi=axis_roi,
                                 exclude_outside=bool(at.get("exclude_outside", 0)))
        y = _apply_axis(cx, y, ax, m, mode == "nearest")
        if extra.any():
            mask_shape = [1] * rank
            mask_shape[ax] = out[i]
            mask = cx.graph.add_constant(extra.reshape(mask_shape))
            y = cx.add("where", [mask, cx.const(fill, y.type.dtype), y])
    return y if y is not x else cx.add("identity", [x])


def _apply_axis(cx: _Ctx, x: Value, axis: int, m: np.ndarray, nearest: bool) -> Value:
    rank = x.type.rank
    if nearest:  # each row picks one input element: a gather, exact for every dtype
        return cx.add("gather", [x, cx.const(m.argmax(axis=1), DType.I64)], axis=axis)
    dt = x.type.dtype
    if axis == rank - 1:
        return cx.add("matmul", [x, cx.const(m.T, dt)])
    if axis == rank - 2:
        return cx.add("matmul", [cx.const(m, dt), x])
    perm = [i for i in range(rank) if i != axis] + [axis]
    moved = cx.add("matmul", [cx.add("transpose", [x], perm=perm), cx.const(m.T, dt)])
    return cx.add("transpose", [moved], perm=list(np.argsort(perm)))
