"""Small helpers the generated cpu code calls where no single torch kernel matches an IR op."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def pad_spatial(x: torch.Tensor, pads: Sequence[int], value: float) -> torch.Tensor:
    """Pad the spatial dims of an N,C,... tensor by ONNX-order pads (begins then ends)."""
    nd = len(pads) // 2
    torch_pads: list[int] = []
    for i in reversed(range(nd)):
        torch_pads += [pads[i], pads[i + nd]]
    return F.pad(x, torch_pads, value=value)


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


def dequantize_linear(x: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor, axis: int) -> torch.Tensor:
    s, z = _per_axis(scale, x, axis), _per_axis(zp, x, axis)
    return (x.to(torch.int32) - z.to(torch.int32)).to(scale.dtype) * s


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
