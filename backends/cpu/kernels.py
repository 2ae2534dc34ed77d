"""Kernel choices the cpu target makes by measuring on this machine (once per shape and process), not by ISA guess.

CPUs here differ (AVX-512 with VNNI, or no AVX2 at all), and which GEMM wins depends on it: oneDNN with the weight
re-laid-out ("packed") once is usually well ahead of `F.linear`, but not everywhere and not for every shape.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["linear_kernel", "pack_linear_weight", "conv_kernel", "pack_conv_weight", "attention_math_wins",
           "attention_math", "attention_auto", "race",
           "resize_by_matrix", "packed_from_ratios", "linear_chain_ms",
           "prepack_int8_linear", "int8_linear", "int8_rows", "int8_kernel", "OneDNNInt8Linear", "ONEDNN_ACTIVATIONS",
           "TORCH_ACTIVATIONS", "dequantize_weight",
           "prepack_int8_conv", "int8_conv", "int8_conv_choice", "int8_conv_saturates", "conv_advice",
           "int8_saturates", "int8_linear_choice", "linear_advice", "bf16_linear_choice", "faster_from",
           "Int4Linear", "prepack_int4_linear", "int4_linear", "dequantize_weight_groups", "int4_linear_choice",
           "faster_until"]

_ROWS = 64  # the M the benchmark (and the packed layout) assumes; the kernel takes any M


def _ms(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


def race(a: Callable[[], object], b: Callable[[], object], pairs: int = 9) -> tuple[float, float]:
    """Median ms of `a` and of `b`, timed in alternation after a warm-up, so machine drift hits both alike.

    A single noisy run must not flip a choice that every later call pays for (a packed GEMM that loses to
    F.linear by noise costs 10-30% on that layer for the model's lifetime)."""
    a(), b()
    ta, tb = [], []
    for _ in range(pairs):
        ta.append(_ms(a))
        tb.append(_ms(b))
    return sorted(ta)[pairs // 2], sorted(tb)[pairs // 2]


def race_blocks(a: Callable[[], object], b: Callable[[], object], rounds: int = 3, calls: int = 5) -> tuple[float, float]:
    """Median ms of `a` and of `b`, each timed in blocks of consecutive calls (alternating blocks, so drift hits
    both): for callables served back to back, where what ran just before them is themselves."""
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(rounds):
        for f, ts in ((a, ta), (b, tb)):
            f()
            ts.extend(_ms(f) for _ in range(calls))
    return sorted(ta)[len(ta) // 2], sorted(tb)[len(tb) // 2]


def pack_linear_weight(w: torch.Tensor) -> torch.Tensor:
    """The weight in oneDNN's blocked layout (an opaque tensor only mkldnn._linear_pointwise reads)."""
    return torch.ops.mkldnn._reorder_linear_weight(w, _ROWS)


_ROW_STEPS = (1, 16, 64, 256)
# Wider layers (an LM head's 50k vocabulary) are timed on this many output features: GEMM speed per column
# block barely changes past it, and timing the whole 50k x 768 weight would add seconds to every compile.
_MAX_MEASURED_OUT = 4096


@functools.lru_cache(maxsize=None)
def linear_kernel(in_features: int, out_features: int, dtype: torch.dtype = torch.float32) -> int | None:
    """The smallest row count (of 1, 16, 64, 256) from which packed oneDNN beats `F.linear` here, or None.

    Small row counts are GEMV-like, where PyTorch's own path tends to win; the generated code switches on the
    actual row count at run time.
    """
    if not torch.backends.mkldnn.is_available():
        return None
    gen = torch.Generator().manual_seed(0)
    out_features = min(out_features, _MAX_MEASURED_OUT)
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
    ratios = []
    with torch.inference_mode():
        for rows in _ROW_STEPS:
            xs = x[:rows].contiguous()
            aten = lambda: F.linear(xs, w, b)  # noqa: E731, B023 (called at once)
            onednn = lambda: torch.ops.mkldnn._linear_pointwise(xs, packed, b, "none", [], "")  # noqa: E731, B023
            t_aten, t_onednn = race(aten, onednn)
            ratios.append(t_onednn / t_aten)
    return packed_from_ratios(ratios)


# Within this fraction of each other the two GEMMs count as a tie: on a 2-core AVX2 EPYC, 384x1152 at 256 rows
# measured 1.03, 1.08 and 1.03 (oneDNN / F.linear) in three runs. Requiring a strict win at every larger row
# count let such a tie flip a whole model's choice between processes; a tie either way costs nothing.
_TIE = 0.05


def packed_from_ratios(ratios: Sequence[float]) -> int | None:
    """The smallest of `_ROW_STEPS` at which packed oneDNN wins clearly (time ratio oneDNN / F.linear below
    1 - `_TIE`) and from which it loses clearly at no larger row count; None when there is no such step."""
    for i, rows in enumerate(_ROW_STEPS):
        if ratios[i] < 1 - _TIE and all(r < 1 + _TIE for r in ratios[i:]):
            return rows
    return None


def linear_chain_ms(rows: int, shapes: Sequence[tuple[int, int]], runs: int = 9) -> float:
    """Median ms of F.linear applied in turn with random [out, in] weights of `shapes` to a [rows, in] input here:
    the cost model the low-rank pass asks for (`GemmTimer`), measured, since a thin [rows, r] GEMM runs far below the
    rate FLOPs suggest. Once per shape and process: a model's layers repeat a few shapes."""
    return _chain_ms(rows, tuple((int(o), int(i)) for o, i in shapes), runs)


@functools.lru_cache(maxsize=None)
def _chain_ms(rows: int, shapes: tuple[tuple[int, int], ...], runs: int) -> float:
    gen = torch.Generator().manual_seed(0)
    ws = [torch.randn(o, i, generator=gen) for o, i in shapes]
    x = torch.randn(rows, shapes[0][1], generator=gen)

    def chain() -> torch.Tensor:
        y = x
        for w in ws:
            y = F.linear(y, w)
        return y

    with torch.inference_mode():
        chain()  # warm-up
        return sorted(_ms(chain) for _ in range(runs))[runs // 2]


def pack_conv_weight(w: torch.Tensor, pads: list[int], strides: list[int], dilations: list[int], groups: int,
                     input_size: list[int]) -> torch.Tensor:
    """A 2-D convolution weight in oneDNN's blocked layout for inputs of `input_size` (other sizes still work)."""
    return torch.ops.mkldnn._reorder_convolution_weight(w, pads, strides, dilations, groups, input_size)


@functools.lru_cache(maxsize=None)
def conv_kernel(input_size: tuple[int, ...], weight_size: tuple[int, ...], pads: tuple[int, ...],
                strides: tuple[int, ...], dilations: tuple[int, ...], groups: int,
                dtype: torch.dtype = torch.float32) -> bool:
    """Whether oneDNN with a packed weight (and its fused epilogue) beats `F.conv2d` for this 2-D convolution here.

    `F.conv2d` re-lays-out the weight on every call; how much that costs depends on the shape and the CPU.
    """
    if not torch.backends.mkldnn.is_available() or len(weight_size) != 4:
        return False
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(weight_size, generator=gen).to(dtype)
    b = torch.randn(weight_size[0], generator=gen).to(dtype)
    x = torch.randn(input_size, generator=gen).to(dtype)
    args = (list(pads), list(strides), list(dilations), groups)
    try:
        packed = pack_conv_weight(w, *args, list(input_size))
        onednn = lambda: torch.ops.mkldnn._convolution_pointwise(x, packed, b, *args, "relu", [], "")  # noqa: E731
        got = onednn()
    except RuntimeError:  # no oneDNN kernel for this dtype or shape on this CPU
        return False
    aten = lambda: torch.relu(F.conv2d(x, w, b, strides, pads, dilations, groups))  # noqa: E731
    want = aten()
    if not torch.allclose(got.float(), want.float(), rtol=1e-2, atol=1e-2 * float(want.abs().max())):
        return False
    with torch.inference_mode():
        t_aten, t_onednn = race(aten, onednn)
    return t_onednn < t_aten


@functools.lru_cache(maxsize=None)
def attention_math_wins(q_shape: tuple[int, ...], k_shape: tuple[int, ...], v_shape: tuple[int, ...],
                        dtype: torch.dtype = torch.float32, mask_shape: tuple[int, ...] | None = None,
                        mask_dtype: torch.dtype = torch.float32) -> bool:
    """Whether softmax(Q·Kᵀ·s [+ mask])·V as two batched GEMMs beats torch's fused CPU SDPA for these shapes here.

    torch's CPU flash-attention kernel tiles for long sequences; at short ones it can lose to bmm + softmax + bmm
    (what eager's fast path runs): on a 2-core AVX2 EPYC, 0.256 vs 0.275 ms at [4, 4, 64, 32], while the fused
    kernel wins 1.44 vs 1.99 ms at [4, 4, 256, 16]. With a padding mask the gap is wider: 0.29 vs 0.69 ms for 12
    sentences of 16 tokens ([12, 12, 16, 32]), 0.60 vs 0.68 ms at [1, 12, 128, 32]."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(s, generator=gen).to(dtype) for s in (q_shape, k_shape, v_shape))
    scale = q_shape[-1] ** -0.5
    mask = None
    if mask_shape is not None:  # a quarter of the keys masked out, none of the rows entirely
        keep = torch.ones(mask_shape, dtype=torch.bool)
        keep[..., -(mask_shape[-1] // 4):] = mask_shape[-1] < 4
        mask = keep if mask_dtype == torch.bool else torch.zeros(mask_shape, dtype=mask_dtype).masked_fill(
            ~keep, torch.finfo(mask_dtype).min)
    fused = lambda: F.scaled_dot_product_attention(q, k, v, mask, scale=scale)  # noqa: E731
    math_ = lambda: _attention_math(q, k, v, mask, scale)  # noqa: E731
    if not torch.allclose(fused().float(), math_().float(), rtol=1e-2, atol=1e-3):
        return False
    with torch.inference_mode():
        t_fused, t_math = race(fused, math_)
    return t_math < 0.95 * t_fused


def _attention_math(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                    scale: float) -> torch.Tensor:
    s = (q @ k.transpose(-2, -1)) * scale
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask
    return torch.softmax(s, -1) @ v


def attention_auto(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, scale: float
                   ) -> torch.Tensor:
    """Attention over shapes known only at run time: the race runs on the first call with each new shape (once per
    process, as cuDNN's benchmark mode does) and its verdict is cached; every call after it costs a lookup."""
    if attention_math_wins(tuple(q.shape), tuple(k.shape), tuple(v.shape), q.dtype,
                           None if mask is None else tuple(mask.shape),
                           torch.float32 if mask is None else mask.dtype):
        return _attention_math(q, k, v, None, scale) if mask is None else attention_math(q, k, v, mask, scale)
    return F.scaled_dot_product_attention(q, k, v, mask, scale=scale)


def attention_math(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float
                   ) -> torch.Tensor:
    """Masked attention as bmm + softmax + bmm, exactly the op: a row whose mask excludes every key gives 0 (as
    SDPA does) where a plain softmax would give NaN — such calls go to SDPA (checked on the small mask tensor)."""
    fully_masked = (~mask if mask.dtype == torch.bool else torch.isneginf(mask)).all(-1).any()
    if bool(fully_masked):
        return F.scaled_dot_product_attention(q, k, v, mask, scale=scale)
    return _attention_math(q, k, v, mask, scale)


@functools.lru_cache(maxsize=None)
def resize_by_matrix(shape: tuple[int, ...], sizes: tuple[int, ...], mode: str, align_corners: bool,
                     scales: tuple[float, ...] | None, dtype: torch.dtype = torch.float32) -> bool:
    """Whether per-axis GEMMs clearly beat torch's own upsample kernel for this resize here. On a 2-core AVX2
    EPYC they run bicubic upsampling 4.4x faster, are level on bilinear and lose on bicubic down to a few pixels
    (two tiny GEMMs against one native loop), so it is measured, not assumed."""
    from .runtime import has_native_resize, interpolate_matrix, interpolate_native

    if not has_native_resize(mode, len(sizes)):
        return True
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    with torch.inference_mode():
        t_native, t_matrix = race(lambda: interpolate_native(x, sizes, mode, align_corners, scales),
                                  lambda: interpolate_matrix(x, sizes, mode, align_corners, scales), pairs=15)
    # torch's kernel is eager's own, so it is the safe default: the GEMMs must win clearly (bilinear upsampling
    # measured within 5% of it at compile time and then ran 0.85x eager in a benchmark; bicubic wins 4x)
    return t_matrix < 0.8 * t_native


@dataclass(frozen=True)
class OneDNNInt8Linear:
    """A weight packed for oneDNN's int8 linear (`onednn::qlinear_pointwise`: AMX and VNNI kernels), with what the
    call needs beside it."""

    weight: torch.Tensor
    scale: torch.Tensor
    zero_points: torch.Tensor
    bias: torch.Tensor | None


def prepack_int8_linear(w_int8: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None,
                        kernel: str = "fbgemm") -> Any:
    """The packed form of a symmetric int8 weight (per output channel or per tensor) and its float bias, for
    fbgemm's dynamic linear or oneDNN's int8 linear.

    fbgemm's packing API takes torch's (deprecated) quantized tensor type; it is built here, once, at load time,
    and nothing else of the generated code touches quantized tensors."""
    import warnings

    if kernel == "onednn":
        n = w_int8.shape[0]
        s = scale.float().reshape(-1).expand(n).contiguous()
        return OneDNNInt8Linear(torch.ops.onednn.qlinear_prepack(w_int8, None), s,
                                torch.zeros(n, dtype=torch.long), bias)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the quantized-tensor deprecation notice
        s = scale.double().reshape(-1)
        if s.numel() == 1:
            q = torch._make_per_tensor_quantized_tensor(w_int8, float(s[0]), 0)
        else:
            q = torch._make_per_channel_quantized_tensor(w_int8, s, torch.zeros_like(s, dtype=torch.long), 0)
        return torch.ops.quantized.linear_prepack(q, bias)


# oneDNN's names for the activations its linears and convolutions apply in their epilogue (post-op, algorithm)
ONEDNN_ACTIVATIONS = {"none": ("none", ""), "relu": ("relu", ""), "gelu": ("gelu", "none"),
                      "gelu_tanh": ("gelu", "tanh"), "silu": ("swish", ""), "tanh": ("tanh", "")}
TORCH_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "none": lambda y: y, "relu": torch.relu, "gelu": F.gelu, "gelu_tanh": lambda y: F.gelu(y, approximate="tanh"),
    "silu": F.silu, "tanh": torch.tanh}


def quantize_static(x: torch.Tensor, scale: float, zero_point: int, qmax: int) -> torch.Tensor:
    """uint8 codes clip(round(x / scale) + zero_point, 0, qmax), in x's memory format.

    quantized_decomposed.quantize_per_tensor's arithmetic (the same codes), but in place on one temporary: its
    four fresh f32 tensors per call took 31% of static-int8 ResNet-18's time (0.22 ms a call; this, 0.04-0.1)."""
    return torch.mul(x, 1.0 / scale).round_().add_(zero_point).clamp_(0, qmax).to(torch.uint8)


def int8_linear_static(x: torch.Tensor, packed: OneDNNInt8Linear, x_scale: float, x_zero_point: int, qmax: int,
                       activation: str = "none") -> torch.Tensor:
    """oneDNN's int8 linear with a calibrated (fixed) activation scale: no min/max pass over x per call, the
    activation fused in the epilogue."""
    x2 = x.reshape(-1, x.shape[-1])
    name, algorithm = ONEDNN_ACTIVATIONS[activation]
    y = torch.ops.onednn.qlinear_pointwise(quantize_static(x2, x_scale, x_zero_point, qmax), x_scale, x_zero_point,
                                           packed.weight, packed.scale, packed.zero_points, packed.bias, 1.0, 0,
                                           torch.float32, name, [], algorithm)
    return y.reshape(*x.shape[:-1], y.shape[-1])  # type: ignore[no-any-return]


def int8_linear(x: torch.Tensor, packed: Any, reduce_range: bool, activation: str = "none") -> torch.Tensor:
    """Dynamic int8 linear: x quantized per tensor at run time (uint8, 0..127 with reduce_range), int32 sums, then
    `activation` — fused into oneDNN's epilogue (the f32 output is written once, activated), or after fbgemm's GEMM
    (fused for relu, whose kernel exists)."""
    if not isinstance(packed, OneDNNInt8Linear):
        if activation == "relu":
            return torch.ops.quantized.linear_relu_dynamic(x, packed, reduce_range)  # type: ignore[no-any-return]
        return TORCH_ACTIVATIONS[activation](torch.ops.quantized.linear_dynamic(x, packed, reduce_range))
    from torch.ao.quantization.fx import _decomposed  # noqa: F401 - registers the quantized_decomposed ops

    qd = torch.ops.quantized_decomposed
    qmax = 127 if reduce_range else 255
    x2 = x.reshape(-1, x.shape[-1])
    sc, zp = qd.choose_qparams.tensor(x2, 0, qmax, 1e-12, torch.uint8)
    xq = qd.quantize_per_tensor.tensor(x2, sc, zp, 0, qmax, torch.uint8)
    name, algorithm = ONEDNN_ACTIVATIONS[activation]
    y = torch.ops.onednn.qlinear_pointwise.tensor(xq, sc, zp, packed.weight, packed.scale, packed.zero_points,
                                                  packed.bias, 1.0, 0, torch.float32, name, [], algorithm)
    return y.reshape(*x.shape[:-1], y.shape[-1])  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Int4Linear:
    """A group-wise int4 weight packed two codes per byte for `_weight_int4pack_mm_for_cpu`, padded to a multiple
    of 16 output features (the kernel's block), with its bf16 scales [in / group, out, 2] (scale, zero 0)."""

    packed: torch.Tensor
    scales_and_zeros: torch.Tensor
    group_size: int
    out_features: int


def prepack_int4_linear(codes: torch.Tensor, scale: torch.Tensor, group_size: int) -> Int4Linear:
    """Pack int4 codes (-8..7 in an int8 [out, in] tensor) with their f32 scales [out, in / group_size]."""
    n, k = codes.shape
    pad = -n % 16
    u = codes.to(torch.int32) + 8  # the kernel reads unsigned codes with an implicit zero point of 8
    s = scale.float()
    if pad:
        u = torch.cat([u, torch.full((pad, k), 8, dtype=torch.int32)])
        s = torch.cat([s, torch.ones(pad, s.shape[1])])
    sz = torch.zeros(s.shape[1], n + pad, 2, dtype=torch.bfloat16)
    sz[..., 0] = s.t()
    return Int4Linear(torch.ops.aten._convert_weight_to_int4pack_for_cpu(u.contiguous(), 1), sz, group_size, n)


def int4_linear(x: torch.Tensor, w: Int4Linear) -> torch.Tensor:
    """x @ Wᵀ with the packed int4 weight. The kernel reads x and the scales in bf16 (its f32-input path measured
    10x slower on an AVX2 EPYC), so activations are rounded to bf16 on the way in: ~0.4% relative error, within
    what 4-bit weights cost anyway; the output is f32."""
    y = torch.ops.aten._weight_int4pack_mm_for_cpu(x.reshape(-1, x.shape[-1]).bfloat16(), w.packed, w.group_size,
                                                   w.scales_and_zeros)
    return y[:, :w.out_features].float().reshape(*x.shape[:-1], w.out_features)


def dequantize_weight_groups(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The f32 weight of group-wise codes: each scale covers in / scale.shape[1] consecutive input features."""
    return codes.float() * scale.float().repeat_interleave(codes.shape[1] // scale.shape[1], dim=1)


def dequantize_weight(w_int8: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    s = scale.float()
    return w_int8.float() * (s.reshape((-1,) + (1,) * (w_int8.dim() - 1)) if s.numel() > 1 else s.reshape(()))


def prepack_int8_conv(w_int8: torch.Tensor, scale: torch.Tensor, x_scale: float, x_zp: int, strides: list[int],
                      pads: list[int], dilations: list[int], groups: int, input_size: list[int]) -> torch.Tensor:
    """A 2-D int8 convolution weight in oneDNN's layout for a static input scale (`onednn::qconv_prepack`)."""
    s = scale.float().reshape(-1).expand(w_int8.shape[0]).contiguous()
    return torch.ops.onednn.qconv_prepack(w_int8, s, x_scale, x_zp, strides, pads, dilations, groups,  # type: ignore
                                          input_size)


def int8_conv(x: torch.Tensor, packed: torch.Tensor, x_scale: float, x_zp: int, w_scale: torch.Tensor,
              bias: torch.Tensor | None, strides: list[int], pads: list[int], dilations: list[int], groups: int,
              qmax: int, relu: bool, out_scale: float = 0.0, out_zp: int = 0) -> torch.Tensor:
    """oneDNN's int8 convolution: x quantized with its static scale (uint8, channels-last; a uint8 x is those codes
    already), int32 sums, the result rescaled to f32 with the bias (and a relu) fused — or, with `out_scale`,
    requantized in the epilogue to the next convolution's uint8 codes (oneDNN clips to 0..255: 0..127 after)."""
    x = x.contiguous(memory_format=torch.channels_last)
    xq = x if x.dtype == torch.uint8 else quantize_static(x, x_scale, x_zp, qmax)
    y = torch.ops.onednn.qconv2d_pointwise(
        xq, x_scale, x_zp, packed, w_scale.float().reshape(-1), _zero_points(w_scale.numel()), bias, strides,
        pads, dilations, groups, out_scale or 1.0, out_zp, None if out_scale else torch.float32,
        "relu" if relu else "none", [], "")
    return y.clamp_max_(qmax) if out_scale and qmax < 255 else y  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=None)
def _zero_points(n: int) -> torch.Tensor:
    """The weights' zero points (all 0, symmetric per channel), made once per channel count: read only."""
    return torch.zeros(n, dtype=torch.long)


@functools.lru_cache(maxsize=None)
def int8_conv_saturates() -> bool:
    """Whether full-range activations overflow oneDNN's int8 convolution here (no VNNI), probed at the worst case."""
    c = 64
    w = torch.full((4, c, 1, 1), 127, dtype=torch.int8)
    x = torch.full((1, c, 2, 2), 255.0)
    try:
        packed = prepack_int8_conv(w, torch.ones(4), 1.0, 0, [1, 1], [0, 0], [1, 1], 1, [1, c, 2, 2])
        got = int8_conv(x, packed, 1.0, 0, torch.ones(4), None, [1, 1], [0, 0], [1, 1], 1, 255, False)
    except RuntimeError:
        return True
    want = 255.0 * 127 * c
    return bool((got - want).abs().max() > 0.01 * want)


@functools.lru_cache(maxsize=None)
def int8_conv_choice(input_size: tuple[int, ...], weight_size: tuple[int, ...], pads: tuple[int, ...],
                     strides: tuple[int, ...], dilations: tuple[int, ...], groups: int,
                     reduce_range: bool) -> tuple[bool, str]:
    """(oneDNN's int8 convolution, input quantization included, beats the best f32 convolution here; why)."""
    if not reduce_range and int8_conv_saturates():
        return False, "full-range int8 activations saturate this CPU's int8 convolution (no VNNI)"
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(weight_size, generator=gen) * 0.05
    b = torch.randn(weight_size[0], generator=gen)
    x = torch.randn(input_size, generator=gen).relu()
    wq, ws = int8_rows(w)
    qmax = 127 if reduce_range else 255
    x_scale = float(x.max()) / qmax
    args = (list(strides), list(pads), list(dilations), groups)
    try:
        packed = prepack_int8_conv(wq, ws, x_scale, 0, *args, list(input_size))
        low = lambda: int8_conv(x, packed, x_scale, 0, ws, b, *args, qmax, True)  # noqa: E731
        low()
    except RuntimeError as e:
        return False, f"oneDNN int8 convolution unavailable here ({str(e).splitlines()[0][:80]})"
    wd = dequantize_weight(wq, ws)
    if conv_kernel(tuple(input_size), tuple(weight_size), tuple(pads), tuple(strides), tuple(dilations), groups):
        pf = pack_conv_weight(wd, list(pads), list(strides), list(dilations), groups, list(input_size))
        f32 = lambda: torch.ops.mkldnn._convolution_pointwise(x, pf, b, list(pads), list(strides),  # noqa: E731
                                                               list(dilations), groups, "relu", [], "")
    else:
        f32 = lambda: torch.relu(F.conv2d(x, wd, b, list(strides), list(pads), list(dilations), groups))  # noqa: E731
    with torch.inference_mode():
        low(), low()  # oneDNN builds its primitive on the first calls
        t_low, t_f32 = race(low, f32)
    detail = f"{t_low:.3f} vs {t_f32:.3f} ms"
    if t_low < t_f32:
        return True, f"oneDNN int8 convolution faster than f32 ({detail})"
    return False, f"oneDNN int8 convolution not faster than f32 here ({detail})"


def conv_advice(input_size: tuple[int, ...], weight_size: tuple[int, ...], pads: tuple[int, ...],
                strides: tuple[int, ...], dilations: tuple[int, ...], groups: int, reduce_range: bool
                ) -> tuple[bool, str]:
    """What the quantize pass asks (`KernelAdvice.conv`) for a static int8 convolution."""
    return int8_conv_choice(tuple(input_size), tuple(weight_size), tuple(pads), tuple(strides), tuple(dilations),
                            groups, reduce_range)


@functools.lru_cache(maxsize=None)
def int8_saturates(kernel: str = "fbgemm") -> bool:
    """Whether full-range (0..255) activations overflow this CPU's int8 GEMM (u8·s8 pair sums in int16 without VNNI).

    Probed with the worst case, all-max activations against all-max weights, against exact arithmetic."""
    k, n = 256, 8
    x = torch.full((4, k), 1.0)
    w = torch.full((n, k), 127, dtype=torch.int8)
    try:
        got = int8_linear(x, prepack_int8_linear(w, torch.ones(n) / 127, None, kernel), False)
    except RuntimeError:  # no such kernel here: treat as unusable at full range
        return True
    return bool((got - float(k)).abs().max() > 0.01 * k)


@functools.lru_cache(maxsize=None)
def int8_kernel(in_features: int, out_features: int, reduce_range: bool, activation: str = "none") -> str:
    """"fbgemm" or "onednn": the faster dynamic int8 linear for this shape and activation here — the one whose time
    relative to the other has the smaller geometric mean over 16, 64 and 256 rows (a layer keeps one packed weight,
    and the row count a call brings is not known at compile time), each with the activation as it runs: fused in
    oneDNN's epilogue, after fbgemm's GEMM. oneDNN's runs AMX tiles where the CPU has them; fbgemm's quantizes
    inside the GEMM call. On the VNNI Xeon (768x3072 with GELU): fbgemm 0.23 / 0.51 / 0.90 ms at 16 / 64 / 128 rows
    against oneDNN's 0.45 / 0.72 / 1.39, and 2.67 against 2.44 at 256 — timed at 256 rows alone, oneDNN was chosen
    and every seq-128 call paid 50% more."""
    # at the layer's full width: which kernel wins changes with it (GPT-2's 768x50257 LM head at 128 rows: oneDNN
    # 12.3 ms, fbgemm 18.6, where at 4096 columns fbgemm won)
    wq, scale, b, x = _random_int8_layer(in_features, out_features, full_width=True)
    kernels = [k for k in ("fbgemm", "onednn") if reduce_range or not int8_saturates(k)]
    if len(kernels) < 2:
        return kernels[0] if kernels else "fbgemm"
    log_ratio = 0.0
    try:
        packed = {k: prepack_int8_linear(wq, scale, b, k) for k in kernels}
        with torch.inference_mode():
            for rows in (16, 64, _ROW_STEPS[-1]):
                xr = x[:rows]
                t_fbgemm, t_onednn = race(lambda: int8_linear(xr, packed["fbgemm"], reduce_range, activation),  # noqa: B023
                                          lambda: int8_linear(xr, packed["onednn"], reduce_range, activation))  # noqa: B023
                log_ratio += math.log(t_onednn / t_fbgemm)
    except RuntimeError:
        return "fbgemm"
    return "onednn" if log_ratio < 0 else "fbgemm"


def int8_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 weight, f32 scale per output row): symmetric over -127..127 along dim 0, as the quantize pass rounds
    weights — the layers the races time (a backend does not import passes)."""
    scale = w.abs().flatten(1).amax(1) / 127
    return torch.round(w / scale.reshape(-1, *[1] * (w.dim() - 1))).to(torch.int8), scale


def _random_int8_layer(in_features: int, out_features: int, full_width: bool = False
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(int8 weight, scales, bias, input at the largest measured row count) of a layer's shape — wider layers cut
    to _MAX_MEASURED_OUT features unless `full_width` — for races between int8 kernels, whose speed does not depend
    on the values."""
    gen = torch.Generator().manual_seed(0)
    out_features = out_features if full_width else min(out_features, _MAX_MEASURED_OUT)
    wq = torch.randint(-127, 128, (out_features, in_features), generator=gen, dtype=torch.int8)
    scale, b = torch.full((out_features,), 1e-3), torch.randn(out_features, generator=gen)
    return wq, scale, b, torch.randn(_ROW_STEPS[-1], in_features, generator=gen)


@functools.lru_cache(maxsize=None)
def int8_linear_choice(in_features: int, out_features: int, act_quant: str, reduce_range: bool
                       ) -> tuple[int | None, str]:
    """(from how many rows the int8 kernel runs, or None for never; why), timed here against the best f32 kernel.

    `act_quant="dynamic"` races fbgemm's dynamic int8 linear, "static" oneDNN's with a fixed activation scale,
    "none" (weight-only) `_weight_int8pack_mm`, each against F.linear / packed oneDNN, at 256, 64, 16 and 1 rows,
    stopping at the first row count where int8 loses.
    Below the returned row count the generated code runs f32 on the dequantized weight, so the layer is never
    slower than f32 at a measured size; the reason (with the times) goes to the report."""
    kernel = int8_kernel(in_features, out_features, reduce_range) if act_quant == "dynamic" else "fbgemm"
    if act_quant == "static":
        kernel = "onednn"
    if act_quant in ("dynamic", "static") and not reduce_range and int8_saturates(kernel):
        return None, "full-range int8 activations saturate this CPU's int8 GEMM (no VNNI); quantize with reduce_range"
    gen = torch.Generator().manual_seed(0)
    out_features = min(out_features, _MAX_MEASURED_OUT)
    w = torch.randn(out_features, in_features, generator=gen) * 0.05
    b = torch.randn(out_features, generator=gen)
    wq, scale = int8_rows(w)
    wdeq = dequantize_weight(wq, scale)
    if act_quant == "dynamic":
        packed = prepack_int8_linear(wq, scale, b, kernel)
        low = lambda x: int8_linear(x, packed, reduce_range)  # noqa: E731
        name = f"{kernel} int8 dynamic"
    elif act_quant == "static":
        packed = prepack_int8_linear(wq, scale, b, "onednn")
        qmax = 127 if reduce_range else 255
        low = lambda x: int8_linear_static(x, packed, 8.0 / qmax, qmax // 2, qmax)  # noqa: E731 - x ~ N(0, 1)
        name = "oneDNN int8 static"
    else:
        low = lambda x: torch.ops.aten._weight_int8pack_mm(x, wq, scale) + b  # noqa: E731
        name = "int8 weight-only (_weight_int8pack_mm)"
    return _choice(name, low, _f32_linear(wdeq, b, in_features, out_features), in_features)


def _f32_linear(w: torch.Tensor, b: torch.Tensor, in_features: int, out_features: int
                ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The f32 linear the cpu target runs for this weight: packed oneDNN from the row count measured faster, else
    F.linear — the baseline every low-precision kernel must beat."""
    f32_from = linear_kernel(in_features, out_features)
    packed = pack_linear_weight(w) if f32_from is not None else None

    def f32(x: torch.Tensor) -> torch.Tensor:
        if packed is not None and x.shape[0] >= f32_from:  # type: ignore[operator]
            return torch.ops.mkldnn._linear_pointwise(x, packed, b, "none", [], "")  # type: ignore[no-any-return]
        return F.linear(x, w, b)

    return f32


def _choice(name: str, low: Callable[[torch.Tensor], object], f32: Callable[[torch.Tensor], object],
            in_features: int, *, until: bool = False) -> tuple[int | None, str]:
    """(rows from which `low` wins — or, `until`, up to which it wins — why) with the timings in the reason."""
    try:
        rows, times = (faster_until if until else faster_from)(low, f32, in_features)
    except RuntimeError as e:  # no such kernel on this build or CPU
        return None, _unavailable(name, e)
    detail = "; ".join(f"{r} rows: {lo:.3f} vs {hi:.3f} ms" for r, lo, hi in times)
    if rows is None:
        return None, f"{name} not faster than f32 here ({detail})"
    return rows, f"{name} {'up to' if until else 'from'} {rows} rows ({detail})"


def _unavailable(name: str, e: Exception) -> str:
    return f"{name} unavailable here ({str(e).splitlines()[0][:80]})"


def faster_from(candidate: Callable[[torch.Tensor], object], baseline: Callable[[torch.Tensor], object],
                in_features: int) -> tuple[int | None, list[tuple[int, float, float]]]:
    """The smallest row count (of 256, 64, 16, 1, tried in that order, stopping at the first loss) from which
    `candidate` beats `baseline` at every larger measured count, or None; and the (rows, ms, ms) timings."""
    times = _raced_rows(candidate, baseline, in_features, tuple(reversed(_ROW_STEPS)))
    wins = [r for r, lo, hi in times if lo < hi]
    return (min(wins) if wins else None), times


def faster_until(candidate: Callable[[torch.Tensor], object], baseline: Callable[[torch.Tensor], object],
                 in_features: int) -> tuple[int | None, list[tuple[int, float, float]]]:
    """The largest row count (of 1, 16, 64, 256, tried in that order, stopping at the first loss) up to which
    `candidate` beats `baseline` at every smaller measured count, or None: the shape of a weight-only kernel, which
    wins where the GEMM is bound by reading the weight (few rows) and loses once it is bound by arithmetic."""
    times = _raced_rows(candidate, baseline, in_features, _ROW_STEPS)
    wins = [r for r, lo, hi in times if lo < hi]
    return (max(wins) if wins else None), times


def _raced_rows(candidate: Callable[[torch.Tensor], object], baseline: Callable[[torch.Tensor], object],
                in_features: int, order: Sequence[int]) -> list[tuple[int, float, float]]:
    """(rows, candidate ms, baseline ms) at each row count in `order`, up to and including the first loss."""
    gen = torch.Generator().manual_seed(0)
    times: list[tuple[int, float, float]] = []
    with torch.inference_mode():
        for rows in order:
            x = torch.randn(rows, in_features, generator=gen)
            low, f32 = (lambda x=x: candidate(x)), (lambda x=x: baseline(x))
            low(), f32()
            t_low, t_f32 = _ms(low), _ms(f32)
            if t_low < 5 * t_f32:  # a kernel 5x slower on one call is not worth nine more (some take 0.1 s)
                t_low, t_f32 = race(low, f32)
            times.append((rows, t_low, t_f32))
            if t_low >= t_f32:
                break
    return times


def linear_advice(in_features: int, out_features: int, kind: str, reduce_range: bool) -> tuple[bool, str]:
    """What the quantize pass asks (`KernelAdvice.linear`): does the low-precision kernel win here, and why. int8
    or bf16 wins if it does at any measured size: below that row count the generated code runs f32 (int4: above
    it). int4 is asked at the default group size, 128: the group changes the kernel's speed by a few percent."""
    if kind == "static":
        return static_linear_advice(in_features, out_features, reduce_range)
    choice = (bf16_linear_choice(in_features, out_features) if kind == "bf16"
              else int4_linear_choice(in_features, out_features, 128) if kind == "int4"
              else int8_linear_choice(in_features, out_features, kind, reduce_range))
    return choice[0] is not None, choice[1]


@functools.lru_cache(maxsize=None)
def static_linear_advice(in_features: int, out_features: int, reduce_range: bool) -> tuple[bool, str]:
    """Whether a calibrated activation scale pays here: oneDNN's fixed-scale int8 linear must beat f32 (at some
    measured size) and the dynamic int8 kernel the layer would run otherwise (at 256 rows, with no activation)."""
    static = int8_linear_choice(in_features, out_features, "static", reduce_range)
    if static[0] is None:
        return False, static[1]
    kernel = int8_kernel(in_features, out_features, reduce_range)
    wq, scale, b, x = _random_int8_layer(in_features, out_features)
    qmax = 127 if reduce_range else 255
    fixed, dynamic = prepack_int8_linear(wq, scale, b, "onednn"), prepack_int8_linear(wq, scale, b, kernel)
    with torch.inference_mode():
        t_static, t_dynamic = race(lambda: int8_linear_static(x, fixed, 8.0 / qmax, qmax // 2, qmax),
                                   lambda: int8_linear(x, dynamic, reduce_range))
    versus = f"{t_static:.3f} vs {t_dynamic:.3f} ms at {_ROW_STEPS[-1]} rows"
    if t_static < t_dynamic:
        return True, f"{static[1]}; faster than {kernel} int8 dynamic ({versus})"
    return False, f"oneDNN int8 static not faster than {kernel} int8 dynamic here ({versus})"


@functools.lru_cache(maxsize=None)
def int4_linear_choice(in_features: int, out_features: int, group_size: int) -> tuple[int | None, str]:
    """(up to how many rows the int4 weight-only kernel beats the best f32 one here, or None; why), timed at 1, 16,
    64 and 256 rows. Above that row count the generated code runs f32 on the dequantized weight."""
    if in_features % group_size:
        return None, f"in_features {in_features} is not a multiple of group_size={group_size}"
    gen = torch.Generator().manual_seed(0)
    out_features = min(out_features, _MAX_MEASURED_OUT)
    # random codes and scales of the layer's shape: the kernels' speed does not depend on the values
    codes = torch.randint(-8, 8, (out_features, in_features), generator=gen, dtype=torch.int8)
    scale = torch.rand(out_features, in_features // group_size, generator=gen) * 0.01
    b = torch.randn(out_features, generator=gen)
    name = f"int4 weight-only (group {group_size}, _weight_int4pack_mm_for_cpu)"
    try:
        packed = prepack_int4_linear(codes, scale, group_size)
    except RuntimeError as e:  # no such kernel on this build or CPU
        return None, _unavailable(name, e)
    f32 = _f32_linear(dequantize_weight_groups(codes, scale), b, in_features, out_features)
    return _choice(name, lambda x: int4_linear(x, packed) + b, f32, in_features, until=True)


@functools.lru_cache(maxsize=None)
def bf16_linear_choice(in_features: int, out_features: int) -> tuple[int | None, str]:
    """(from how many rows a bf16 GEMM, casts included, beats the best f32 one here, or None; why)."""
    gen = torch.Generator().manual_seed(0)
    out_features = min(out_features, _MAX_MEASURED_OUT)
    w = torch.randn(out_features, in_features, generator=gen) * 0.05
    b = torch.randn(out_features, generator=gen)
    wb, bb = w.bfloat16(), b.bfloat16()
    try:  # oneDNN's packed bf16 layout where this CPU has one (AVX-512 BF16, AMX); plain F.linear otherwise
        wp = pack_linear_weight(wb)
        low = lambda x: torch.ops.mkldnn._linear_pointwise(x.bfloat16(), wp, bb, "none", [], "").float()  # noqa: E731
        low(torch.randn(2, in_features))
    except RuntimeError:
        low = lambda x: F.linear(x.bfloat16(), wb, bb).float()  # noqa: E731
    return _choice("bf16 GEMM", low, _f32_linear(w, b, in_features, out_features), in_features)
