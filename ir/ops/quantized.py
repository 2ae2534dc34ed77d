"""Integer-arithmetic ops: what the QDQ patterns around a linear layer lower to.

`quantize_linear`/`dequantize_linear` (in nn.py) describe quantization as data: a pass writes them, ONNX exports
them, and a reference run of the QDQ graph is the fake-quant model. The ops here are what a lowering pass turns
those patterns into; their reference kernels compute as the integer kernels do (int8 × uint8 products summed in
int32, one rescale at the end), so "the int8 model" means the same thing on every target.

Activations are quantized per tensor at run time over [min(x, 0), max(x, 0)] (ONNX's DynamicQuantizeLinear): to
uint8 0..255, or to 0..127 with `reduce_range` — the form that is exact on CPUs without VNNI, where the u8·s8
pair sums of AVX2's `vpmaddubsw` saturate int16 (measured on a 2-core AVX2 EPYC: 15.7% relative error with full
range, 0.01% with reduce_range, for fbgemm's and oneDNN's int8 GEMMs alike).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from ..dtypes import DType
from ..types import TensorType
from .nn import ACTIVATIONS, _activate, _blocked, _linear_flow
from .registry import Attr, ShapeError, register_op
from .traits import AxisRef, I, O, Tie, Trait, tie

__all__ = ["activation_qparams"]


def activation_qparams(x: np.ndarray, reduce_range: bool) -> tuple[np.float32, np.uint8]:
    """(scale, zero point) of uint8 run-time quantization over [min(x, 0), max(x, 0)], as DynamicQuantizeLinear."""
    qmax = 127 if reduce_range else 255
    lo = min(float(np.min(x)) if x.size else 0.0, 0.0)
    hi = max(float(np.max(x)) if x.size else 0.0, 0.0)
    scale = np.float32((hi - lo) / qmax) if hi > lo else np.float32(1.0)
    zp = np.uint8(np.clip(np.rint(-lo / scale), 0, qmax))
    return scale, zp


def _dql_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    x = types[0]
    if x.dtype != DType.F32:
        raise ShapeError(f"dynamic_quantize_linear takes f32, got {x}")
    return [x.with_dtype(DType.U8), TensorType(DType.F32, ()), TensorType(DType.U8, ())]


def _dql_flow(ins: Any, outs: Any, attrs: Mapping[str, Any]) -> list[Tie]:
    # pruning an index out of x changes min/max only if it held the extreme: not exact, but the axes still match
    return [tie(O(0, k), I(0, k), exact=False) for k in range(ins[0].rank)]


@register_op("dynamic_quantize_linear", inputs=["x"], outputs=["y", "y_scale", "y_zero_point"], infer=_dql_infer,
             attrs={"reduce_range": Attr("bool", False)}, dim_flow=_dql_flow,
             flops=lambda i, o, a: 4 * o[0].numel)
def _dynamic_quantize_linear(x: np.ndarray, *, reduce_range: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 quantization of x with a scale and zero point computed from x itself (ONNX DynamicQuantizeLinear; 0..127
    with reduce_range)."""
    scale, zp = activation_qparams(x, reduce_range)
    qmax = 127 if reduce_range else 255
    q = np.clip(np.rint(x.astype(np.float32) / scale) + zp, 0, qmax).astype(np.uint8)
    return q, np.asarray(scale, np.float32), np.asarray(zp, np.uint8)


