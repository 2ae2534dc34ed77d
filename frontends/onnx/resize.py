"""ONNX Resize as per-axis linear maps: with static shapes, resizing one axis is `y = M @ x (+ c)` along it.

Every mode (nearest, linear, cubic, antialiased) and coordinate transformation is separable, so the importer
computes, once, an (out × in) matrix per resized axis from the spec's formulas and emits a gather (nearest) or a
matmul (linear/cubic). Backends need no resize kernel; fusion may later map the pattern to `F.interpolate`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphopt.ir import DType, Value

from .context import ConversionContext, attrs_of, converter, need
from graphopt.ir.resize_math import cubic_coeffs, linear_coeffs, nearest_coeffs, resize_matrix


def _round_half_up(v: float) -> int:
    return int(v + 0.5)


@converter("Resize")
def _resize(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    x = cx.tensor(a[0])
    rank = x.type.rank
    a = a + [None] * (4 - len(a))
    # roi matters only to tf_crop_and_resize; there a run-time roi must not be silently ignored
    crop = at.get("coordinate_transformation_mode", "half_pixel") == "tf_crop_and_resize"
    roi = (need(cx, a[1], "Resize roi") if crop else cx.known(a[1])) if a[1] is not None else None
    scales = need(cx, a[2], "Resize scales") if a[2] is not None else None
    sizes = need(cx, a[3], "Resize sizes") if a[3] is not None else None
    axes = [int(i) % rank for i in at.get("axes", range(rank))]
    shape = list(x.type.shape)
    if any(not isinstance(shape[ax], int) for ax in axes):
        return _symbolic(cx, x, at, axes, scales)
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
    coeffs = {"nearest": lambda: nearest_coeffs(at.get("nearest_mode", "round_prefer_floor")),
              "linear": lambda: linear_coeffs(antialias),
              "cubic": lambda: cubic_coeffs(at.get("cubic_coeff_a", -0.75), antialias)}[mode]()
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
            y = cx.op("where", [mask, cx.const(fill, y.type.dtype), y])
    return y if y is not x else cx.op("identity", [x])


def _symbolic(cx: ConversionContext, x: Value, at: dict[str, Any], axes: list[int], scales: Any) -> Value:
    """A resize along symbolic dims: no matrix can be computed at import, so it must be one `F.interpolate` can
    do (the `interpolate` op, sized from the bound symbols): what torch's exporters write for `F.interpolate`
    with integer scale factors over a variable-resolution image."""
    rank = x.type.rank
    mode, ctm = at.get("mode", "nearest"), at.get("coordinate_transformation_mode", "half_pixel")
    factors = [float(v) for v in scales] if scales else None
    if len(axes) != rank or factors is None or factors[:2] != [1.0, 1.0] or not all(f.is_integer() and f >= 1
                                                                           for f in factors[2:]):
        raise NotImplementedError("Resize along a symbolic dim other than by integer scale factors of the spatial "
                                  "axes (give the sizes with constants= or a static input shape)")
    if mode == "nearest":
        ok = ctm == "asymmetric" and at.get("nearest_mode", "round_prefer_floor") == "floor"
    else:  # pytorch_half_pixel is half_pixel except at an output size of 1, which a factor >= 2 never gives
        ok = (ctm in ("half_pixel", "align_corners") or ctm == "pytorch_half_pixel" and min(factors[2:]) >= 2) \
            and not at.get("antialias", 0) and not at.get("exclude_outside", 0) \
            and (mode == "linear" or at.get("cubic_coeff_a", -0.75) == -0.75)
    if not ok:
        raise NotImplementedError(f"{mode} Resize with coordinate_transformation_mode={ctm} along a symbolic dim "
                                  "(only F.interpolate's modes resize symbolic dims)")
    spatial = factors[2:]
    out = [f"{int(f)}*({d})" if isinstance(d, str) else int(f) * d for f, d in zip(spatial, x.type.shape[2:])]
    return cx.op("interpolate", [x], mode=mode, sizes=out, scales=spatial, align_corners=ctm == "align_corners")


def _apply_axis(cx: ConversionContext, x: Value, axis: int, m: np.ndarray, nearest: bool) -> Value:
    rank = x.type.rank
    if nearest:  # each row picks one input element: a gather, exact for every dtype
        return cx.op("gather", [x, cx.const(m.argmax(axis=1), DType.I64)], axis=axis)
    dt = x.type.dtype
    if axis == rank - 1:
        return cx.op("matmul", [x, cx.const(m.T, dt)])
    if axis == rank - 2:
        return cx.op("matmul", [cx.const(m, dt), x])
    perm = [i for i in range(rank) if i != axis] + [axis]
    moved = cx.op("matmul", [cx.op("transpose", [x], perm=perm), cx.const(m.T, dt)])
    return cx.op("transpose", [moved], perm=list(np.argsort(perm)))
