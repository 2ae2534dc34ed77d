"""Quantizing a model end to end: per-layer sensitivity, accuracy-budgeted mixed precision, the pipeline.

The passes (`quantize`, `lower-quantized`) rewrite a graph; this module decides *which* layers they may touch.
For each layer that the target would run faster in int8 it measures the whole model's output with only that layer
quantized (its sensitivity), then keeps the most sensitive layers in f32 until the model's cosine against f32 on
the calibration inputs meets the budget. Every measurement runs the real lowered int8 kernels on the cpu target,
so the budget holds for the model that is shipped, not for a simulation of it.

>>> import numpy as np, torch, graphopt
>>> model = torch.nn.Sequential(torch.nn.Linear(768, 768), torch.nn.ReLU(), torch.nn.Linear(768, 8)).eval()
>>> x = torch.randn(16, 768)
>>> q = graphopt.compile(model, (x,), quantize="int8-dynamic", budget=0.999)
>>> bool(np.corrcoef(q(x).numpy().ravel(), model(x).detach().numpy().ravel())[0, 1] > 0.999)
True
>>> [sorted({"layer", "precision"} & set(row)) for row in q.layers]  # int8 or fp32 per layer, measured here
[['layer', 'precision'], ['layer', 'precision']]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from graphopt.ir import Graph
from graphopt.ir import Trait
from graphopt.passes import PassContext, PassManager, PassSpec, get_pass
from graphopt.passes.calibration import CalibrationTable
from graphopt.passes.quantize import KernelAdvice

__all__ = ["PRECISIONS", "precision_name", "calibrate", "slower_than_f32", "quantize_graph", "sensitivity", "choose_float_layers", "samples_for", "plot_layers",
           "layer_rows", "cpu_advice"]

PRECISIONS = ("fp32", "int8-dynamic", "int8-static", "int8-weight-only", "int4-weight-only", "bf16")
Row = dict[str, Any]


def precision_name(mode: str) -> str:
    """What a quantized layer's precision is called in reports: "bf16", "int4" or "int8"."""
    return "bf16" if mode == "bf16" else "int4" if mode.startswith("int4") else "int8"


def samples_for(graph: Graph, data: Any) -> list[list[np.ndarray]]:
    """Calibration inputs as lists of arrays in graph-input order, from an iterable of samples (each a tuple or
    list of arrays/tensors, a dict by input name, or one array for a one-input graph) or an npz-like mapping of
    stacked arrays by input name (one sample per leading index)."""
    names = [v.name for v in graph.inputs]
    as_np = lambda a: np.asarray(a.detach().cpu().numpy() if hasattr(a, "detach") else a)  # noqa: E731
    if isinstance(data, Mapping) and all(n in data for n in names) and not any(
            isinstance(v, Mapping) for v in data.values()):
        stacked = [as_np(data[n]) for n in names]
        return [[a[i] for a in stacked] for i in range(len(stacked[0]))]
    out: list[list[np.ndarray]] = []
    for s in data:
        if isinstance(s, Mapping):
            missing = [n for n in names if n not in s]
            if missing:
                raise ValueError(f"calibration sample lacks input(s) {', '.join(missing)}")
            out.append([as_np(s[n]) for n in names])
        elif hasattr(s, "shape"):
            out.append([as_np(s)])
        else:
            out.append([as_np(a) for a in s])
        if len(out[-1]) != len(names):
            raise ValueError(f"calibration sample {len(out)} has {len(out[-1])} inputs; the graph takes {len(names)}")
    if not out:
        raise ValueError("no calibration samples")
    return out


