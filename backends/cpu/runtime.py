"""Small helpers the generated cpu code calls where no single torch kernel matches an IR op."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .delegate import OrtNode  # noqa: F401 - generated code calls it
from .kernels import (ONEDNN_ACTIVATIONS, TORCH_ACTIVATIONS, OneDNNInt8Linear,  # noqa: F401 - generated code
                      attention_auto, attention_math, dequantize_weight, dequantize_weight_groups,  # calls these
                      int4_linear, int8_conv, int8_linear, int8_linear_static, pack_conv_weight, pack_linear_weight,
                      prepack_int4_linear, prepack_int8_conv, prepack_int8_linear)


def pad_spatial(x: torch.Tensor, pads: Sequence[int], value: float) -> torch.Tensor:
    """Pad the spatial dims of an N,C,... tensor by ONNX-order pads (begins then ends)."""
    nd = len(pads) // 2
    torch_pads: list[int] = []
    for i in reversed(range(nd)):
        torch_pads += [pads[i], pads[i + nd]]
    return F.pad(x, torch_pads, value=value)


def slice_backwards(x: torch.Tensor, axis: int, start: int, end: int, step: int) -> torch.Tensor:
    """x[start:end:step] along `axis` for a negative step, with Python's (= ONNX's) clamping of the bounds."""
    first, stop, step = slice(start, end, step).indices(x.shape[axis])
    return x.index_select(axis, torch.arange(first, stop, step))


def gru_reset_first(x: torch.Tensor, h0: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor,
                    b_hh: torch.Tensor, batch_first: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A GRU whose reset gate scales h before the recurrent linear (ONNX's default, Keras): torch has no kernel for
    it, so the steps run here, with the input projections of all steps in one GEMM."""
    seq = x.transpose(0, 1) if batch_first else x
    h = h0[0]
    size = h.shape[-1]
    xs = torch.addmm(b_ih, seq.reshape(-1, seq.shape[-1]), w_ih.t()).view(seq.shape[0], seq.shape[1], -1)
    w_rz, w_n = w_hh[: 2 * size].t(), w_hh[2 * size:].t()
    ys = []
    for t in range(seq.shape[0]):
        xr, xz, xn = xs[t].split(size, dim=-1)
        hr, hz = torch.addmm(b_hh[: 2 * size], h, w_rz).split(size, dim=-1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + torch.addmm(b_hh[2 * size:], r * h, w_n))
        h = (1 - z) * n + z * h
        ys.append(h)
    y = torch.stack(ys) if ys else seq.new_zeros((0, *h.shape))
    return (y.transpose(0, 1) if batch_first else y), h[None]


def topk(x: torch.Tensor, k: int, axis: int, largest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest (smallest) along axis, sorted, equal values in input order: a stable sort, then the first k.
    torch.topk is faster but orders ties as its kernel happens to."""
    values, indices = torch.sort(x, dim=axis, descending=largest, stable=True)
    return values.narrow(axis, 0, k), indices.narrow(axis, 0, k)


def linear(x: torch.Tensor, w: torch.Tensor, packed: torch.Tensor, b: torch.Tensor | None, rows_from: int,
           activation: str = "none") -> torch.Tensor:
    """F.linear for few rows (GEMV-like), oneDNN with the packed weight from `rows_from` rows (measured); the
    activation runs as oneDNN's fused post-op on the packed path."""
    if rows(x) >= rows_from:
        attr, algo = ONEDNN_ACTIVATIONS[activation]
        return torch.ops.mkldnn._linear_pointwise(x, packed, b, attr, [], algo)
    return TORCH_ACTIVATIONS[activation](F.linear(x, w, b))


def avg_pool(x: torch.Tensor, kernel: Sequence[int], strides: Sequence[int], pads: Sequence[int], ceil_mode: bool,
             count_include_pad: bool) -> torch.Tensor:
    """Average pooling with any ONNX pads (torch takes only symmetric pads up to half the kernel).

    Window sums over the explicitly padded input, divided by how many counted elements each window covers.
    """
    nd = len(kernel)
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[nd]
    kw = {"ceil_mode": ceil_mode, "count_include_pad": True}
    if nd > 1:
        kw["divisor_override"] = 1
    padded = pad_spatial(x, pads, 0.0)
    ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype)
    mask = pad_spatial(ones, pads, 1.0 if count_include_pad else 0.0)
    sums, counts = pool(padded, kernel, strides, 0, **kw), pool(mask, kernel, strides, 0, **kw)
    if nd == 1:  # avg_pool1d has no divisor_override: undo its division
        sums, counts = sums * kernel[0], counts * kernel[0]
    return sums / counts


