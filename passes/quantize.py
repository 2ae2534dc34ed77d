"""quantize: int8 weights (and run-time int8 activations) for linear layers, written as explicit Q/DQ in the IR.

    linear(x, W, b)   ⇒   linear(dequantize_linear(dynamic_quantize_linear(x)), dequantize_linear(W_q, s_w, 0), b)

with W_q = round(W / s_w) in int8, symmetric, one scale per output channel (or one per tensor). `int8-weight-only`
leaves x alone; `int4-weight-only` stores 4-bit codes with a scale per output channel and group of input features
(`dequantize_linear{axis=1 block_size=G}`, ONNX's blocked form). The result is still a float graph — a reference
run of it is the fake-quant model, and ONNX exports it as QDQ — until `lower-quantized` turns each pattern into a
`quantized_linear` that runs integer arithmetic. The per-layer table gives the weight error the seed material asks for, E = Σ(w − q)², with its
relative form, SQNR and the weight's sparsity.

An LSTM's two weights are rounded the same way (a scale per gate row) and lowered to a `quantized_lstm`, which
also quantizes x and each step's h at run time — ONNX Runtime's int8 LSTM, where the target measures it faster.

With `smooth=α > 0` (SmoothQuant, Xiao et al. 2023) the activation outliers that ruin per-tensor int8 move into
the weights first: for the linears reading one input x, s_j = max|x_j|^α / max|W_:,j|^(1−α) per input channel
(from the calibration table), x ← x / s as one `mul` and W ← W·s — exact in float, and both sides quantize better.

Layers named in `skip` (by origin, as `module.path`, or by output value name) stay float: that is how
accuracy-budgeted mixed precision (graphopt.quantization) moves the sensitive ones back.

>>> import numpy as np
>>> from graphopt.ir import parse
>>> from graphopt.passes import PassManager
>>> g = parse('''graph @f(%x: f32[2,64]) {
...   const @w: f32[64,64] = external
...   %0: f32[2,64] = linear(%x, @w)
...   return %0
... }''', {"w": np.random.default_rng(0).standard_normal((64, 64), np.float32)})
>>> r = PassManager.parse("quantize{mode=int8-dynamic min-weights=0},lower-quantized,dce").run(g)
>>> [n.op.name for n in g]
['quantized_linear']
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from graphopt.ir import DType, Graph, Node, OpRef, Value

from .calibration import CalibrationTable
from .context import PassContext
from .registry import Budget, PassResult, Row, register_pass

__all__ = ["KernelAdvice", "quantize", "lower_quantized", "layer_ids", "quantize_weight", "quantize_weight_groups",
           "weight_error",
           "approximation_error", "activation_range"]

_LINEAR, _DQ, _DQL = OpRef("linear"), OpRef("dequantize_linear"), OpRef("dynamic_quantize_linear")
_GATHER, _CAST, _CONV, _Q = OpRef("gather"), OpRef("cast"), OpRef("conv"), OpRef("quantize_linear")
_CLAMP, _QCONV = OpRef("clamp"), OpRef("quantized_conv")
_LSTM = OpRef("lstm")
_RECURRENT = ("lstm", "gru", "rnn")


@dataclass(frozen=True)
class KernelAdvice:
    """What the target will run faster, asked before weights are rounded: `linear(in_features, out_features, kind,
    reduce_range) -> (the low-precision kernel wins, why)`, kind "dynamic" (int8 activations and weights), "static"
    (the same with a calibrated activation scale: wins only if faster than both f32 and dynamic), "none"
    (int8 weights only) or "bf16". The API provides the compile target's measured answer
    (`ctx.provide(KernelAdvice(...))`); without one every eligible layer is converted."""

    linear: Callable[[int, int, str, bool], tuple[bool, str]]  # kind: "dynamic", "static", "none", "int4", "bf16"
    # conv(input shape, weight shape, pads, strides, dilations, groups, reduce_range) -> (int8 wins, why)
    conv: Callable[[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...], int, bool],
                   tuple[bool, str]] | None = None
    # lstm(steps, batch, input size, hidden) -> (the int8 LSTM wins, why)
    lstm: Callable[[int, int, int, int], tuple[bool, str]] | None = None


def layer_ids(graph: Graph) -> dict[Node, str]:
    """How reports and `skip` name each linear, convolution and recurrent layer: its origin (the module path), or
    its output's name where it has none; layers sharing an origin (q, k and v of one attention module) get
    `origin/output`."""
    linears = [n for n in graph if _LINEAR.of(n) or _CONV.of(n) or n.op.name in _RECURRENT]
    count: dict[str, int] = {}
    for n in linears:
        count[n.origin] = count.get(n.origin, 0) + 1
    return {n: n.origin if n.origin and count[n.origin] == 1 else
            f"{n.origin}/{n.outputs[0].name}" if n.origin else n.outputs[0].name for n in linears}


def quantize_weight(w: np.ndarray, per_channel: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(int8 weight, f32 scale): symmetric over -127..127, one scale per row (output channel) or one in all."""
    w64 = w.astype(np.float64)
    amax = np.abs(w64).max(axis=1) if per_channel else np.array(np.abs(w64).max())
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    s = scale.reshape(-1, 1) if per_channel else scale
    q = np.clip(np.rint(w64 / s), -127, 127).astype(np.int8)
    return q, scale