def calibrate(model: Any, dataset: Iterable[Any], *, values: Iterable[str] | None = None, progress: bool = False,
              example_inputs: Any = None, pipeline: str = "O2") -> CalibrationTable:
    """Run the graph over `dataset` (see `samples_for`) with the reference interpreter and record the values that
    quantization will touch: the inputs of every QUANTIZABLE node (linear, matmul, conv), or the named `values`.

    `model` is a Graph (used as is) or anything `graphopt.compile` takes (imported, then `pipeline` runs, so the
    names match the graph that will be quantized). Returns a CalibrationTable (`.save(path)`, `.load(path)`)."""
    from graphopt.api import to_graph
    from graphopt.ir.interpreter import run

    if isinstance(model, Graph):
        graph = model
    else:
        graph = to_graph(model, example_inputs)
        PassManager.parse(pipeline).run(graph)
    wanted = set(values) if values is not None else {
        n.inputs[0].name for n in graph if n.op.has(Trait.QUANTIZABLE) and n.inputs and n.inputs[0].type.dtype.is_float}
    table = CalibrationTable()
    samples = samples_for(graph, dataset)
    if progress:
        from rich.progress import track

        samples = list(track(samples, description=f"calibrating @{graph.name}", transient=True))
    for xs in samples:
        for v, a in zip(graph.inputs, xs):
            if v.name in wanted:
                table.observe(v.name, a)
        run(graph, xs, observe=lambda v, a: table.observe(v.name, a) if v.name in wanted else None)
        table.samples += 1
    return table


def cpu_advice() -> KernelAdvice:
    """The cpu target's measured answer to "is int8 faster than f32 for this layer here"."""
    from graphopt.backends.cpu.kernels import conv_advice, linear_advice
    from graphopt.backends.cpu.recurrent import lstm_advice

    return KernelAdvice(linear_advice, conv_advice, lstm_advice)


def quantize_graph(graph: Graph, mode: str, *, skip: Iterable[str] = (), advice: KernelAdvice | None = None,
                   lower: bool = True, table: CalibrationTable | None = None, smooth: float = 0.0,
                   reduce_range: bool = True) -> Any:
    """Quantize `graph` in place (then lower to integer ops unless `lower=False`); the pipeline's result.
    `smooth` > 0 (with a calibration `table`) migrates activation outliers into the weights first."""
    if mode not in PRECISIONS[1:]:
        raise ValueError(f"unknown precision {mode!r}; choose one of {', '.join(PRECISIONS)}")
    options: tuple[tuple[str, Any], ...] = (("mode", mode), ("skip", tuple(skip)), ("reduce-range", reduce_range))
    if mode == "int8-static" and table is None:
        raise ValueError("int8-static needs a calibration table (graphopt.calibrate) for its activation scales")
    if smooth and table is not None and mode == "int8-dynamic":
        options += (("smooth", smooth),)
    specs = [PassSpec(get_pass("quantize"), options)]
    if lower:
        specs.append(PassSpec(get_pass("lower-quantized")))
    specs.append(PassSpec(get_pass("dce")))
    ctx = PassContext()
    for data in (advice, table):
        if data is not None:
            ctx.provide(data)
    return PassManager(specs).run(graph, ctx)


def _outputs(graph: Graph, samples: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    from graphopt.backends import get_backend
    from graphopt.backends.cpu.delegate import torch_only

    # Only the values matter here: no compile-time races for ONNX Runtime regions (a sensitivity sweep and the
    # bisection compile one variant per probe; racing each cost ResNet-18's int8 compile 2 minutes).
    with torch_only():
        exe = get_backend("cpu").compile(graph)
    return np.concatenate([np.asarray(o, np.float64).ravel() for s in samples for o in exe(*s)])


def slower_than_f32(quantized: Graph, f32: Graph, inputs: Sequence[np.ndarray]) -> str | None:
    """Why the quantized graph is not worth shipping (None: it is faster): both compiled for the cpu target and
    timed on `inputs`, alternating. Per-layer races decide kernels; this decides the model — a tiny model's
    per-call overheads can add up to more than its int8 GEMMs save."""
    from graphopt.backends import get_backend
    from graphopt.backends.cpu.kernels import race

    cpu = get_backend("cpu")
    fq, ff = cpu.compile(quantized), cpu.compile(f32)
    t_q, t_f = race(lambda: fq(*inputs), lambda: ff(*inputs), pairs=11)
    if t_q < t_f:
        return None
    return f"the quantized model measured slower than f32 end to end ({t_q:.3f} vs {t_f:.3f} ms): kept f32"


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / denom) if denom else 1.0