def _qlinear_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    x, w, s = types[0], types[1], types[2]
    if x.dtype != DType.F32:
        raise ShapeError(f"quantized_linear takes an f32 input, got {x}")
    if w.dtype != DType.I8 or w.rank != 2:
        raise ShapeError(f"quantized_linear needs an i8 weight [out, in], got {w}")
    g = attrs["group_size"]
    if g:
        k = w.shape[1]
        if attrs["act_quant"] != "none":
            raise ShapeError(f"quantized_linear: group_size={g} is weight-only (act_quant='none')")
        if not isinstance(k, int) or k % g:
            raise ShapeError(f"quantized_linear: in_features {k} is not a multiple of group_size={g}")
        if s.dtype != DType.F32 or s.shape != (w.shape[0], k // g):
            raise ShapeError(f"quantized_linear with group_size={g} needs weight_scale f32[{w.shape[0]},{k // g}], "
                             f"got {s}")
    elif s.dtype != DType.F32 or s.shape not in ((w.shape[0],), ()):
        raise ShapeError(f"quantized_linear weight_scale must be f32[] or f32[{w.shape[0]}], got {s}")
    if x.rank < 1 or (isinstance(x.shape[-1], int) and isinstance(w.shape[1], int) and x.shape[-1] != w.shape[1]):
        raise ShapeError(f"quantized_linear: x {x} does not match weight {w}")
    if len(types) == 4 and types[3].shape not in ((w.shape[0],), ()):
        raise ShapeError(f"quantized_linear bias must have shape [{w.shape[0]}], got {types[3]}")
    if attrs["act_quant"] == "static":
        qmax = 127 if attrs["reduce_range"] else 255
        if not attrs["x_scale"] > 0 or not 0 <= attrs["x_zero_point"] <= qmax:
            raise ShapeError(f"quantized_linear act_quant='static' needs x_scale > 0 and x_zero_point in 0..{qmax}, "
                             f"got {attrs['x_scale']} and {attrs['x_zero_point']}")
    return TensorType(DType.F32, x.shape[:-1] + (w.shape[0],))


def _qlinear_flow(ins: Any, outs: Any, attrs: Mapping[str, Any]) -> list[Tie]:
    x = ins[0]
    ties = _linear_flow(ins[:2], outs, attrs)  # x, weight as linear's
    if ins[2].rank:
        ties.append(tie(O(0, x.rank - 1), I(2, 0)))
    if len(ins) > 3 and ins[3].rank:
        ties.append(tie(O(0, x.rank - 1), I(3, 0)))
    if attrs["act_quant"] == "dynamic":  # the activation scale is computed over all of x
        ties = [replace(t, exact=False) for t in ties]
    elif attrs["group_size"]:  # an input feature shares its scale with its group: not removable on its own
        k = x.rank - 1
        ties = [replace(t, exact=False) if I(0, k) in t.a + t.b else t for t in ties]
    return ties


@register_op("quantized_linear", inputs=["x", "weight", "weight_scale", "bias?"], infer=_qlinear_infer,
             traits=[Trait.PRECISION_SENSITIVE], dim_flow=_qlinear_flow,
             attrs={"act_quant": Attr("str", "dynamic", choices=("dynamic", "static", "none")),
                    "reduce_range": Attr("bool", True),
                    "activation": Attr("str", "none", choices=tuple(ACTIVATIONS)),
                    "group_size": Attr("int", 0),
                    "x_scale": Attr("float", 0.0), "x_zero_point": Attr("int", 0)},
             flops=lambda i, o, a: 2 * o[0].numel * int(i[1].shape[1]))
def _quantized_linear(x: np.ndarray, weight: np.ndarray, weight_scale: np.ndarray, bias: np.ndarray | None = None, *,
                      act_quant: str, reduce_range: bool, activation: str, group_size: int, x_scale: float,
                      x_zero_point: int) -> np.ndarray:
    """act(x @ (weight · weight_scale)ᵀ + bias) with an int8 weight (symmetric, per output channel or per tensor).

    `act_quant="dynamic"`: x is quantized per tensor at run time (`dynamic_quantize_linear`) and the product is
    summed in int32, then rescaled by x_scale · weight_scale — what fbgemm's dynamic linear computes.
    `act_quant="static"`: x is quantized per tensor with the calibrated `x_scale` and `x_zero_point` (attributes,
    fixed at compile time: no min/max pass over x per call), then as dynamic.
    `act_quant="none"`: weight-only; x stays float and multiplies the dequantized weight.
    `group_size` > 0 (weight-only): one scale per output channel and group of `group_size` input features, the
    int4 layout (codes in -8..7 held in int8), weight_scale f32[out, in / group_size]."""
    if group_size:
        scale = _blocked(weight_scale.astype(np.float32), weight, 1, group_size)
        y = np.matmul(x.astype(np.float32), (weight.astype(np.float32) * scale).T)
    elif act_quant == "none":
        s = weight_scale.astype(np.float32).reshape(-1)
        y = np.matmul(x.astype(np.float32), (weight.astype(np.float32) * s[:, None]).T)
    else:
        s = weight_scale.astype(np.float32).reshape(-1)
        xs, xz = (np.float32(x_scale), int(x_zero_point)) if act_quant == "static" else activation_qparams(x, reduce_range)
        qmax = 127 if reduce_range else 255
        xq = np.clip(np.rint(x.astype(np.float32) / xs) + xz, 0, qmax).astype(np.int32) - np.int32(xz)
        acc = np.matmul(xq.astype(np.int64), weight.astype(np.int64).T)  # exact: int32 sums in any order
        y = acc.astype(np.float32) * (np.float32(xs) * s)
    if bias is not None:
        y = y + bias.astype(np.float32)
    return _activate(y.astype(np.float32), activation)


def _qconv_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    from .nn import _conv_infer

    x, w, ws, xs, xz = types[:5]
    if x.dtype not in (DType.F32, DType.U8) or w.dtype != DType.I8:
        raise ShapeError(f"quantized_conv takes an f32 (or u8 codes) input and an i8 weight, got {x} and {w}")
    if ws.dtype != DType.F32 or ws.shape not in ((w.shape[0],), ()):
        raise ShapeError(f"quantized_conv weight_scale must be f32[] or f32[{w.shape[0]}], got {ws}")
    if xs.dtype != DType.F32 or xs.rank != 0 or xz.dtype != DType.U8 or xz.rank != 0:
        raise ShapeError(f"quantized_conv x_scale must be f32[] and x_zero_point u8[], got {xs} and {xz}")
    qmax = 127 if attrs["reduce_range"] else 255
    if attrs["out_scale"] and (attrs["out_scale"] < 0 or not 0 <= attrs["out_zero_point"] <= qmax):
        raise ShapeError(f"quantized_conv out_scale must be > 0 and out_zero_point in 0..{qmax}, got "
                         f"{attrs['out_scale']} and {attrs['out_zero_point']}")
    float_types = [x.with_dtype(DType.F32), w.with_dtype(DType.F32), *types[5:]]
    y = _conv_infer(float_types, {k: v for k, v in attrs.items() if k in ("strides", "pads", "dilations", "groups",
                                                                         "activation")})
    return y.with_dtype(DType.U8) if attrs["out_scale"] else y


def _qconv_flow(ins: Any, outs: Any, attrs: Mapping[str, Any]) -> list[Tie]:
    """conv's rule over (x, weight, bias, residual), renumbered past the scales; a per-channel weight scale follows
    the output channels. Not exact: the input's scale is fixed by calibration, not by the values that remain."""
    from .nn import _conv_flow

    where = {0: 0, 1: 1, 2: 5, 3: 6}  # conv's input index -> this op's

    def moved(refs: tuple[AxisRef, ...]) -> tuple[AxisRef, ...]:
        return tuple(AxisRef(r.side, where[r.index] if r.side == "in" else r.index, r.axis) for r in refs)

    # without the grouped conv's tie by blocks: this op has no resize rule to lower its `groups`, so a grouped
    # quantized conv stops pruning at its input channels instead of keeping a stale group count
    ties = [replace(t, a=moved(t.a), b=moved(t.b), exact=False)
            for t in _conv_flow([ins[0], ins[1], *ins[5:]], outs, attrs) if not t.blocks]
    if ins[2].rank:
        ties.append(tie(O(0, 1), I(2, 0), exact=False))
    return ties


@register_op("quantized_conv", inputs=["x", "weight", "weight_scale", "x_scale", "x_zero_point", "bias?", "residual?"],
             infer=_qconv_infer, traits=[Trait.PRECISION_SENSITIVE], dim_flow=_qconv_flow,
             attrs={"strides": Attr("ints"), "pads": Attr("ints"), "dilations": Attr("ints"), "groups": Attr("int", 1),
                    "activation": Attr("str", "none", choices=tuple(ACTIVATIONS)), "reduce_range": Attr("bool", True),
                    "out_scale": Attr("float", 0.0), "out_zero_point": Attr("int", 0)},
             flops=lambda i, o, a: 2 * o[0].numel * int(np.prod(i[1].shape[1:])))
def _quantized_conv(x: np.ndarray, weight: np.ndarray, weight_scale: np.ndarray, x_scale: np.ndarray,
                    x_zero_point: np.ndarray, bias: np.ndarray | None = None, residual: np.ndarray | None = None, *,
                    strides: Any, pads: Any, dilations: Any, groups: int, activation: str,
                    reduce_range: bool, out_scale: float, out_zero_point: int) -> np.ndarray:
    """act(conv(x, weight · weight_scale) + bias + residual) with x quantized by a calibrated (static) scale.

    x → clip(round(x / x_scale) + x_zero_point, 0, qmax) (qmax 127 with reduce_range, else 255); the convolution
    sums (x_q − zp) · w_q exactly in integers; the result is rescaled by x_scale · weight_scale per output channel,
    then bias, residual and activation follow in f32 — what oneDNN's int8 convolution computes. A u8 `x` holds
    those codes already (the previous convolution's output). With `out_scale` > 0 the result leaves as u8 codes
    clip(round(y / out_scale) + out_zero_point, 0, qmax): the next convolution's input, quantized in this one's
    epilogue instead of written in f32 and read back."""
    from .nn import _conv

    qmax = 127 if reduce_range else 255
    s, z = np.float32(x_scale), int(x_zero_point)
    if x.dtype == np.uint8:
        xq = x.astype(np.float32) - z
    else:
        xq = np.clip(np.rint(x.astype(np.float32) / s) + z, 0, qmax) - z
    acc = _conv(xq.astype(np.float64), weight.astype(np.float64), strides=strides, pads=pads, dilations=dilations,
                groups=groups, activation="none")  # integer-valued: exact in f64 (|sum| < 2^53)
    ws = weight_scale.astype(np.float32).reshape(-1)
    y = acc.astype(np.float32) * (s * ws).reshape((1, -1) + (1,) * (x.ndim - 2))
    if bias is not None:
        y = y + bias.astype(np.float32).reshape((1, -1) + (1,) * (x.ndim - 2))
    if residual is not None:
        y = y + residual.astype(np.float32)
    y = _activate(y.astype(np.float32), activation)
    if out_scale:
        return np.clip(np.rint(y / np.float32(out_scale)) + out_zero_point, 0, qmax).astype(np.uint8)
    return y


# -- recurrent ------------------------------------------------------------------------------------------------
_QLSTM_AS_LSTM = {0: 0, 1: 1, 2: 2, 3: 3, 4: 5, 5: 7, 6: 8}  # lstm's input index -> this op's (scales at 4 and 6)


def _qlstm_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    from .nn import _recurrent_infer

    w_ih, s_ih, w_hh, s_hh = types[3:7]
    for w, s, name in ((w_ih, s_ih, "w_ih"), (w_hh, s_hh, "w_hh")):
        if w.dtype != DType.I8 or w.rank != 2:
            raise ShapeError(f"quantized_lstm needs an i8 {name} [4H, in], got {w}")
        if s.dtype != DType.F32 or s.shape not in ((w.shape[0],), ()):
            raise ShapeError(f"quantized_lstm {name}_scale must be f32[] or f32[{w.shape[0]}], got {s}")
    if types[0].dtype != DType.F32:
        raise ShapeError(f"quantized_lstm takes an f32 input, got {types[0]}")
    as_lstm = [t.with_dtype(DType.F32) for i, t in enumerate(types) if i not in (4, 6)]
    return _recurrent_infer("quantized_lstm", 4)(as_lstm, attrs)


def _qlstm_flow(ins: Any, outs: Any, attrs: Mapping[str, Any]) -> list[Tie]:
    """lstm's rule renumbered past the two weight scales, which follow their weight's rows (gate g, unit j at row
    g·H + j). Nothing exact: the activations' scales are computed over all of x and of each step's h."""
    from .nn import _recurrent_flow

    def moved(refs: tuple[AxisRef, ...]) -> tuple[AxisRef, ...]:
        return tuple(AxisRef(r.side, _QLSTM_AS_LSTM[r.index] if r.side == "in" else r.index, r.axis) for r in refs)

    as_lstm = [t for i, t in enumerate(ins) if i not in (4, 6)]
    ties = [replace(t, a=moved(t.a), b=moved(t.b), exact=False) for t in _recurrent_flow(4, 2)(as_lstm, outs, attrs)]
    hidden = outs[0].shape[-1]
    if isinstance(hidden, int):
        ties += [tie(I(s, 0), O(0, 2), offset=g * hidden, exact=False) for s in (4, 6) if ins[s].rank
                 for g in range(4)]
    return ties


def _lstm_codes(v: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """(v's uint8 codes minus the zero point, as integers; the scale): full-range run-time quantization over
    [min(v, 0), max(v, 0)], as ONNX Runtime's DynamicQuantizeLSTM quantizes its GEMMs' left operands."""
    s, z = activation_qparams(v, reduce_range=False)
    return np.clip(np.rint(v.astype(np.float32) / s) + z, 0, 255).astype(np.int64) - int(z), s


@register_op("quantized_lstm", inputs=["x", "h0", "c0", "w_ih", "w_ih_scale", "w_hh", "w_hh_scale", "b_ih", "b_hh"],
             outputs=["y", "h_n", "c_n"], infer=_qlstm_infer, traits=[Trait.PRECISION_SENSITIVE],
             dim_flow=_qlstm_flow, attrs={"batch_first": Attr("bool", False)},
             flops=lambda i, o, a: 2 * o[0].numel * (i[3].shape[1] + i[5].shape[1]) * 4)
def _quantized_lstm(x: np.ndarray, h0: np.ndarray, c0: np.ndarray, w_ih: np.ndarray, w_ih_scale: np.ndarray,
                    w_hh: np.ndarray, w_hh_scale: np.ndarray, b_ih: np.ndarray, b_hh: np.ndarray, *,
                    batch_first: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """lstm (gates i, f, g, o) with int8 weights (symmetric, a scale per gate row or one in all) and both GEMMs in
    integers: the input projection of all steps at once with x quantized once (one scale for the sequence), the
    recurrent one per step with h quantized per step — uint8 0..255, summed in int32, rescaled by the two scales;
    gates, cell and state in f32. What ONNX Runtime's DynamicQuantizeLSTM computes."""
    from scipy.special import expit

    seq = x.astype(np.float32).swapaxes(0, 1) if batch_first else x.astype(np.float32)
    s_ih = w_ih_scale.astype(np.float32).reshape(-1)
    s_hh = w_hh_scale.astype(np.float32).reshape(-1)
    b = b_ih.astype(np.float32) + b_hh.astype(np.float32)
    xq, sx = _lstm_codes(seq)
    xs = (xq @ w_ih.astype(np.int64).T).astype(np.float32) * (sx * s_ih) + b  # exact int sums, one rescale
    h, c = h0.astype(np.float32)[0], c0.astype(np.float32)[0]
    wh = w_hh.astype(np.int64).T
    ys = []
    for t in range(seq.shape[0]):
        hq, sh = _lstm_codes(h)
        i, f, g, o = np.split(xs[t] + (hq @ wh).astype(np.float32) * (sh * s_hh), 4, axis=-1)
        c = expit(f) * c + expit(i) * np.tanh(g)
        h = expit(o) * np.tanh(c)
        ys.append(h)
    y = np.stack(ys).astype(np.float32)
    if batch_first:
        y = y.swapaxes(0, 1)
    return np.ascontiguousarray(y), h[None].astype(np.float32), c[None].astype(np.float32)