def conv_transpose(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, strides: Sequence[int],
                   pads: Sequence[int], extra: Sequence[int], groups: int, dil: Sequence[int]) -> torch.Tensor:
    """Transposed convolution with asymmetric pads or any output padding: full result, then crop/extend."""
    nd = len(strides)
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[nd]
    y = pad_spatial(fn(x, w, None, strides, 0, 0, groups, dil), [0] * nd + list(extra), 0.0)
    y = y[(slice(None), slice(None)) + tuple(slice(pads[i], y.shape[2 + i] - pads[i + nd]) for i in range(nd))]
    return y if b is None else y + b.reshape((1, -1) + (1,) * nd)


def shift(x: torch.Tensor, amount: torch.Tensor, left: bool) -> torch.Tensor:
    """x << amount / x >> amount; amounts outside [0, bits) give 0 (or -1 for negative x shifted right)."""
    bits = torch.iinfo(x.dtype).bits
    amount = torch.as_tensor(amount).to(x.dtype)
    valid = (amount >= 0) & (amount < bits)
    safe = torch.where(valid, amount, torch.zeros_like(amount))
    if left:
        return torch.where(valid, torch.bitwise_left_shift(x, safe), torch.zeros((), dtype=x.dtype))
    fill = torch.where(x < 0, -1, 0).to(x.dtype) if x.is_signed() else torch.zeros((), dtype=x.dtype)
    return torch.where(valid, torch.bitwise_right_shift(x, safe), fill)


_INDEX_REDUCE = {"mul": "prod", "max": "amax", "min": "amin"}


def scatter_nd(x: torch.Tensor, indices: torch.Tensor, updates: torch.Tensor, reduction: str) -> torch.Tensor:
    """ONNX ScatterND: rows of x addressed by the last dim of indices, written or reduced into a copy."""
    k = indices.shape[-1]
    lead = x.shape[:k]
    strides = torch.tensor([int(torch.tensor(lead[i + 1:]).prod()) for i in range(k)], dtype=torch.int64)
    flat = (indices.to(torch.int64) * strides).sum(-1).reshape(-1)
    y = x.reshape((-1,) + tuple(x.shape[k:])).clone()
    src = updates.reshape((-1,) + tuple(x.shape[k:]))
    if reduction == "none":
        y.index_copy_(0, flat, src)
    elif reduction == "add":
        y.index_add_(0, flat, src)
    else:
        y.index_reduce_(0, flat, src, _INDEX_REDUCE[reduction], include_self=True)
    return y.reshape(x.shape)


def extreme(x: torch.Tensor, axes: Sequence[int], keepdims: bool, low: bool) -> torch.Tensor:
    """amax/amin, with an empty reduction giving the identity (+-inf, the dtype's extreme, or low for bool)."""
    if x.numel():
        return (torch.amin if low else torch.amax)(x, axes, keepdims)
    axes = [a % x.dim() for a in axes]
    shape = [1 if i in axes else d for i, d in enumerate(x.shape) if keepdims or i not in axes]
    if x.dtype == torch.bool:
        return torch.full(shape, low, dtype=x.dtype)
    if x.dtype.is_floating_point:
        return torch.full(shape, float("inf") if low else float("-inf"), dtype=x.dtype)
    info = torch.iinfo(x.dtype)
    return torch.full(shape, info.max if low else info.min, dtype=x.dtype)


def reduce_prod(x: torch.Tensor, axes: Sequence[int], keepdims: bool) -> torch.Tensor:
    for ax in sorted((a % max(x.dim(), 1) for a in axes), reverse=True):
        x = torch.prod(x, ax, keepdim=keepdims)
    return x


