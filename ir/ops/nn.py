"""Neural-network ops: matmul, linear, convolution, pooling, normalisation, LSTM, attention, quantization."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..dtypes import DType
from ..symbolic import dim_add, dim_floordiv, dim_mul
from ..types import Dim, TensorType
from .registry import Attr, ConcreteType, ShapeError, register_op, same_as_input
from .shapes import broadcast, compute_dtype, norm_axis, tt
from .traits import AxisRef, I, O, Tie, Trait, tie

_QUANT, _SENSITIVE, _SCALE = [Trait.QUANTIZABLE], [Trait.PRECISION_SENSITIVE], [Trait.SCALE_TRANSPARENT]


def _c(x: np.ndarray) -> np.ndarray:
    """Half types compute in f32."""
    return x.astype(compute_dtype(DType.from_numpy(x.dtype)).numpy, copy=False)


def _same_dtype(op: str, *types: TensorType) -> DType:
    dtypes = {t.dtype for t in types}
    if len(dtypes) != 1:
        raise ShapeError(f"{op} inputs must share a dtype, got {', '.join(str(t.dtype) for t in types)}")
    return dtypes.pop()


def _check_k(a: Dim, b: Dim, what: str) -> None:
    if isinstance(a, int) and isinstance(b, int) and a != b:
        raise ShapeError(f"{what}: contraction dims differ ({a} vs {b})")


# -- einsum -----------------------------------------------------------------------------------------------
def _einsum_terms(equation: str, ranks: list[int]) -> tuple[list[str], str]:
    """Operand subscripts with '...' expanded to capital letters, and the output subscript."""
    eq = equation.replace(" ", "")
    lhs, _, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ShapeError(f"einsum {equation!r} names {len(terms)} operands, got {len(ranks)}")
    ell = max((r - (len(t) - 3) for t, r in zip(terms, ranks) if "..." in t), default=0)
    caps = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out_terms = []
    for t, r in zip(terms, ranks):
        if "..." in t:
            k = r - (len(t) - 3)
            t = t.replace("...", caps[ell - k:ell])
        if len(t) != r:
            raise ShapeError(f"einsum term {t!r} does not match an operand of rank {r}")
        out_terms.append(t)
    if "->" in eq:
        out = rhs.replace("...", caps[:ell])
    else:
        letters = "".join(out_terms)
        out = caps[:ell] + "".join(sorted(ch for ch in set(letters) if ch.islower() and letters.count(ch) == 1))
    return out_terms, out


def _einsum_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    terms, out = _einsum_terms(attrs["equation"], [t.rank for t in types])
    dims: dict[str, Dim] = {}
    for term, t in zip(terms, types):
        for ch, d in zip(term, t.shape):
            if ch.isupper() and dims.get(ch, 1) == 1 or ch not in dims:
                dims[ch] = d
    return tt(_same_dtype("einsum", *types), tuple(dims[ch] for ch in out))


def _einsum_flow(ins: Any, outs: Any, attrs: Mapping[str, Any]) -> list[Tie]:
    """Axes that share a letter index the same thing: each operand axis ties to the output's axis of its letter,
    or, for a summed letter, to the first operand axis that carries it (a contraction)."""
    terms, out = _einsum_terms(attrs["equation"], [t.rank for t in ins])
    first: dict[str, Any] = {ch: O(0, k) for k, ch in enumerate(out)}
    ties = []
    for i, term in enumerate(terms):
        for k, ch in enumerate(term):
            if ch not in first:
                first[ch] = I(i, k)
            elif ins[i].shape[k] != 1 or ch.islower():
                ties.append(tie(first[ch], I(i, k)))
    return ties


@register_op("einsum", inputs=["operands*"], infer=_einsum_infer, attrs={"equation": Attr("str")},
             dim_flow=_einsum_flow, traits=_QUANT,
             flops=lambda i, o, a: 2 * max(o[0].numel, 1) * max((t.numel for t in i), default=1))
def _einsum(*operands: np.ndarray, equation: str) -> np.ndarray:
    """Einstein summation (numpy/torch einsum), computed in f32 for half types."""
    return np.einsum(equation, *[_c(x) for x in operands], optimize=True).astype(operands[0].dtype, copy=False)


# -- matmul / linear -------------------------------------------------------------------------------------
def _matmul_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    a, b = types
    dtype = _same_dtype("matmul", a, b)
    if a.rank == 0 or b.rank == 0:
        raise ShapeError("matmul inputs must have rank >= 1")
    sa = a.shape if a.rank > 1 else (1,) + a.shape
    sb = b.shape if b.rank > 1 else b.shape + (1,)
    _check_k(sa[-1], sb[-2], f"matmul [{','.join(map(str, a.shape))}] @ [{','.join(map(str, b.shape))}]")
    out = broadcast(sa[:-2], sb[:-2]) + ((sa[-2],) if a.rank > 1 else ()) + ((sb[-1],) if b.rank > 1 else ())
    return tt(dtype, out)


def _matmul_flops(i: list[ConcreteType], o: list[ConcreteType], a: Mapping[str, Any]) -> int:
    return 2 * o[0].numel * i[0].shape[-1]


def _matmul_flow(ins: Any, outs: Any, attrs: Mapping[str, Any]) -> list[Tie]:
    """Batch axes as broadcasting does; a's rows and b's columns reach the output; a's columns meet b's rows."""
    a, b = ins
    out = outs[0]
    ties = []
    batch = out.rank - (a.rank > 1) - (b.rank > 1)
    for k in range(batch):
        for i, t in enumerate((a, b)):
            j = k - (batch - (t.rank - 2))
            if t.rank > 2 and j >= 0 and t.shape[j] == out.shape[k]:
                ties.append(tie(O(0, k), I(i, j)))
    if a.rank > 1:
        ties.append(tie(O(0, batch), I(0, a.rank - 2)))
    if b.rank > 1:
        ties.append(tie(O(0, out.rank - 1), I(1, b.rank - 1)))
    ties.append(tie(I(0, a.rank - 1), I(1, max(b.rank - 2, 0))))
    return ties


@register_op("matmul", inputs=["a", "b"], infer=_matmul_infer, flops=_matmul_flops, traits=_QUANT,
             dim_flow=_matmul_flow)
def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched matrix product with broadcasting (torch.matmul)."""
    return np.matmul(_c(a), _c(b)).astype(a.dtype, copy=False)


