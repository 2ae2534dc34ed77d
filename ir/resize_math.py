"""Resizing one axis as a linear map: `y = M @ x` along it, M (out × in) computed once from the resize formulas.

Every mode (nearest, linear, cubic, antialiased) and coordinate transformation of ONNX Resize — and therefore of
`F.interpolate` — is separable, so a static resize is a gather (nearest) or a matmul per axis: exact up to float
rounding, and a GEMM instead of index arithmetic. Shared by the ONNX frontend, the `interpolate` op's reference
kernel and the cpu target's matrix kernel for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["nearest_coeffs", "linear_coeffs", "cubic_coeffs", "resize_matrix", "interpolate_matrix"]


def nearest_coeffs(mode: str) -> Callable[[float, float], np.ndarray]:
    def coeffs(ratio: float, scale: float) -> np.ndarray:
        if float(ratio).is_integer():
            return np.array([0.0, 1.0])
        up = {"round_prefer_floor": ratio > 0.5, "round_prefer_ceil": ratio >= 0.5, "floor": False,
              "ceil": True}[mode]
        return np.array([0.0, 1.0]) if up else np.array([1.0, 0.0])

    return coeffs


def linear_coeffs(antialias: bool) -> Callable[[float, float], np.ndarray]:
    def coeffs(ratio: float, scale: float) -> np.ndarray:
        if not antialias:
            return np.array([1 - ratio, ratio])
        s = min(scale, 1.0)
        start = int(np.floor(-1 / s) + 1)
        w = np.clip(1 - np.abs((np.arange(start, 2 - start) - ratio) * s), 0, 1)
        return w / w.sum()

    return coeffs


def cubic_coeffs(a: float, antialias: bool) -> Callable[[float, float], np.ndarray]:
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


def interpolate_matrix(n_in: int, n_out: int, mode: str, align_corners: bool, scale: float | None) -> np.ndarray:
    """The (out × in) matrix of `F.interpolate` along one axis (mode nearest, linear or cubic; torch's formulas:
    nearest takes floor(dst · in/out), cubic A = -0.75 with borders clamped). `scale` is torch's scale factor when
    the call gave one (it, not in/out, maps coordinates), else None."""
    s = scale if scale is not None and not align_corners else n_out / n_in  # align_corners ignores the factor
    if mode == "nearest":
        return resize_matrix(n_in, n_out, s, nearest_coeffs("floor"), ctm="asymmetric")[0]
    coeffs = cubic_coeffs(-0.75, False) if mode == "cubic" else linear_coeffs(False)
    return resize_matrix(n_in, n_out, s, coeffs, ctm="align_corners" if align_corners else "half_pixel")[0]