def _per_axis(p: torch.Tensor, x: torch.Tensor, axis: int) -> torch.Tensor:
    if p.numel() == 1:
        return p.reshape(())
    shape = [1] * x.dim()
    shape[axis % x.dim()] = -1
    return p.reshape(shape)


_RANGE = {torch.int8: (-128, 127), torch.uint8: (0, 255), torch.int32: (-(2**31), 2**31 - 1)}


def quantize_linear(x: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor, axis: int) -> torch.Tensor:
    lo, hi = _RANGE[zp.dtype]
    s, z = _per_axis(scale, x, axis), _per_axis(zp, x, axis)
    q = torch.round(x.to(torch.float32) / s.to(torch.float32)) + z.to(torch.float32)
    return torch.clamp(q, lo, hi).to(zp.dtype)


def dequantize_linear(x: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor, axis: int, block_size: int = 0
                      ) -> torch.Tensor:
    if block_size:  # one scale per block_size elements along axis (ONNX's blocked quantization)
        ax = axis % x.dim()
        s, z = (p.repeat_interleave(block_size, dim=ax).narrow(ax, 0, x.shape[ax]) for p in (scale, zp))
        return (x.to(torch.int32) - z.to(torch.int32)).to(scale.dtype) * s
    s, z = _per_axis(scale, x, axis), _per_axis(zp, x, axis)
    return (x.to(torch.int32) - z.to(torch.int32)).to(scale.dtype) * s


