"""Kernel choices the cpu target makes by measuring on this machine (once per shape and process), not by ISA guess.

CPUs here differ (AVX-512 with VNNI, or no AVX2 at all), and which GEMM wins depends on it: oneDNN with the weight
re-laid-out ("packed") once is usually well ahead of `F.linear`, but not everywhere and not for every shape.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["linear_kernel", "pack_linear_weight"]

_ROWS = 64  # the M the benchmark (and the packed layout) assumes; the kernel takes any M


def _median_ms(fn: Callable[[], object], reps: int = 7) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[reps // 2] * 1e3


def pack_linear_weight(w: torch.Tensor) -> torch.Tensor:
    """The weight in oneDNN's blocked layout (an opaque tensor only mkldnn._linear_pointwise reads)."""
    return torch.ops.mkldnn._reorder_linear_weight(w, _ROWS)


_ROW_STEPS = (1, 16, 64, 256)


@functools.lru_cache(maxsize=None)
def linear_kernel(in_features: int, out_features: int, dtype: torch.dtype = torch.float32) -> int | None:
    """The smallest row count (of 1, 16, 64, 256) from which packed oneDNN beats `F.linear` here, or None.

    Small row counts are GEMV-like, where PyTorch's own path tends to win; the generated code switches on the
    actual row count at run time.
    """
    if not torch.backends.mkldnn.is_available():
        return None
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(out_features, in_features, generator=gen).to(dtype)
    b = torch.randn(out_features, generator=gen).to(dtype)
    x = torch.randn(_ROW_STEPS[-1], in_features, generator=gen).to(dtype)
    try:
        packed = pack_linear_weight(w)
        got = torch.ops.mkldnn._linear_pointwise(x, packed, b, "none", [], "")
    except RuntimeError:  # no oneDNN kernel for this dtype on this CPU
        return None
    want = F.linear(x, w, b)
    if not torch.allclose(got.float(), want.float(), rtol=1e-2, atol=1e-2 * float(want.abs().max())):
        return None
    wins = []
    with torch.inference_mode():
        for rows in _ROW_STEPS:
            xs = x[:rows].contiguous()
            aten = lambda: F.linear(xs, w, b)  # noqa: E731
            onednn = lambda: torch.ops.mkldnn._linear_pointwise(xs, packed, b, "none", [], "")  # noqa: E731
            aten(), onednn()  # warm up; then alternate so drift hits both alike
            t_aten = min(_median_ms(aten, 5) for _ in range(2))
            t_onednn = min(_median_ms(onednn, 5) for _ in range(2))
            wins.append(t_onednn < 0.95 * t_aten)
    for i, rows in enumerate(_ROW_STEPS):
        if all(wins[i:]):
            return rows
    return None
