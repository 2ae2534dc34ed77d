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