def dynamic_quantize_linear(x: torch.Tensor, reduce_range: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint8 quantization over [min(x, 0), max(x, 0)] with the scale computed from x (ONNX DynamicQuantizeLinear)."""
    qmax = 127 if reduce_range else 255
    lo = torch.clamp(x.min(), max=0.0) if x.numel() else torch.zeros(())
    hi = torch.clamp(x.max(), min=0.0) if x.numel() else torch.zeros(())
    scale = torch.where(hi > lo, (hi - lo) / qmax, torch.ones(())).to(torch.float32)
    zp = torch.clamp(torch.round(-lo / scale), 0, qmax)
    q = torch.clamp(torch.round(x / scale) + zp, 0, qmax).to(torch.uint8)
    return q, scale, zp.to(torch.uint8)


def _lstm_codes(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    q, scale, zp = dynamic_quantize_linear(v, False)
    return q.to(torch.float32) - zp.to(torch.float32), scale


def quantized_lstm(x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, w_ih: torch.Tensor, s_ih: torch.Tensor,
                   w_hh: torch.Tensor, s_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor, batch_first: bool
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """quantized_lstm's semantics in torch ops (the side ONNX Runtime's int8 LSTM is raced against, and what runs
    where ONNX Runtime is not used): x quantized once for the sequence, h per step, both full range; the code
    products are summed in f32, exact while |Σ| < 2^24 (input sizes up to 518) and within an ulp beyond."""
    seq = x.transpose(0, 1) if batch_first else x
    wi, wh = w_ih.to(torch.float32).t(), w_hh.to(torch.float32).t()
    si, sh = s_ih.reshape(-1), s_hh.reshape(-1)
    xq, sx = _lstm_codes(seq)
    xs = (xq @ wi) * (sx * si) + (b_ih + b_hh)
    h, c = h0[0], c0[0]
    ys = []
    for t in range(seq.shape[0]):
        hq, s = _lstm_codes(h)
        i, f, g, o = (xs[t] + (hq @ wh) * (s * sh)).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        ys.append(h)
    y = torch.stack(ys)
    return (y.transpose(0, 1) if batch_first else y), h[None], c[None]


def by_rows(x: torch.Tensor, rows_from: int, many: Callable[[], torch.Tensor], few: Callable[[], torch.Tensor]
            ) -> torch.Tensor:
    """`many()` when x has at least `rows_from` rows (all dims but the last), else `few()`: the kernel measured
    faster for that size."""
    return many() if rows(x) >= rows_from else few()


def rows(x: torch.Tensor) -> int:
    """The GEMM row count of an activation: every dim but the last (what the kernel choices are measured by)."""
    return x.numel() // max(x.shape[-1], 1)


def int8_linear_dynamic(x: torch.Tensor, packed: Any, reduce_range: bool, activation: str) -> torch.Tensor:
    """fbgemm's or oneDNN's dynamic int8 linear (activations quantized per tensor at run time, int32 sums), the
    activation fused where the kernel has it (kernels.int8_linear)."""
    return int8_linear(x, packed, reduce_range, activation)


def int8_linear_weight_only(x: torch.Tensor, w_int8: torch.Tensor, scale: torch.Tensor, b: torch.Tensor | None,
                            activation: str) -> torch.Tensor:
    """x @ (w_int8 · scale)ᵀ with the int8 weight read directly (`_weight_int8pack_mm` takes 2-D x)."""
    s = scale.reshape(-1).expand(w_int8.shape[0]).contiguous()
    y = torch.ops.aten._weight_int8pack_mm(x.reshape(-1, x.shape[-1]), w_int8, s).reshape(*x.shape[:-1], -1)
    return TORCH_ACTIVATIONS[activation](y if b is None else y + b)


def int4_linear_weight_only(x: torch.Tensor, packed: Any, b: torch.Tensor | None, activation: str) -> torch.Tensor:
    """x @ Wᵀ (+ b) with the weight packed two int4 codes per byte (kernels.prepack_int4_linear)."""
    y = int4_linear(x, packed)
    return TORCH_ACTIVATIONS[activation](y if b is None else y + b)


def static_codes(x: torch.Tensor, scale: Any, zero_point: Any, qmax: int) -> torch.Tensor:
    """clip(round(x / scale) + zero_point, 0, qmax) as floats: the uint8 codes of a static quantization, computed as
    the reference computes them (the emulated kernels' semantics; kernels.quantize_static is the fast form)."""
    return torch.clamp(torch.round(x / scale) + zero_point, 0, qmax)


def quantized_linear_emulated(x: torch.Tensor, w_int8: torch.Tensor, scale: torch.Tensor, b: torch.Tensor | None,
                              act_quant: str, reduce_range: bool, activation: str, group_size: int = 0,
                              x_scale: float = 1.0, x_zero_point: int = 0) -> torch.Tensor:
    """quantized_linear's exact semantics in float ops, for weights that are not constants (nothing to pack)."""
    if act_quant == "dynamic":
        x = dequantize_linear(*dynamic_quantize_linear(x, reduce_range), axis=1)
    elif act_quant == "static":
        qmax = 127 if reduce_range else 255
        x = (static_codes(x, x_scale, x_zero_point, qmax) - x_zero_point) * x_scale
    w = dequantize_weight_groups(w_int8, scale) if group_size else dequantize_weight(w_int8, scale)
    return TORCH_ACTIVATIONS[activation](F.linear(x, w, b))


def quantized_conv(x: torch.Tensor, packed: torch.Tensor, x_scale: torch.Tensor, x_zp: torch.Tensor,
                   w_scale: torch.Tensor, bias: torch.Tensor | None, residual: torch.Tensor | None, strides: list[int],
                   pads: list[int], dilations: list[int], groups: int, qmax: int, activation: str,
                   out_scale: float = 0.0, out_zp: int = 0) -> torch.Tensor:
    """oneDNN's int8 convolution with a relu fused when nothing comes between; a residual add and any other
    activation follow in f32. With `out_scale` (chained: no residual, relu or none) the result is the next
    convolution's uint8 codes, quantized in the kernel's epilogue."""
    fuse_relu = activation == "relu" and residual is None
    y = int8_conv(x, packed, float(x_scale), int(x_zp), w_scale, bias, strides, pads, dilations, groups, qmax,
                  fuse_relu, out_scale, out_zp)
    if out_scale:
        return y
    if residual is not None:
        y = y + residual
    return y if fuse_relu else TORCH_ACTIVATIONS[activation](y)


def quantized_conv_emulated(x: torch.Tensor, w_int8: torch.Tensor, w_scale: torch.Tensor, x_scale: torch.Tensor,
                            x_zp: torch.Tensor, bias: torch.Tensor | None, residual: torch.Tensor | None,
                            strides: list[int], pads: list[int], dilations: list[int], groups: int, qmax: int,
                            activation: str, out_scale: float = 0.0, out_zp: int = 0) -> torch.Tensor:
    """quantized_conv's exact semantics in float ops: the static fake-quantized input (or the uint8 codes given)
    into an f32 convolution on the dequantized weight (for weights that are not constants, and where int8 measured
    slower); with `out_scale`, the result's uint8 codes."""
    s, z = x_scale.float(), x_zp.float()
    codes = x.float() if x.dtype == torch.uint8 else static_codes(x, s, z, qmax)
    y = F.conv2d((codes - z) * s, dequantize_weight(w_int8, w_scale), bias, strides, pads[:2], dilations, groups)
    if residual is not None:
        y = y + residual
    y = TORCH_ACTIVATIONS[activation](y)
    if out_scale:
        return static_codes(y, out_scale, out_zp, qmax).to(torch.uint8)
    return y


def pad_index(x: torch.Tensor, pads: Sequence[int], mode: str) -> torch.Tensor:
    """reflect/edge padding on any dims (F.pad only pads the last 1-3 dims in those modes), by gathering."""
    rank = x.dim()
    for ax in range(rank):
        b, e = pads[ax], pads[ax + rank]
        if not b and not e:
            continue
        n = x.shape[ax]
        idx = torch.arange(-b, n + e)
        if mode == "edge":
            idx = idx.clamp(0, n - 1)
        else:  # reflect without repeating the edge: -1 -> 1, n -> n - 2
            period = 2 * (n - 1) if n > 1 else 1
            idx = idx.abs() % period
            idx = torch.where(idx >= n, period - idx, idx)
        x = x.index_select(ax, idx)
    return x


@functools.lru_cache(maxsize=512)
def _axis_matrix(n_in: int, n_out: int, mode: str, align_corners: bool, scale: float | None,
                 dtype: torch.dtype) -> torch.Tensor:
    from graphopt.ir.resize_math import interpolate_matrix

    return torch.from_numpy(interpolate_matrix(n_in, n_out, mode, align_corners, scale)).to(dtype)


def interpolate_matrix(x: torch.Tensor, sizes: Sequence[int], mode: str, align_corners: bool,
                       scales: Sequence[float] | None) -> torch.Tensor:
    """F.interpolate as one small GEMM per spatial axis (matrices cached per size): faster than torch's own
    kernels for bilinear and bicubic upsampling here, and any mode/rank torch has no kernel for."""
    y = x
    for i, n_out in enumerate(sizes):
        axis = 2 + i
        m = _axis_matrix(x.shape[axis], int(n_out), mode, align_corners, scales[i] if scales else None, x.dtype)
        if axis == y.dim() - 1:
            y = torch.matmul(y, m.t())
        elif axis == y.dim() - 2:
            y = torch.matmul(m, y)
        else:
            y = torch.movedim(torch.tensordot(m, y, dims=([1], [axis])), 0, axis)
    return y


_NATIVE_RESIZE = {("nearest", 1): "upsample_nearest1d", ("nearest", 2): "upsample_nearest2d",
                  ("nearest", 3): "upsample_nearest3d", ("linear", 1): "upsample_linear1d",
                  ("linear", 2): "upsample_bilinear2d", ("linear", 3): "upsample_trilinear3d",
                  ("cubic", 2): "upsample_bicubic2d"}


def has_native_resize(mode: str, spatial: int) -> bool:
    return (mode, spatial) in _NATIVE_RESIZE


def interpolate_native(x: torch.Tensor, sizes: Sequence[int], mode: str, align_corners: bool,
                       scales: Sequence[float] | None) -> torch.Tensor:
    """torch's own upsample kernel (what eager F.interpolate runs), bound directly: through torch.ops.aten the
    Python dispatcher adds ~5 µs a call, a third of a small resize."""
    fn = getattr(torch._C._nn, _NATIVE_RESIZE[(mode, len(sizes))])
    per_axis = list(scales) if scales else [None] * len(sizes)
    if mode == "nearest":
        return fn(x, [int(s) for s in sizes], *per_axis)
    return fn(x, [int(s) for s in sizes], align_corners, *per_axis)