def _linear_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    x, w = types[0], types[1]
    dtype = _same_dtype("linear", *types)
    if w.rank != 2 or x.rank < 1:
        raise ShapeError(f"linear needs x[..., in] and weight[out, in], got {x} and {w}")
    _check_k(x.shape[-1], w.shape[1], "linear")
    if len(types) == 3 and types[2].shape not in ((w.shape[0],), ()):
        raise ShapeError(f"linear bias must have shape [{w.shape[0]}], got {types[2]}")
    return tt(dtype, x.shape[:-1] + (w.shape[0],))


# The epilogues GEMM and convolution libraries fuse (oneDNN post-ops); each is exactly the separate op applied to
# the rounded result.
ACTIVATIONS = {"none": None, "relu": ("relu", {}), "gelu": ("gelu", {"approximate": "none"}),
                      "gelu_tanh": ("gelu", {"approximate": "tanh"}), "silu": ("silu", {}), "tanh": ("tanh", {})}


def _linear_flow(ins: Any, outs: Any, attrs: Mapping[str, Any]) -> list[Tie]:
    x = ins[0]
    return ([tie(O(0, k), I(0, k)) for k in range(x.rank - 1)] + [tie(I(0, x.rank - 1), I(1, 1))]
            + [tie(O(0, x.rank - 1), I(1, 0))] + ([tie(O(0, x.rank - 1), I(2, 0))] if len(ins) > 2 and ins[2].rank
                                                      else []))


@register_op("linear", inputs=["x", "weight", "bias?"], infer=_linear_infer, flops=_matmul_flops, traits=_QUANT,
             dim_flow=_linear_flow,
             attrs={"activation": Attr("str", "none", choices=tuple(ACTIVATIONS))})
def _linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, *, activation: str) -> np.ndarray:
    """act(x @ weight.T + bias), weight laid out [out_features, in_features] (torch.nn.functional.linear).

    `activation` is the epilogue GEMM libraries fuse (relu, gelu, gelu_tanh, silu, tanh); it is exactly the
    separate activation op applied to the rounded linear result."""
    y = np.matmul(_c(x), _c(weight).T)
    if bias is not None:
        y = y + _c(bias)
    return _activate(y.astype(x.dtype, copy=False), activation)


def _activate(y: np.ndarray, activation: str) -> np.ndarray:
    from .registry import get_op

    act = ACTIVATIONS[activation]
    return y if act is None else get_op(act[0]).kernel(y, **act[1])


# -- convolution and pooling -----------------------------------------------------------------------------
_SPATIAL = {
    "strides": Attr("ints", None, optional=True),
    "pads": Attr("ints", None, optional=True),
    "dilations": Attr("ints", None, optional=True),
}