def layer_rows(result: Any) -> tuple[list[Row], list[Row]]:
    """The quantize pass's tables from a pipeline result: (quantized layers, layers kept float with the reason)."""
    rec = next(r for r in result.records if r.name == "quantize")
    return list(rec.tables.get("layers", [])), list(rec.tables.get("kept_float", []))


def sensitivity(graph: Graph, samples: Sequence[Sequence[np.ndarray]], mode: str = "int8-dynamic", *,
                advice: KernelAdvice | None = None, reference: np.ndarray | None = None,
                table: CalibrationTable | None = None, smooth: float = 0.0, reduce_range: bool = True) -> list[Row]:
    """One row per layer that would be quantized: its weight error (E = Σ(w − q)², relative, SQNR, sparsity) and
    `output_cosine`, the model's outputs with only that layer quantized against f32, over all samples."""
    ref = _outputs(graph, samples) if reference is None else reference
    probe = graph.copy()
    layers, _ = layer_rows(quantize_graph(probe, mode, advice=advice, table=table, smooth=smooth, reduce_range=reduce_range))
    ids = [r["layer"] for r in layers]
    rows = []
    for row in layers:
        g = graph.copy()
        quantize_graph(g, mode, skip=[i for i in ids if i != row["layer"]], advice=advice, table=table, smooth=smooth,
                       reduce_range=reduce_range)
        rows.append({**row, "output_cosine": _cosine(_outputs(g, samples), ref)})
    return rows


def choose_float_layers(graph: Graph, samples: Sequence[Sequence[np.ndarray]], mode: str, min_cosine: float, *,
                        advice: KernelAdvice | None = None, table: CalibrationTable | None = None,
                        smooth: float = 0.0, reduce_range: bool = True) -> tuple[list[str], list[Row], float]:
    """The fewest most-sensitive layers to keep in f32 for the model's cosine vs f32 to reach `min_cosine`.

    Layers are ranked by sensitivity and the cut is found by bisection over that ranking (every probe runs the
    lowered int8 model); returns (layers kept f32, per-layer rows, the cosine reached)."""
    ref = _outputs(graph, samples)
    rows = sensitivity(graph, samples, mode, advice=advice, reference=ref, table=table, smooth=smooth,
                       reduce_range=reduce_range)
    ranked = [r["layer"] for r in sorted(rows, key=lambda r: r["output_cosine"])]

    def cosine_keeping(k: int) -> float:
        g = graph.copy()
        quantize_graph(g, mode, skip=ranked[:k], advice=advice, table=table, smooth=smooth,
                       reduce_range=reduce_range)
        return _cosine(_outputs(g, samples), ref)

    reached = {0: cosine_keeping(0)}
    lo, hi = 0, len(ranked)
    if reached[0] < min_cosine:
        reached[hi] = 1.0  # nothing quantized: the f32 model itself
        while hi - lo > 1:
            mid = (lo + hi) // 2
            reached[mid] = cosine_keeping(mid)
            lo, hi = (lo, mid) if reached[mid] >= min_cosine else (mid, hi)
    else:
        hi = 0
    return ranked[:hi], rows, reached[hi]


def plot_layers(rows: Sequence[Row], path: str, title: str = "per-layer quantization sensitivity", *,
                overwrite: bool = False) -> None:
    """A PNG bar chart: each layer's model-output error (1 − cosine) when only it is quantized, and its precision."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from graphopt.fileio import write_bytes_atomic

    fig, ax = plt.subplots(figsize=(max(6.0, 0.25 * len(rows)), 4))
    colors = ["tab:blue" if r.get("precision", "int8") != "fp32" else "tab:orange" for r in rows]
    ax.bar(range(len(rows)), [max(1 - r.get("output_cosine", 1.0), 1e-12) for r in rows], color=colors)
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)), [str(r["layer"])[-24:] for r in rows], rotation=90, fontsize=6)
    ax.set_ylabel("1 − cosine of model output (only this layer int8)")
    ax.set_title(title + " (orange: kept f32)")
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue(), overwrite=overwrite)