_CLIP_RATIOS = np.linspace(1.0, 0.6, 9)  # the group ranges tried, as a fraction of the group's max |w|


def quantize_weight_groups(w: np.ndarray, group_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(int4 codes in -8..7 held in int8, f32 scale [out, in / group_size]): symmetric, one scale per output channel
    and group of `group_size` consecutive input features (the layout of GPTQ/AWQ checkpoints and of the int4 GEMMs).

    With 16 levels, mapping the group's max |w| to the top code wastes most of them on one outlier: each group's
    range is the clip ratio (of 1.0 down to 0.6) with the least squared error Σ(w − q·s)², as llama.cpp's and
    AWQ's clip searches do — about 1 dB more SQNR than max scaling on Gaussian weights."""
    out_f, in_f = w.shape
    g = w.astype(np.float32).reshape(out_f, in_f // group_size, group_size)
    amax = np.abs(g).max(axis=2)
    best_err = np.full(amax.shape, np.inf, np.float32)
    scale = np.ones(amax.shape, np.float32)
    for ratio in _CLIP_RATIOS:
        s = np.where(amax > 0, amax * np.float32(ratio / 7.0), 1.0).astype(np.float32)
        err = np.square(g - np.clip(np.rint(g / s[..., None]), -8, 7) * s[..., None]).sum(axis=2)
        better = err < best_err
        best_err, scale = np.where(better, err, best_err), np.where(better, s, scale)
    q = np.clip(np.rint(g / scale[..., None]), -8, 7).astype(np.int8).reshape(out_f, in_f)
    return q, scale


def weight_error(w: np.ndarray, q: np.ndarray, scale: np.ndarray) -> Row:
    """E = Σ(w − q·s)², E relative to Σw², SQNR in dB, and the sparsity (fraction of zeros) of the int8 weight.
    A 2-D scale is group-wise (int4): one per row and block of q.shape[1] / scale.shape[1] columns."""
    if scale.ndim == 2:
        deq = q.astype(np.float64) * np.repeat(scale, q.shape[1] // scale.shape[1], axis=1)
    else:
        deq = q.astype(np.float64) * (scale.reshape(-1, 1) if scale.ndim else scale)
    return approximation_error(w, deq, zeros=float(np.mean(q == 0)))


def approximation_error(w: np.ndarray, approx: np.ndarray, zeros: float) -> Row:
    """E = Σ(w − approx)², relative to Σw², the SQNR in dB, and the given sparsity: one row of the layer table."""
    err = float(np.sum((w.astype(np.float64) - approx.astype(np.float64)) ** 2))
    power = float(np.sum(w.astype(np.float64) ** 2))
    return {"error": err, "rel_error": err / power if power else 0.0,
            "sqnr_db": 10 * math.log10(power / err) if err > 0 and power > 0 else math.inf, "sparsity": zeros}


def _stats(layers: list[Row], kept: list[Row], before: int, after: int) -> dict[str, int | float]:
    stats: dict[str, int | float] = {"quantized": len(layers), "kept_float": len(kept)}
    if layers:
        stats.update(weight_mb_before=before / 2**20, weight_mb_after=after / 2**20,
                     worst_weight_sqnr_db=min(r["sqnr_db"] for r in layers))
    return stats


def _why_not(node: Node, name: str, min_weights: int, skip: frozenset[str], advice: KernelAdvice | None,
             act_quant: str, reduce_range: bool, mode: str = "int8-dynamic", group_size: int = 0) -> str | None:
    """Why this linear or convolution stays float (None: it is quantized)."""
    w = node.inputs[1]
    if name in skip or node.outputs[0].name in skip:
        return "skipped (listed in skip)"
    if node.op.name in _RECURRENT:
        return _why_not_recurrent(node, min_weights, mode, advice)
    if _CONV.of(node):
        return _why_not_conv(node, min_weights, mode)
    if w.const is None:
        return "the weight is not a constant"
    if node.inputs[0].type.dtype != DType.F32 or w.type.dtype != DType.F32:
        return f"{node.inputs[0].type.dtype} input; quantization starts from f32"
    if w.const.size < min_weights:
        return f"{w.const.size} weights, fewer than min_weights={min_weights}: the scale math costs more than it saves"
    if group_size and w.type.shape[1] % group_size:
        return f"in_features {w.type.shape[1]} is not a multiple of group_size={group_size}"
    if advice is not None:
        out_f, in_f = w.type.shape
        wins, why = advice.linear(int(in_f), int(out_f), act_quant, reduce_range)
        if not wins:
            return why
    return None


@register_pass("quantize", budget=Budget(cosine=0.99))
def quantize(graph: Graph, ctx: PassContext, *,
             mode: Literal["int8-dynamic", "int8-static", "int8-weight-only", "int4-weight-only", "bf16"] = "int8-dynamic",
             granularity: Literal["per-channel", "per-tensor"] = "per-channel", reduce_range: bool = True,
             min_weights: int = 4096, skip: tuple[str, ...] = (), smooth: float = 0.0,
             embeddings: bool = True, min_embedding: int = 1 << 20,
             observer: Literal["minmax", "percentile", "mse", "entropy"] = "percentile",
             group_size: Literal[32, 64, 128, 256] = 128) -> PassResult:
    """Write int8 Q/DQ around linear layers: weights per output channel, activations at run time (int8-dynamic);
    or (bf16) run linear layers in bfloat16 between casts, every other op staying f32; int8-static gives linear
    layers and 2-D convolutions int8 inputs with a calibrated scale (`observer` picks the range from the
    CalibrationTable) — a linear stays dynamic where the target measures its fixed-scale kernel slower.

    `reduce_range` quantizes activations to 0..127, exact on CPUs without VNNI (see graphopt.ir.ops.quantized);
    `smooth` > 0 migrates activation outliers into the weights first (needs a CalibrationTable); `embeddings`
    also stores embedding tables (gathers of a constant) of at least `min_embedding` elements in int8, one scale
    per row (a lookup then costs four small ops instead of one: worth it for a 30k-word table, not a 200-word one).
    `int4-weight-only` stores linear weights as 4-bit codes with one scale per `group_size` input features (kept
    one code per int8 in the IR and the artifact; the cpu target packs two per byte), activations stay float."""
    if not 0.0 <= smooth <= 1.0:
        from graphopt.errors import PassError

        raise PassError(f"quantize: smooth must be in [0, 1], got {smooth}")
    table = ctx.need(CalibrationTable) if (smooth > 0 and mode == "int8-dynamic") or mode == "int8-static" else None
    skipped = frozenset(skip)
    advice = ctx.find(KernelAdvice)
    act_quant = {"int8-dynamic": "dynamic", "int8-static": "dynamic", "int8-weight-only": "none",
                 "int4-weight-only": "int4", "bf16": "bf16"}[mode]
    group = group_size if mode == "int4-weight-only" else 0
    layers: list[Row] = []
    kept: list[Row] = []
    bytes_before = bytes_after = 0
    chosen: list[tuple[Node, str]] = []
    for node, name in layer_ids(graph).items():
        reason = _why_not(node, name, min_weights, skipped, advice, act_quant, reduce_range, mode, group)
        if reason is not None:
            kept.append({"layer": name, "reason": reason})
        else:
            chosen.append((node, name))
    if mode == "bf16":
        return _to_bf16(graph, chosen, kept, advice)
    convs = [(n, name) for n, name in chosen if _CONV.of(n)]
    for node, name in [(n, name) for n, name in chosen if _LSTM.of(n)]:
        row, sizes = _int8_lstm(graph, node, name, granularity == "per-channel")
        if advice is not None and advice.lstm is not None:  # the measured choice, for the report (cached)
            row["reason"] = advice.lstm(*_lstm_shape(node))[1]
        layers.append(row)
        bytes_before, bytes_after = bytes_before + sizes[0], bytes_after + sizes[1]
    chosen = [(n, name) for n, name in chosen if not _CONV.of(n) and not _LSTM.of(n)]
    if convs:
        assert table is not None  # needed above for int8-static, the only mode that keeps convs
        conv_rows, conv_kept, conv_bytes = _static_convs(graph, convs, table, advice, observer, reduce_range)
        layers += conv_rows
        kept += conv_kept
        bytes_before, bytes_after = bytes_before + conv_bytes[0], bytes_after + conv_bytes[1]
    factors = _smoothing(graph, [n for n, _ in chosen], table, smooth) if table is not None and smooth else {}
    for node, name in chosen:
        w = node.inputs[1]
        assert w.const is not None  # checked in _why_not
        if node in factors:
            smoothed_x, s = factors[node]
            node.set_input(0, smoothed_x)
            w_float = (w.const.astype(np.float64) * s[None, :]).astype(np.float32)
        else:
            w_float = w.const
        q, scale = quantize_weight_groups(w_float, group) if group else quantize_weight(w_float,
                                                                                         granularity == "per-channel")
        static_why = _static_linear(node, table, advice, reduce_range) if mode == "int8-static" else None
        with graph.inserting_before(node):
            node.set_input(1, _dequantized(graph, w, q, scale, group))
            if mode == "int8-static" and static_why is not None and static_why[0]:
                assert table is not None  # _static_linear found the input observed
                _quantize_input_static(graph, node, table, observer, reduce_range)
            elif mode in ("int8-dynamic", "int8-static"):
                dql = graph.add_node("dynamic_quantize_linear", [node.inputs[0]], {"reduce_range": reduce_range})
                node.set_input(0, graph.add_node("dequantize_linear", list(dql.outputs), {}).outputs[0])
        bytes_before += w.const.nbytes
        bytes_after += q.nbytes + scale.nbytes
        row = {"layer": name, "shape": list(q.shape), **weight_error(w_float, q, scale),
               "precision": "int4" if group else "int8"}
        if node in factors:
            row["smoothed"] = True
        if advice is not None:  # the measured kernel choice, for the report (cached: not timed twice)
            row["reason"] = advice.linear(int(q.shape[1]), int(q.shape[0]), act_quant, reduce_range)[1]
        if static_why is not None:
            row["activations"] = "static" if static_why[0] else "dynamic"
            if static_why[1]:
                row["reason"] = "; ".join(r for r in (row.get("reason"), static_why[1]) if r)
        layers.append(row)
        if w.num_uses == 0 and not w.output_refs:
            graph.remove_constant(w)
    if embeddings:
        for node in _embedding_gathers(graph, max(min_weights, min_embedding), skipped):
            table_v = node.inputs[0]
            assert table_v.const is not None  # checked in _embedding_gathers
            q, scale = quantize_weight(table_v.const, per_channel=True)  # a row per token: one scale each
            with graph.inserting_before(node):
                node.set_input(0, _dequantized(graph, table_v, q, scale))
            bytes_before += table_v.const.nbytes
            bytes_after += q.nbytes + scale.nbytes
            layers.append({"layer": node.origin or node.outputs[0].name, "shape": list(q.shape),
                           **weight_error(table_v.const, q, scale), "reason": "embedding table, int8 rows", "precision": "int8"})
            if table_v.num_uses == 0 and not table_v.output_refs:
                graph.remove_constant(table_v)
    stats = _stats(layers, kept, bytes_before, bytes_after)
    if factors:
        stats["smoothed"] = len(factors)
    return PassResult(changed=bool(layers), stats=stats, tables={"layers": layers, "kept_float": kept})


def _to_bf16(graph: Graph, chosen: list[tuple[Node, str]], kept: list[Row], advice: KernelAdvice | None
             ) -> PassResult:
    """cast(linear(cast(x, bf16), W_bf16, b_bf16), f32) per chosen layer: the GEMM in bf16 (what avx512_bf16 and
    AMX run fast), normalization, softmax and the residual stream in f32."""
    from graphopt.ir import DType as D

    layers: list[Row] = []
    before = after = 0
    for node, name in chosen:
        w = node.inputs[1]
        assert w.const is not None
        wb = w.const.astype(D.BF16.numpy)
        ins = [node.inputs[0], w, *node.inputs[2:]]
        with graph.inserting_before(node):
            src = ins[0].producer
            if src is not None and _CAST.of(src) and src.inputs[0].type.dtype == D.BF16:
                xb = src.inputs[0]  # the previous bf16 layer's output: bf16 → f32 → bf16 is the identity
            else:
                xb = graph.add_node("cast", [ins[0]], {"dtype": D.BF16}).outputs[0]
            operands = [xb, graph.add_constant(wb, name=graph.fresh_name(w.name + ".bf16"))]
            for v in ins[2:]:
                operands.append(graph.add_constant(v.const.astype(D.BF16.numpy), name=graph.fresh_name(v.name + ".bf16"))
                                if v.const is not None else graph.add_node("cast", [v], {"dtype": D.BF16}).outputs[0])
            y = graph.add_node("linear", operands, dict(node.attrs)).outputs[0]
            back = graph.add_node("cast", [y], {"dtype": D.F32}).outputs[0]
        node.outputs[0].replace_all_uses_with(back)
        graph.remove_node(node)
        for v in ins[1:]:
            if v.const is not None and v.num_uses == 0 and not v.output_refs:
                graph.remove_constant(v)
        row: Row = {"layer": name, "shape": list(wb.shape),
                    **approximation_error(w.const, wb, zeros=float(np.mean(wb.astype(np.float32) == 0)))}
        if advice is not None:
            row["reason"] = advice.linear(int(wb.shape[1]), int(wb.shape[0]), "bf16", False)[1]
        layers.append(row)
        before, after = before + w.const.nbytes, after + wb.nbytes
    return PassResult(changed=bool(layers), stats=_stats(layers, kept, before, after),
                      tables={"layers": layers, "kept_float": kept})


def _lstm_shape(node: Node) -> tuple[int, int, int, int]:
    """(steps, batch, input size, hidden) of an lstm, free dims as 32 steps or batch 1: what the advice times."""
    x = node.inputs[0].type.shape
    steps, batch = (x[1], x[0]) if node.attrs["batch_first"] else (x[0], x[1])
    return (steps if isinstance(steps, int) else 32, batch if isinstance(batch, int) else 1, int(x[2]),
            int(node.inputs[4].type.shape[1]))


def _why_not_recurrent(node: Node, min_weights: int, mode: str, advice: KernelAdvice | None) -> str | None:
    if not _LSTM.of(node):
        return f"no int8 {node.op.name.upper()} kernel (ONNX Runtime's int8 recurrent kernel is an LSTM)"
    if mode not in ("int8-dynamic", "int8-static"):
        return "recurrent layers are quantized by int8-dynamic and int8-static only (no weight-only or bf16 LSTM kernel)"
    w_ih, w_hh = node.inputs[3], node.inputs[4]
    if w_ih.const is None or w_hh.const is None or any(v.type.dtype != DType.F32 for v in node.inputs):
        return "an f32 LSTM with constant weights is needed"
    if not isinstance(node.inputs[0].type.shape[2], int):
        return "the input size is not static"
    if w_ih.const.size + w_hh.const.size < min_weights:
        return f"{w_ih.const.size + w_hh.const.size} weights, fewer than min_weights={min_weights}"
    if advice is not None and advice.lstm is not None:
        wins, why = advice.lstm(*_lstm_shape(node))
        if not wins:
            return why
    return None


def _int8_lstm(graph: Graph, node: Node, name: str, per_channel: bool) -> tuple[Row, tuple[int, int]]:
    """Both weights of an lstm as dequantize_linear of int8, a scale per gate row (per channel) or one each:
    lower-quantized turns the lstm into a quantized_lstm, whose GEMMs also quantize x and h at run time (ONNX
    Runtime's DynamicQuantizeLSTM; its activations are computed per call, so int8-static changes nothing here)."""
    ws, qs, scales = [], [], []
    with graph.inserting_before(node):
        for k in (3, 4):
            w = node.inputs[k]
            assert w.const is not None  # checked in _why_not_recurrent
            q, scale = quantize_weight(w.const, per_channel)
            node.set_input(k, _dequantized(graph, w, q, scale))
            ws.append(w.const)
            qs.append(q)
            scales.append(scale)
            if w.num_uses == 0 and not w.output_refs:
                graph.remove_constant(w)
    deq = [q.astype(np.float64) * (s.reshape(-1, 1) if s.ndim else s) for q, s in zip(qs, scales)]
    codes = np.concatenate(qs, axis=1)  # the error of [w_ih | w_hh] as one matrix: one row per layer
    row = {"layer": name, "shape": list(codes.shape), "precision": "int8", "activations": "dynamic",
           **approximation_error(np.concatenate(ws, axis=1), np.concatenate(deq, axis=1),
                                 zeros=float(np.mean(codes == 0)))}
    return row, (sum(w.nbytes for w in ws), sum(q.nbytes + s.nbytes for q, s in zip(qs, scales)))


def _why_not_conv(node: Node, min_weights: int, mode: str) -> str | None:
    if mode != "int8-static":
        return "convolutions are quantized by int8-static only (their inputs need calibrated scales)"
    w, x = node.inputs[1], node.inputs[0]
    if w.const is None or w.type.dtype != DType.F32 or x.type.dtype != DType.F32:
        return "an f32 convolution with a constant weight is needed"
    if w.type.rank != 4 or not all(isinstance(d, int) for d in x.type.shape[1:]):
        return "2-D convolutions with static channels and spatial sizes only"
    pads = node.attrs["pads"] or (0,) * 4
    if list(pads[:2]) != list(pads[2:]):
        return "asymmetric padding"
    if w.const.size < min_weights:
        return f"{w.const.size} weights, fewer than min_weights={min_weights}"
    return None


def activation_range(table: CalibrationTable, name: str, observer: str, reduce_range: bool
                     ) -> tuple[np.float32, np.uint8, float, float]:
    """(scale, zero point, low, high) of a static uint8 quantization of value `name`: the observer's threshold
    clips both ends, zero stays exactly representable, and [low, high] is what the scale can represent."""
    stats = table[name]
    qmax = 127 if reduce_range else 255
    lo, hi = min(stats.min, 0.0), max(stats.max, 0.0)
    if observer != "minmax":
        t = table.threshold(name, observer)  # type: ignore[arg-type]
        lo, hi = max(lo, -t), min(hi, t)
    scale = np.float32((hi - lo) / qmax) if hi > lo else np.float32(1.0)
    zp = np.uint8(np.clip(np.rint(-lo / scale), 0, qmax))
    return scale, zp, float((0 - int(zp)) * scale), float((qmax - int(zp)) * scale)


def _static_convs(graph: Graph, convs: list[tuple[Node, str]], table: CalibrationTable,
                  advice: KernelAdvice | None, observer: str, reduce_range: bool
                  ) -> tuple[list[Row], list[Row], tuple[int, int]]:
    """clamp → quantize_linear → dequantize_linear on each convolution's input (a calibrated scale) and int8
    weights per output channel; layers the target measures slower in int8, or never observed, stay f32."""
    rows: list[Row] = []
    kept: list[Row] = []
    before = after = 0
    for node, name in convs:
        x, w = node.inputs[0], node.inputs[1]
        if x.name not in table:
            kept.append({"layer": name, "reason": "its input was not observed in calibration"})
            continue
        at = node.attrs
        pads, strides = tuple(at["pads"] or (0,) * 4)[:2], tuple(at["strides"] or (1, 1))
        if advice is not None and advice.conv is not None:
            shape = (x.type.shape[0] if isinstance(x.type.shape[0], int) else 1, *x.type.shape[1:])  # batch 1 if free
            wins, why = advice.conv(tuple(shape), tuple(w.type.shape), pads, strides,  # type: ignore[arg-type]
                                    tuple(at["dilations"] or (1, 1)), at["groups"], reduce_range)
            if not wins:
                kept.append({"layer": name, "reason": why})
                continue
        else:
            why = ""
        assert w.const is not None
        q, ws = quantize_weight(w.const.reshape(w.const.shape[0], -1), per_channel=True)
        q = q.reshape(w.const.shape)
        with graph.inserting_before(node):
            scale, lo, hi = _quantize_input_static(graph, node, table, observer, reduce_range)
            node.set_input(1, _dequantized(graph, w, q, ws))
        before, after = before + w.const.nbytes, after + q.nbytes + ws.nbytes
        row = {"layer": name, "shape": list(q.shape), **weight_error(w.const.reshape(q.shape[0], -1),
                                                                      q.reshape(q.shape[0], -1), ws),
               "input_scale": float(scale), "input_range": [lo, hi]}
        if why:
            row["reason"] = why
        rows.append(row)
        if w.num_uses == 0 and not w.output_refs:
            graph.remove_constant(w)
    return rows, kept, (before, after)


def _static_linear(node: Node, table: CalibrationTable | None, advice: KernelAdvice | None, reduce_range: bool
                   ) -> tuple[bool, str]:
    """(whether int8-static gives this linear a calibrated input scale, why not / the measurement). Where the
    target measures the fixed-scale kernel slower than the dynamic one (which computes the scale per call), the
    layer stays dynamic: calibration must not cost speed."""
    if table is None or node.inputs[0].name not in table:
        return False, "activations dynamic: the input was not observed in calibration"
    if advice is None:
        return True, ""
    out_f, in_f = node.inputs[1].type.shape
    wins, why = advice.linear(int(in_f), int(out_f), "static", reduce_range)
    return wins, why if wins else f"activations dynamic: {why}"


def _quantize_input_static(graph: Graph, node: Node, table: CalibrationTable, observer: str, reduce_range: bool
                           ) -> tuple[np.float32, float, float]:
    """clamp → quantize_linear → dequantize_linear on input 0 of `node` with the calibrated scale (what
    lower-quantized turns into a static integer op), at the insertion point; returns (scale, low, high)."""
    x = node.inputs[0]
    scale, zp, lo, hi = activation_range(table, x.name, observer, reduce_range)
    c = graph.add_node("clamp", [x], {"min": lo, "max": hi}).outputs[0]
    s_v = graph.add_constant(np.asarray(scale, np.float32), name=graph.fresh_name(x.name + ".scale"))
    z_v = graph.add_constant(np.asarray(zp, np.uint8), name=graph.fresh_name(x.name + ".zero_point"))
    xq = graph.add_node("quantize_linear", [c, s_v, z_v], {}).outputs[0]
    node.set_input(0, graph.add_node("dequantize_linear", [xq, s_v, z_v], {}).outputs[0])
    return scale, lo, hi


def _dequantized(graph: Graph, w: Value, q: np.ndarray, scale: np.ndarray, group_size: int = 0) -> Value:
    """dequantize_linear(int8 constant, scale, 0) along axis 0 — or, group-wise (int4), blocked along axis 1 — at
    the insertion point: what replaces weight `w`."""
    wq = graph.add_constant(q, name=graph.fresh_name(w.name + (".int4" if group_size else ".int8")))
    ws = graph.add_constant(scale, name=graph.fresh_name(w.name + ".scale"))
    wz = graph.add_constant(np.zeros(scale.shape, np.int8), name=graph.fresh_name(w.name + ".zero_point"))
    attrs = {"axis": 1, "block_size": group_size} if group_size else {"axis": 0}
    return graph.add_node("dequantize_linear", [wq, ws, wz], attrs).outputs[0]


def _embedding_gathers(graph: Graph, min_weights: int, skip: frozenset[str]) -> list[Node]:
    """Row lookups (gather along axis 0) in a constant f32 table of at least `min_weights` elements."""
    out = []
    for n in graph:
        t = n.inputs[0] if _GATHER.of(n) else None
        if t is None or t.const is None or t.type.dtype != DType.F32 or t.type.rank != 2 or n.attrs["axis"] != 0:
            continue
        if t.const.size >= min_weights and (n.origin or n.outputs[0].name) not in skip:
            out.append(n)
    return out


def _smoothing(graph: Graph, nodes: list[Node], table: CalibrationTable, alpha: float
               ) -> dict[Node, tuple[Value, np.ndarray]]:
    """Per linear: (x / s, s) — one `mul` per distinct input shared by the linears reading it (q, k and v)."""
    by_input: dict[Value, list[Node]] = {}
    for n in nodes:
        by_input.setdefault(n.inputs[0], []).append(n)
    out: dict[Node, tuple[Value, np.ndarray]] = {}
    for x, group in by_input.items():
        if x.name not in table:
            continue
        a = table[x.name].channel_absmax.astype(np.float64)
        w = np.max([np.abs(n.inputs[1].const).max(axis=0) for n in group], axis=0).astype(np.float64)  # type: ignore[union-attr]
        if a.shape != w.shape:
            continue
        s = np.where((a > 0) & (w > 0), a ** alpha / np.maximum(w, 1e-12) ** (1 - alpha), 1.0)
        s = np.clip(s, 1e-5, 1e5)
        with graph.inserting_before(group[0]):
            inv = graph.add_constant((1.0 / s).astype(np.float32), name=graph.fresh_name(x.name + ".smooth"))
            smoothed = graph.add_node("mul", [x, inv], {}).outputs[0]
        out.update({n: (smoothed, s) for n in group})
    return out


def _const_zero(v: Value) -> bool:
    return v.const is not None and not np.any(v.const)


def _int8_weight(v: Value) -> tuple[Value, Value, int] | None:
    """(int8 weight, scale, group size) when `v` is dequantize_linear of constants with a zero zero point along
    axis 0, or blocked along axis 1 (group size > 0: int4 codes, a scale per row and group of columns)."""
    dq = v.producer
    if dq is None or not _DQ.of(dq):
        return None
    q, s, z = dq.inputs
    if q.const is None or q.type.dtype != DType.I8 or q.type.rank != 2 or s.const is None or not _const_zero(z):
        return None
    block = dq.attrs["block_size"]
    if block:
        return (q, s, block) if dq.attrs["axis"] % 2 == 1 and s.type.dtype == DType.F32 else None
    if s.type.rank > 1 or (s.type.rank == 1 and dq.attrs["axis"] % 2 != 0):
        return None
    return q, s, 0


def _static_input(v: Value) -> tuple[Value, Value, Value, bool] | None:
    """(float x, scale, zero point, reduce_range) when `v` is dequantize_linear(quantize_linear(clamp(x))) with one
    constant scale and zero point, and the clamp keeps the codes within 0..127 or 0..255."""
    dq = v.producer
    if dq is None or not _DQ.of(dq):
        return None
    q = dq.inputs[0].producer
    if q is None or not _Q.of(q) or list(q.inputs[1:]) != list(dq.inputs[1:]):
        return None
    s, z = q.inputs[1], q.inputs[2]
    if s.const is None or z.const is None or s.type.rank or z.type.dtype != DType.U8:
        return None
    c = q.inputs[0].producer
    if c is None or not _CLAMP.of(c) or c.attrs["max"] is None:
        return None
    top = int(np.rint(c.attrs["max"] / float(s.const) + int(z.const)))
    if top not in (127, 255):
        return None
    return c.inputs[0], s, z, top == 127


def _chain_int8_convs(graph: Graph) -> int:
    """Where a quantized_conv's only reader is another one's input, quantize in the first one's epilogue with the
    second's input scale: the codes pass as u8 (no f32 tensor written and read back, no separate quantize) — the
    same arithmetic, since the second conv would clip and round that f32 value with that scale. Only where the
    result needs nothing after the kernel's epilogue: no residual, activation none or relu."""
    outputs = {id(v) for v in graph.outputs}
    alive: set[int] = set()  # the Q/DQ chains the lowering replaced are still in the graph, unread
    for n in reversed(list(graph)):  # users come after producers: one backward sweep
        if any(id(o) in outputs or any(id(u) in alive for u in o.users) for o in n.outputs):
            alive.add(id(n))

    chained = 0
    for a in [n for n in graph if _QCONV.of(n)]:
        y = a.outputs[0]
        readers = [u for u in y.users if id(u) in alive]
        if (len(a.inputs) > 6 or a.attrs["activation"] not in ("none", "relu") or a.attrs["out_scale"]
                or id(y) in outputs or len(readers) != 1):
            continue
        (b,) = readers
        if (not _QCONV.of(b) or b.inputs[0] is not y or any(v is y for v in b.inputs[1:])
                or b.attrs["reduce_range"] != a.attrs["reduce_range"] or b.inputs[3].const is None
                or b.inputs[4].const is None):
            continue
        attrs = {**a.attrs, "out_scale": float(b.inputs[3].const), "out_zero_point": int(b.inputs[4].const)}
        with graph.inserting_before(a):
            new = graph.add_node("quantized_conv", list(a.inputs), attrs)
        b.set_input(0, new.outputs[0])
        alive.discard(id(a))
        alive.add(id(new))
        dead, frontier = [], [a]  # the f32 conv and the Q/DQ chain it fed: nothing reads them now
        while frontier:
            n = frontier.pop()
            if n not in dead and id(n) not in alive:
                dead.append(n)
                frontier.extend(u for o in n.outputs for u in o.users)
        graph.remove_nodes(dead)
        chained += 1
    return chained


def _dynamic_input(v: Value) -> tuple[Value, bool] | None:
    """(float x, reduce_range) when `v` is dequantize_linear(dynamic_quantize_linear(x))."""
    dq = v.producer
    if dq is None or not _DQ.of(dq):
        return None
    dql = dq.inputs[0].producer
    if dql is None or not _DQL.of(dql) or [i for i in dq.inputs] != list(dql.outputs):
        return None
    return dql.inputs[0], bool(dql.attrs["reduce_range"])


@register_pass("lower-quantized")
def lower_quantized(graph: Graph, ctx: PassContext) -> PassResult:
    """Turn Q/DQ patterns around linear layers into `quantized_linear` (integer arithmetic, one op per layer), and
    row lookups in a dequantized table into lookups in the int8 table scaled per row."""
    lowered = {"dynamic": 0, "static": 0, "weight_only": 0, "int4": 0, "embedding": 0}
    for node in [n for n in graph if _GATHER.of(n) and n.attrs["axis"] == 0]:
        weight = _int8_weight(node.inputs[0])
        if weight is None or weight[1].type.rank != 1:
            continue
        q, s, _ = weight
        with graph.inserting_before(node):
            rows = graph.add_node("cast", [graph.add_node("gather", [q, node.inputs[1]], {"axis": 0}).outputs[0]],
                                  {"dtype": DType.F32}).outputs[0]
            row_scale = graph.add_node("gather", [s, node.inputs[1]], {"axis": 0}).outputs[0]
            row_scale = graph.add_node("unsqueeze", [row_scale], {"axes": [-1]}).outputs[0]
            new = graph.add_node("mul", [rows, row_scale], {})
        node.outputs[0].replace_all_uses_with(new.outputs[0])
        graph.remove_node(node)
        lowered["embedding"] += 1
    lowered["static_conv"] = 0
    for node in [n for n in graph if _CONV.of(n)]:
        static = _static_input(node.inputs[0])
        w_dq = node.inputs[1].producer
        if static is None or w_dq is None or not _DQ.of(w_dq):
            continue
        q_w, s_w, z_w = w_dq.inputs
        if q_w.const is None or q_w.type.dtype != DType.I8 or s_w.const is None or not _const_zero(z_w):
            continue
        x, s_x, z_x, reduce_range = static
        extra = list(node.inputs[2:])  # bias, residual: positional in both ops
        attrs = {k: node.attrs[k] for k in ("strides", "pads", "dilations", "groups", "activation")}
        attrs["strides"] = attrs["strides"] or [1, 1]
        attrs["pads"] = attrs["pads"] or [0, 0, 0, 0]
        attrs["dilations"] = attrs["dilations"] or [1, 1]
        with graph.inserting_before(node):
            new = graph.add_node("quantized_conv", [x, q_w, s_w, s_x, z_x, *extra], {**attrs,
                                                                                     "reduce_range": reduce_range})
        node.outputs[0].replace_all_uses_with(new.outputs[0])
        graph.remove_node(node)
        lowered["static_conv"] += 1
    lowered["chained_conv"] = _chain_int8_convs(graph)
    lowered["lstm"] = 0
    for node in [n for n in graph if _LSTM.of(n)]:
        ih, hh = _int8_weight(node.inputs[3]), _int8_weight(node.inputs[4])
        if ih is None or hh is None or ih[2] or hh[2] or node.inputs[0].type.dtype != DType.F32:
            continue
        x, h0, c0 = node.inputs[:3]
        with graph.inserting_before(node):
            new = graph.add_node("quantized_lstm", [x, h0, c0, ih[0], ih[1], hh[0], hh[1], *node.inputs[5:7]],
                                 dict(node.attrs))
        for old, v in zip(node.outputs, new.outputs):
            old.replace_all_uses_with(v)
        graph.remove_node(node)
        lowered["lstm"] += 1
    for node in [n for n in graph if _LINEAR.of(n)]:
        weight = _int8_weight(node.inputs[1])
        if weight is None:
            ctx.reject("lower-quantized", node, "the weight is not dequantize_linear of a constant int8 weight")
            continue
        dynamic = _dynamic_input(node.inputs[0])
        static = None if dynamic else _static_input(node.inputs[0])
        x = dynamic[0] if dynamic else static[0] if static else node.inputs[0]
        q, s, group = weight
        if x.type.dtype != DType.F32:
            ctx.reject("lower-quantized", node, f"{x.type.dtype} input")
            continue
        if group and (dynamic or static):
            ctx.reject("lower-quantized", node, "group-wise weights with int8 activations (no such integer kernel)")
            continue
        attrs = {"act_quant": "dynamic" if dynamic else "static" if static else "none",
                 "reduce_range": dynamic[1] if dynamic else static[3] if static else True,
                 "activation": node.attrs["activation"], "group_size": group}
        if static:
            attrs.update(x_scale=float(static[1].const), x_zero_point=int(static[2].const))  # type: ignore[arg-type]
        with graph.inserting_before(node):
            new = graph.add_node("quantized_linear", [x, q, s, *node.inputs[2:]], attrs)
        node.outputs[0].replace_all_uses_with(new.outputs[0])
        graph.remove_node(node)
        lowered["dynamic" if dynamic else "static" if static else "int4" if group else "weight_only"] += 1
    return PassResult(changed=sum(lowered.values()) > 0, stats=lowered)