def _spatial(attrs: Mapping[str, Any], nd: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    strides = attrs["strides"] or (1,) * nd
    pads = attrs["pads"] or (0,) * (2 * nd)
    dil = attrs["dilations"] or (1,) * nd
    if len(strides) != nd or len(pads) != 2 * nd or len(dil) != nd:
        raise ShapeError(f"strides/dilations need {nd} entries and pads {2 * nd} (begins then ends)")
    return strides, pads, dil


def _spatial_complete(types: list[TensorType], attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Strides, pads and dilations written out (ONNX's defaults), so every consumer reads them the same way."""
    nd = len(attrs["kernel"]) if "kernel" in attrs else types[0].rank - 2
    return {"strides": attrs["strides"] or (1,) * nd, "pads": attrs["pads"] or (0,) * (2 * nd),
            "dilations": attrs["dilations"] or (1,) * nd}


def _channel_flow(ins: Any, outs: Any, attrs: Mapping[str, Any]) -> list[Tie]:
    """Pools: batch and channel axes reach the output; spatial axes are windows (no tie)."""
    return [tie(O(0, 0), I(0, 0)), tie(O(0, 1), I(0, 1))]


def _conv_flow(ins: Any, outs: Any, attrs: Mapping[str, Any]) -> list[Tie]:
    """Output channels are the weight's rows (and the bias's, and the residual's channels); input channels meet the
    weight's second axis when groups == 1; a grouped conv ties input to output channels by whole groups (a depthwise
    one, one channel per group, passes channels through)."""
    ties = [tie(O(0, 0), I(0, 0)), tie(O(0, 1), I(1, 0))]
    if len(ins) > 2:
        ties.append(tie(O(0, 1), I(2, 0)))
    if len(ins) > 3:
        ties += [tie(O(0, k), I(3, k)) for k in range(outs[0].rank)]
    g = attrs["groups"]
    if g == 1:
        ties.append(tie(I(0, 1), I(1, 1)))
    elif g > 1:  # group k reads input channels block k and writes output block k: whole groups go together
        ties.append(tie(O(0, 1), I(0, 1), blocks=g))
    return ties


def _out_len(n: int, k: int, s: int, p0: int, p1: int, d: int, ceil_mode: bool = False) -> int:
    span = n + p0 + p1 - d * (k - 1) - 1
    if span < 0:
        raise ShapeError(f"window of {k} (dilation {d}) does not fit an input of {n} padded by {p0}+{p1}")
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= n + p0:  # the last window must start inside input or left padding
        out -= 1
    return out


def _window_shape(t: TensorType, kernel: tuple[int, ...], attrs: Mapping[str, Any], ceil_mode: bool = False
                  ) -> tuple[Dim, ...]:
    nd = len(kernel)
    strides, pads, dil = _spatial(attrs, nd)
    out: list[Dim] = []
    for i in range(nd):
        n = t.shape[2 + i]
        if not isinstance(n, int):  # audio, variable resolution: assumes the input is at least one window long
            if ceil_mode:
                raise ShapeError(f"spatial dim {2 + i} is symbolic ({n}); ceil_mode pooling needs static sizes")
            span = pads[i] + pads[i + nd] - dil[i] * (kernel[i] - 1) - 1
            out.append(dim_add(dim_floordiv(dim_add(n, span), strides[i]), 1))
            continue
        out.append(_out_len(n, kernel[i], strides[i], pads[i], pads[i + nd], dil[i], ceil_mode))
    return tuple(out)


def _conv_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    x, w = types[0], types[1]
    dtype = _same_dtype("conv", *types)
    if x.rank < 3 or w.rank != x.rank:
        raise ShapeError(f"conv needs x[N,C,...] and weight[M,C/groups,...] of equal rank, got {x} and {w}")
    g = attrs["groups"]
    if isinstance(x.shape[1], int) and isinstance(w.shape[1], int) and x.shape[1] != w.shape[1] * g:
        raise ShapeError(f"conv input has {x.shape[1]} channels, weight expects {w.shape[1]} x {g} groups")
    kernel = tuple(int(k) for k in w.shape[2:])
    out = tt(dtype, (x.shape[0], w.shape[0]) + _window_shape(x, kernel, attrs))
    if len(types) > 2 and types[2].shape != (w.shape[0],):
        raise ShapeError(f"conv bias must have shape [{w.shape[0]}], got {types[2]}")
    if len(types) > 3 and types[3].shape != out.shape:
        raise ShapeError(f"conv residual must have the output's shape {list(out.shape)}, got {types[3]}")
    return out


def _conv_flops(i: list[ConcreteType], o: list[ConcreteType], a: Mapping[str, Any]) -> int:
    return 2 * o[0].numel * math.prod(i[1].shape[1:])


def _windows(x: np.ndarray, kernel: tuple[int, ...], strides: tuple[int, ...], dil: tuple[int, ...],
             out: tuple[int, ...]) -> np.ndarray:
    """[N, C, *out, *kernel] view of the (already padded) input."""
    nd = len(kernel)
    eff = tuple((k - 1) * d + 1 for k, d in zip(kernel, dil))
    win = sliding_window_view(x, eff, axis=tuple(range(2, 2 + nd)))
    index: tuple[slice, ...] = (slice(None), slice(None))
    index += tuple(slice(0, o * s, s) for o, s in zip(out, strides))
    index += tuple(slice(None, None, d) for d in dil)
    return win[index]


def _pad_spatial(x: np.ndarray, pads: tuple[int, ...], value: float) -> np.ndarray:
    nd = x.ndim - 2
    widths = [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)]
    return np.pad(x, widths, constant_values=value)


def _conv_resize(ins: Any, outs: Any, attrs: Mapping[str, Any], removed: Mapping[Any, Any]) -> dict[str, Any]:
    """A grouped convolution loses whole groups (its dimension flow ties input and output channels by blocks):
    `groups` drops by the output channels removed over each group's share of them."""
    g = attrs["groups"]
    if g == 1:
        return dict(attrs)
    per_group_out, per_group_in = ins[1].shape[0] // g, ins[1].shape[1]
    gone_out = len(removed.get(AxisRef("out", 0, 1), ()))
    gone_in = len(removed.get(AxisRef("in", 0, 1), ()))
    if gone_out % per_group_out or gone_in != gone_out // per_group_out * per_group_in:
        raise ValueError(f"a grouped convolution (groups={g}) loses channels only by whole groups: {gone_out} output "
                         f"and {gone_in} input channels are not whole groups of {per_group_out} and {per_group_in}")
    return {**attrs, "groups": g - gone_out // per_group_out}


@register_op("conv", inputs=["x", "weight", "bias?", "residual?"], infer=_conv_infer, flops=_conv_flops,
             traits=_QUANT, dim_flow=_conv_flow, complete=_spatial_complete, resize=_conv_resize,
             attrs={**_SPATIAL, "groups": Attr("int", 1), "activation": Attr("str", "none", choices=tuple(ACTIVATIONS))})
def _conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, residual: np.ndarray | None = None, *,
          strides: Any, pads: Any, dilations: Any, groups: int, activation: str) -> np.ndarray:
    """N-d convolution (cross-correlation) with groups; pads are begins then ends (ONNX Conv).

    The epilogue convolution libraries fuse: `activation(conv + bias + residual)`, with `residual` (the skip
    connection of a residual block) of the output's shape, each step rounded as the separate ops would."""
    nd = x.ndim - 2
    kernel = weight.shape[2:]
    strides, pads, dil = _spatial({"strides": strides, "pads": pads, "dilations": dilations}, nd)
    out = tuple(_out_len(x.shape[2 + i], kernel[i], strides[i], pads[i], pads[i + nd], dil[i]) for i in range(nd))
    win = _windows(_pad_spatial(_c(x), pads, 0.0), kernel, strides, dil, out)
    n, c = x.shape[:2]
    m = weight.shape[0]
    win = win.reshape((n, groups, c // groups) + out + tuple(kernel))
    w = _c(weight).reshape((groups, m // groups, c // groups) + tuple(kernel))
    letters = "opqrst"[:nd]
    klet = "uvwxyz"[:nd]
    y = np.einsum(f"ngc{letters}{klet},gmc{klet}->ngm{letters}", win, w, optimize=True)
    y = y.reshape((n, m) + out)
    if bias is not None:
        y = y + _c(bias).reshape((1, m) + (1,) * nd)
    y = y.astype(x.dtype, copy=False)
    if residual is not None:
        y = (y + residual).astype(x.dtype, copy=False)
    return _activate(y, activation)


def _conv_t_shape(x: TensorType, w: TensorType, attrs: Mapping[str, Any]) -> tuple[Dim, ...]:
    nd = x.rank - 2
    strides, pads, dil = _spatial(attrs, nd)
    extra = attrs["output_padding"] or (0,) * nd
    out: list[Dim] = []
    for i in range(nd):
        n, k = x.shape[2 + i], w.shape[2 + i]
        if not isinstance(k, int):
            raise ShapeError("conv_transpose needs a static kernel")
        const = -strides[i] + extra[i] + (k - 1) * dil[i] + 1 - pads[i] - pads[i + nd]
        out.append(dim_add(dim_mul(strides[i], n), const))
    return tuple(out)


def _conv_t_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    x, w = types[0], types[1]
    dtype = _same_dtype("conv_transpose", *types)
    if x.rank < 3 or w.rank != x.rank or x.shape[1] != w.shape[0]:
        raise ShapeError(f"conv_transpose needs x[N,C,...] and weight[C,M/groups,...], got {x} and {w}")
    return tt(dtype, (x.shape[0], w.shape[1] * attrs["groups"]) + _conv_t_shape(x, w, attrs))


@register_op("conv_transpose", inputs=["x", "weight", "bias?"], infer=_conv_t_infer, complete=_spatial_complete,
             flops=lambda i, o, a: 2 * i[0].numel * math.prod(i[1].shape[1:]),
             attrs={**_SPATIAL, "output_padding": Attr("ints", None, optional=True), "groups": Attr("int", 1)})
def _conv_transpose(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, *, strides: Any, pads: Any,
                    dilations: Any, output_padding: Any, groups: int) -> np.ndarray:
    """Transposed convolution (ONNX ConvTranspose): each input element scatters weight-scaled copies."""
    nd = x.ndim - 2
    strides, pads, dil = _spatial({"strides": strides, "pads": pads, "dilations": dilations}, nd)
    extra = output_padding or (0,) * nd
    n, c = x.shape[:2]
    kernel = weight.shape[2:]
    m = weight.shape[1] * groups
    full = tuple(strides[i] * (x.shape[2 + i] - 1) + (kernel[i] - 1) * dil[i] + 1 + extra[i] for i in range(nd))
    y = np.zeros((n, groups, m // groups) + full, dtype=np.float64 if x.dtype == np.float64 else np.float32)
    xg = _c(x).reshape((n, groups, c // groups) + x.shape[2:])
    wg = _c(weight).reshape((groups, c // groups, m // groups) + tuple(kernel))
    letters = "opqrst"[:nd]
    for offs in np.ndindex(*kernel):
        contrib = np.einsum(f"ngc{letters},gcm->ngm{letters}", xg, wg[(slice(None),) * 3 + offs], optimize=True)
        where = tuple(slice(o * d, o * d + s * (size - 1) + 1, s)
                      for o, d, s, size in zip(offs, dil, strides, x.shape[2:]))
        y[(slice(None),) * 3 + where] += contrib
    y = y.reshape((n, m) + full)
    y = y[(slice(None), slice(None)) + tuple(slice(pads[i], full[i] - pads[i + nd]) for i in range(nd))]
    if bias is not None:
        y = y + _c(bias).reshape((1, m) + (1,) * nd)
    return y.astype(x.dtype, copy=False)


def _pool_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    x = types[0]
    kernel = attrs["kernel"]
    if x.rank != len(kernel) + 2:
        raise ShapeError(f"a {len(kernel)}-d pool needs a rank-{len(kernel) + 2} input, got {x}")
    return x.with_shape(x.shape[:2] + _window_shape(x, kernel, attrs, attrs["ceil_mode"]))


def _pool_flops(i: list[ConcreteType], o: list[ConcreteType], a: Mapping[str, Any]) -> int:
    return o[0].numel * math.prod(a["kernel"])


def _pool_geometry(x: np.ndarray, kernel: tuple[int, ...], attrs: dict[str, Any]
                   ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """strides, dilations, output size, and pads widened at the end so ceil_mode windows fit."""
    nd = len(kernel)
    strides, pads, dil = _spatial(attrs, nd)
    out = tuple(_out_len(x.shape[2 + i], kernel[i], strides[i], pads[i], pads[i + nd], dil[i], attrs["ceil_mode"])
                for i in range(nd))
    ends = tuple(max(pads[i + nd], (out[i] - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - x.shape[2 + i] - pads[i])
                 for i in range(nd))
    return strides, dil, out, tuple(pads[:nd]) + ends, pads


@register_op("max_pool", inputs=["x"], infer=_pool_infer, flops=_pool_flops, traits=_SCALE, dim_flow=_channel_flow,
             complete=_spatial_complete,
             attrs={"kernel": Attr("ints"), **_SPATIAL, "ceil_mode": Attr("bool", False)})
def _max_pool(x: np.ndarray, *, kernel: tuple[int, ...], **attrs: Any) -> np.ndarray:
    """Max over windows; padding never wins (torch max_pool)."""
    strides, dil, out, wide, _ = _pool_geometry(x, kernel, attrs)
    lowest = -np.inf if DType.from_numpy(x.dtype).is_float else np.iinfo(x.dtype).min
    win = _windows(_pad_spatial(_c(x), wide, lowest), kernel, strides, dil, out)
    return win.max(axis=tuple(range(-len(kernel), 0))).astype(x.dtype, copy=False)


@register_op("avg_pool", inputs=["x"], infer=_pool_infer, flops=_pool_flops, traits=_SCALE, dim_flow=_channel_flow,
             complete=_spatial_complete,
             attrs={"kernel": Attr("ints"), **_SPATIAL, "ceil_mode": Attr("bool", False),
                    "count_include_pad": Attr("bool", True)})
def _avg_pool(x: np.ndarray, *, kernel: tuple[int, ...], count_include_pad: bool, **attrs: Any) -> np.ndarray:
    """Mean over windows; the divisor counts declared padding if count_include_pad, never ceil_mode overhang."""
    strides, dil, out, wide, pads = _pool_geometry(x, kernel, attrs)
    nd = len(kernel)
    axes = tuple(range(-nd, 0))
    total = _windows(_pad_spatial(_c(x), wide, 0.0), kernel, strides, dil, out).sum(axis=axes)
    ones = np.ones((1, 1) + x.shape[2:], np.float32)
    if count_include_pad:  # declared padding counts, the ceil_mode overhang does not
        ones = _pad_spatial(ones, pads, 1.0)
        wide = tuple(0 for _ in range(nd)) + tuple(w - p for w, p in zip(wide[nd:], pads[nd:]))
    count = _windows(_pad_spatial(ones, wide, 0.0), kernel, strides, dil, out).sum(axis=axes)
    return (total / count).astype(x.dtype, copy=False)


def _adaptive_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    x, size = types[0], attrs["output_size"]
    if x.rank != len(size) + 2:
        raise ShapeError(f"output_size {list(size)} does not match input rank {x.rank}")
    return x.with_shape(x.shape[:2] + tuple(size))


@register_op("adaptive_avg_pool", inputs=["x"], infer=_adaptive_infer, attrs={"output_size": Attr("ints")},
             traits=_SCALE, dim_flow=_channel_flow,
             flops=lambda i, o, a: i[0].numel)
def _adaptive_avg_pool(x: np.ndarray, *, output_size: tuple[int, ...]) -> np.ndarray:
    """Average pooling to a fixed output size; bin i covers [floor(i*n/out), ceil((i+1)*n/out))."""
    y = _c(x)
    for i, out in enumerate(output_size):
        axis = 2 + i
        n = y.shape[axis]
        parts = [np.take(y, np.arange((j * n) // out, -(-((j + 1) * n) // out)), axis=axis).mean(axis=axis,
                                                                                               keepdims=True)
                 for j in range(out)]
        y = np.concatenate(parts, axis=axis)
    return y.astype(x.dtype, copy=False)


# -- normalisation ---------------------------------------------------------------------------------------
@register_op("batch_norm", inputs=["x", "scale", "bias", "mean", "var"], infer=same_as_input,
             dim_flow=lambda i, o, a: [tie(O(0, k), I(0, k)) for k in range(i[0].rank)]
             + [tie(O(0, 1), I(p, 0)) for p in range(1, 5)],
             attrs={"eps": Attr("float", 1e-5)}, flops=lambda i, o, a: 2 * o[0].numel)
def _batch_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, mean: np.ndarray, var: np.ndarray, *,
                eps: float) -> np.ndarray:
    """Inference batch norm over channel axis 1 with running statistics."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = _c(scale) / np.sqrt(_c(var) + np.float32(eps))
    y = (_c(x) - _c(mean).reshape(shape)) * inv.reshape(shape) + _c(bias).reshape(shape)
    return y.astype(x.dtype, copy=False)


def _norm_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    x = types[0]
    if not x.dtype.is_float:
        raise ShapeError(f"normalisation needs a floating point input, got {x.dtype}")
    ax = norm_axis(attrs["axis"], x.rank)
    for t in types[1:]:
        if t.shape != x.shape[ax:]:
            raise ShapeError(f"scale/bias must have shape [{','.join(map(str, x.shape[ax:]))}], got {t}")
    return x


def _norm_flow(ins: Any, outs: Any, attrs: Mapping[str, Any]) -> list[Tie]:
    """Leading axes pass through; normalized axes too, but removing one of their elements changes the statistics of
    the rest (lossy); the affine parameters' axes are the normalized ones."""
    x = ins[0]
    ax = norm_axis(attrs["axis"], x.rank)
    ties = [tie(O(0, k), I(0, k), exact=k < ax) for k in range(x.rank)]
    return ties + [tie(O(0, ax + k), I(p, k)) for p in range(1, len(ins)) for k in range(x.rank - ax)]


@register_op("layer_norm", inputs=["x", "scale?", "bias?"], infer=_norm_infer, flops=lambda i, o, a: 8 * o[0].numel,
             traits=_SENSITIVE, dim_flow=_norm_flow,
             attrs={"axis": Attr("int", -1), "eps": Attr("float", 1e-5)})
def _layer_norm(x: np.ndarray, scale: np.ndarray | None = None, bias: np.ndarray | None = None, *, axis: int,
                eps: float) -> np.ndarray:
    """Normalise over dims axis..rank-1 (biased variance), then scale and shift."""
    axes = tuple(range(norm_axis(axis, x.ndim), x.ndim))
    z = _c(x)
    mean = z.mean(axis=axes, keepdims=True)
    var = ((z - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (z - mean) / np.sqrt(var + np.float32(eps))
    if scale is not None:
        y = y * _c(scale)
    if bias is not None:
        y = y + _c(bias)
    return y.astype(x.dtype, copy=False)


@register_op("rms_norm", inputs=["x", "scale?"], infer=_norm_infer, flops=lambda i, o, a: 4 * o[0].numel,
             traits=_SENSITIVE, dim_flow=_norm_flow,
             attrs={"axis": Attr("int", -1), "eps": Attr("float", 1e-6)})
def _rms_norm(x: np.ndarray, scale: np.ndarray | None = None, *, axis: int, eps: float) -> np.ndarray:
    """x / sqrt(mean(x^2) + eps) over dims axis..rank-1, then scale."""
    axes = tuple(range(norm_axis(axis, x.ndim), x.ndim))
    z = _c(x)
    y = z / np.sqrt((z * z).mean(axis=axes, keepdims=True) + np.float32(eps))
    if scale is not None:
        y = y * _c(scale)
    return y.astype(x.dtype, copy=False)


# -- recurrent -------------------------------------------------------------------------------------------
def _recurrent_infer(name: str, gates: int) -> Callable[[list[TensorType], Mapping[str, Any]], list[TensorType]]:
    """Types of an lstm (4 gates; states h, c), gru (3 gates; state h) or rnn (1 gate; state h): inputs x,
    *states, w_ih, w_hh, biases."""
    states = 2 if gates == 4 else 1

    def infer(types: list[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
        x, w_ih, w_hh = types[0], types[1 + states], types[2 + states]
        dtype = _same_dtype(name, *types)
        hidden = w_hh.shape[1]
        if x.rank != 3 or w_ih.rank != 2 or w_hh.rank != 2:
            raise ShapeError(f"{name} needs x[T,B,I] (or [B,T,I] with batch_first), w_ih[{gates}H,I], "
                             f"w_hh[{gates}H,H]")
        if isinstance(hidden, int) and w_hh.shape[0] != gates * hidden:
            raise ShapeError(f"w_hh must be [{gates}H, H], got {w_hh}")
        _check_k(x.shape[2], w_ih.shape[1], f"{name} input size")
        return [tt(dtype, (x.shape[0], x.shape[1], hidden)), *types[1:1 + states]]

    return infer


def _recurrent_flow(gates: int, states: int) -> Any:
    """Hidden unit j is y[..., j], every state's [.., j], w_hh's column j, and row g·H + j of each gate g in w_ih,
    w_hh, b_ih and b_hh (gates stacked as torch and ONNX stack them); x's features meet w_ih's columns. Time steps
    are coupled (dropping one changes the later states): lossy."""
    def flow(ins: Any, outs: Any, attrs: Mapping[str, Any]) -> list[Tie]:
        w_ih = 1 + states
        w_hh, b_ih, b_hh = w_ih + 1, w_ih + 2, w_ih + 3
        hidden = outs[0].shape[-1]
        seq, batch = (1, 0) if attrs["batch_first"] else (0, 1)
        ties = [tie(O(0, seq), I(0, seq), exact=False), tie(O(0, batch), I(0, batch)), tie(I(0, 2), I(w_ih, 1)),
                tie(O(0, 2), I(w_hh, 1))]
        for k in range(states):
            ties += [tie(O(0, 2), I(1 + k, 2)), tie(I(1 + k, 1), I(0, batch))]
        for k in range(1, len(outs)):
            ties += [tie(O(0, 2), O(k, 2)), tie(O(k, 1), I(0, batch))]
        if isinstance(hidden, int):
            for g in range(gates):
                ties += [tie(I(w, 0), O(0, 2), offset=g * hidden) for w in (w_ih, w_hh, b_ih, b_hh)]
        return ties
    return flow


@register_op("lstm", inputs=["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"], outputs=["y", "h_n", "c_n"],
             infer=_recurrent_infer("lstm", 4), attrs={"batch_first": Attr("bool", False)}, dim_flow=_recurrent_flow(4, 2),
             flops=lambda i, o, a: 2 * o[0].numel * (i[3].shape[1] + i[4].shape[1]) * 4)
def _lstm(x: np.ndarray, h0: np.ndarray, c0: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray,
          b_hh: np.ndarray, *, batch_first: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One unidirectional LSTM layer, gates ordered i, f, g, o (torch.nn.LSTM). h0/c0 are [1, B, H]."""
    from scipy.special import expit

    seq = _c(x).swapaxes(0, 1) if batch_first else _c(x)
    h, c = _c(h0)[0], _c(c0)[0]
    wi, wh, b = _c(w_ih).T, _c(w_hh).T, _c(b_ih) + _c(b_hh)
    xs = seq @ wi + b  # input projections for all steps at once
    ys = []
    for t in range(seq.shape[0]):
        i, f, g, o = np.split(xs[t] + h @ wh, 4, axis=-1)
        c = expit(f) * c + expit(i) * np.tanh(g)
        h = expit(o) * np.tanh(c)
        ys.append(h)
    y = np.stack(ys)
    if batch_first:
        y = y.swapaxes(0, 1)
    return y.astype(x.dtype), h[None].astype(x.dtype), c[None].astype(x.dtype)


@register_op("gru", inputs=["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"], outputs=["y", "h_n"],
             infer=_recurrent_infer("gru", 3), dim_flow=_recurrent_flow(3, 1),
             attrs={"batch_first": Attr("bool", False), "linear_before_reset": Attr("bool", True)},
             flops=lambda i, o, a: 2 * o[0].numel * (i[2].shape[1] + i[3].shape[1]) * 3)
def _gru(x: np.ndarray, h0: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray, b_hh: np.ndarray, *,
         batch_first: bool, linear_before_reset: bool) -> tuple[np.ndarray, np.ndarray]:
    """One unidirectional GRU layer, gates ordered r, z, n. With linear_before_reset (torch.nn.GRU) the reset gate
    scales W_hn·h + b_hn; without it (ONNX's default, Keras) it scales h before that linear. h0 is [1, B, H]."""
    from scipy.special import expit

    seq = _c(x).swapaxes(0, 1) if batch_first else _c(x)
    h = _c(h0)[0]
    xs = seq @ _c(w_ih).T + _c(b_ih)  # input projections for all steps at once
    wh, bh = _c(w_hh).T, _c(b_hh)
    ys = []
    for t in range(seq.shape[0]):
        xr, xz, xn = np.split(xs[t], 3, axis=-1)
        hr, hz, hn = np.split(h @ wh + bh, 3, axis=-1)
        r, z = expit(xr + hr), expit(xz + hz)
        if linear_before_reset:
            n = np.tanh(xn + r * hn)
        else:
            size = h.shape[-1]
            n = np.tanh(xn + (r * h) @ wh[:, 2 * size:] + bh[2 * size:])
        h = (1 - z) * n + z * h
        ys.append(h)
    y = np.stack(ys)
    if batch_first:
        y = y.swapaxes(0, 1)
    return y.astype(x.dtype), h[None].astype(x.dtype)


@register_op("rnn", inputs=["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"], outputs=["y", "h_n"],
             infer=_recurrent_infer("rnn", 1), dim_flow=_recurrent_flow(1, 1),
             attrs={"batch_first": Attr("bool", False), "nonlinearity": Attr("str", "tanh", choices=("tanh", "relu"))},
             flops=lambda i, o, a: 2 * o[0].numel * (i[2].shape[1] + i[3].shape[1]))
def _rnn(x: np.ndarray, h0: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray, b_hh: np.ndarray, *,
         batch_first: bool, nonlinearity: str) -> tuple[np.ndarray, np.ndarray]:
    """One unidirectional Elman RNN layer (torch.nn.RNN, ONNX RNN): h = act(x·W_ihᵀ + b_ih + h·W_hhᵀ + b_hh)."""
    seq = _c(x).swapaxes(0, 1) if batch_first else _c(x)
    h = _c(h0)[0]
    xs = seq @ _c(w_ih).T + _c(b_ih)
    act = np.tanh if nonlinearity == "tanh" else (lambda v: np.maximum(v, 0))
    ys = []
    for t in range(seq.shape[0]):
        h = act(xs[t] + h @ _c(w_hh).T + _c(b_hh))
        ys.append(h)
    y = np.stack(ys) if ys else np.zeros((0, *h.shape))
    if batch_first:
        y = y.swapaxes(0, 1)
    return y.astype(x.dtype), h[None].astype(x.dtype)


# -- attention -------------------------------------------------------------------------------------------
def _sdpa_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    q, k, v = types[:3]
    _same_dtype("scaled_dot_product_attention", q, k, v)
    _check_k(q.shape[-1], k.shape[-1], "attention q/k head size")
    return q.with_shape(broadcast(q.shape[:-2], v.shape[:-2]) + (q.shape[-2], v.shape[-1]))


def _sdpa_flow(ins: Any, outs: Any, attrs: Mapping[str, Any]) -> list[Tie]:
    """Batch and head axes pass from q (and from k and v where they are not broadcast or grouped); q's rows and v's
    columns reach the output; q and k meet on the head size (lossy when the scale defaults to 1/sqrt of it); k and v
    share the key axis, whose removal renormalizes the softmax (lossy), as does the mask's."""
    q, k, v = ins[:3]
    out = outs[0]
    r = out.rank
    # a causal mask is by position: removing a query row or a key shifts which keys the later rows see
    ties = [tie(O(0, r - 2), I(0, q.rank - 2), exact=not attrs["causal"]), tie(O(0, r - 1), I(2, v.rank - 1)),
            tie(I(0, q.rank - 1), I(1, k.rank - 1), exact=attrs["scale"] is not None),
            tie(I(1, k.rank - 2), I(2, v.rank - 2), exact=False)]
    for j in range(r - 2):
        for i, t in enumerate((q, k, v)):
            a = j - (r - t.rank)
            if a >= 0 and t.shape[a] == out.shape[j]:
                ties.append(tie(O(0, j), I(i, a)))
    if len(ins) > 3:
        m = ins[3]
        for j in range(r - 1):
            a = j - (r - m.rank)
            if a >= 0 and m.shape[a] == out.shape[j]:
                ties.append(tie(O(0, j), I(3, a)))
        if m.rank and m.shape[-1] == k.shape[-2]:
            ties.append(tie(I(1, k.rank - 2), I(3, m.rank - 1), exact=False))
    return ties


@register_op("scaled_dot_product_attention", inputs=["q", "k", "v", "mask?"], infer=_sdpa_infer,
             traits=_SENSITIVE, dim_flow=_sdpa_flow,
             attrs={"scale": Attr("float", None, optional=True), "causal": Attr("bool", False)},
             flops=lambda i, o, a: 2 * o[0].numel * i[1].shape[-2] + 2 * math.prod(i[0].shape[:-1]) * i[1].shape[-2]
             * i[0].shape[-1])
def _sdpa(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None = None, *, scale: float | None,
          causal: bool) -> np.ndarray:
    """softmax(q @ k^T * scale + mask) @ v; a bool mask keeps True positions (torch SDPA)."""
    from .reduce import _softmax_kernel

    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = np.matmul(_c(q), np.swapaxes(_c(k), -1, -2)) * np.float32(scale)
    if causal:
        L, S = s.shape[-2:]
        s = np.where(np.tril(np.ones((L, S), bool)), s, -np.inf)
    if mask is not None:
        s = np.where(mask, s, -np.inf) if mask.dtype == bool else s + _c(mask)
    p = _softmax_kernel(False)(s.astype(np.float32), axis=-1)
    p = np.where(np.isneginf(s).all(axis=-1, keepdims=True), np.float32(0), p)  # fully masked rows give 0, as torch
    return np.matmul(p, _c(v)).astype(q.dtype, copy=False)


# -- quantization ----------------------------------------------------------------------------------------
def _axis_shape(x: np.ndarray, param: np.ndarray, axis: int) -> np.ndarray:
    if param.ndim == 0 or param.size == 1:
        return param.reshape(())
    shape = [1] * x.ndim
    shape[norm_axis(axis, x.ndim)] = -1
    return param.reshape(shape)


def _q_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    x, scale, zp = types
    if zp.dtype not in (DType.I8, DType.U8, DType.I32):
        raise ShapeError(f"zero_point must be i8, u8 or i32, got {zp.dtype}")
    if scale.shape != zp.shape:
        raise ShapeError(f"scale {scale} and zero_point {zp} must have the same shape")
    return x.with_dtype(zp.dtype)


def _q_flow(ins: Any, outs: Any, attrs: Mapping[str, Any]) -> list[Tie]:
    """Elementwise in x; a per-channel scale and zero point follow the channel axis. Blocked (block_size > 0):
    the scale follows every axis but the blocked one, whose indices share a scale per block (not separable)."""
    x, scale = ins[0], ins[1]
    ties = [tie(O(0, k), I(0, k)) for k in range(x.rank)]
    if attrs.get("block_size"):
        ax = norm_axis(attrs["axis"], x.rank)
        return ([t for t in ties if t.a[0].axis != ax] + [tie(O(0, ax), I(0, ax), exact=False)]
                + [tie(O(0, k), I(i, k)) for k in range(x.rank) if k != ax for i in (1, 2)])
    if scale.rank == 1 and scale.shape[0] != 1:
        ax = norm_axis(attrs["axis"], x.rank)
        ties += [tie(O(0, ax), I(1, 0)), tie(O(0, ax), I(2, 0))]
    return ties


@register_op("quantize_linear", inputs=["x", "scale", "zero_point"], infer=_q_infer, attrs={"axis": Attr("int", 1)},
             dim_flow=_q_flow,
             flops=lambda i, o, a: 3 * o[0].numel)
def _quantize_linear(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, *, axis: int) -> np.ndarray:
    """saturate(round_half_even(x / scale) + zero_point); per-tensor or per-channel along axis (ONNX)."""
    s = _axis_shape(x, scale.astype(np.float32), axis)
    z = _axis_shape(x, zero_point.astype(np.int32), axis)
    info = np.iinfo(zero_point.dtype)
    q = np.rint(x.astype(np.float32) / s) + z
    return np.clip(q, info.min, info.max).astype(zero_point.dtype)


def _dq_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    x, scale, zp = types
    bs = attrs["block_size"]
    if bs < 0:
        raise ShapeError(f"dequantize_linear: block_size must be >= 0, got {bs}")
    if bs:
        ax = norm_axis(attrs["axis"], x.rank)
        want = tuple(-(-d // bs) if isinstance(d, int) and k == ax else d for k, d in enumerate(x.shape))
        if scale.shape != want or zp.shape != want:
            raise ShapeError(f"dequantize_linear with block_size={bs} along axis {ax} of {x} needs scale and "
                             f"zero_point of shape {list(want)}, got {scale} and {zp}")
    return x.with_dtype(scale.dtype)


def _blocked(param: np.ndarray, x: np.ndarray, axis: int, block_size: int) -> np.ndarray:
    """A block-wise parameter ([.., ceil(d / block_size), ..]) repeated to x's shape along `axis`."""
    ax = norm_axis(axis, x.ndim)
    return np.repeat(param, block_size, axis=ax).take(np.arange(x.shape[ax]), axis=ax)


@register_op("dequantize_linear", inputs=["x", "scale", "zero_point"],
             attrs={"axis": Attr("int", 1), "block_size": Attr("int", 0)}, dim_flow=_q_flow,
             infer=_dq_infer, flops=lambda i, o, a: 2 * o[0].numel)
def _dequantize_linear(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, *, axis: int,
                       block_size: int) -> np.ndarray:
    """(x - zero_point) * scale, in scale's dtype. With `block_size` > 0 (ONNX opset 21's blocked quantization,
    how int4 weights are stored group-wise) one scale covers each `block_size` consecutive elements along `axis`."""
    if block_size:
        s, z = _blocked(scale, x, axis, block_size), _blocked(zero_point.astype(np.int32), x, axis, block_size)
        return ((x.astype(np.int32) - z).astype(scale.dtype) * s).astype(scale.dtype)
    s = _axis_shape(x, scale, axis)
    z = _axis_shape(x, zero_point.astype(np.int32), axis)
    return ((x.astype(np.int32) - z).astype(scale.dtype) * s).astype(scale.dtype)
