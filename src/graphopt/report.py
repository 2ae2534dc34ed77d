"""What `CompiledModel.report()` measures: passes, size, fidelity and latency, all in one run.

Fidelity compares the compiled model with the original on the example inputs: the eager nn.Module when there
is one, else the original graph run by the reference interpreter. Latency is the median (and p90) of
`repeats` calls of each variant, interleaved in shuffled order after a warm-up, so machine noise hits both.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["Report", "build_report", "fidelity", "measure_latency"]


@dataclass
class Report:
    model: str
    target: str
    pipeline: str
    nodes_before: int
    nodes_after: int
    weight_bytes_before: int
    weight_bytes_after: int
    passes: list[dict[str, Any]] = field(default_factory=list)
    fidelity: dict[str, float] = field(default_factory=dict)
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    baseline: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    precision: str = "fp32"
    layers: list[dict[str, Any]] = field(default_factory=list)  # per quantizable layer: precision, why, errors

    @property
    def speedup(self) -> float | None:
        lat = self.latency_ms
        if "compiled" in lat and self.baseline in lat:
            return lat[self.baseline]["median"] / lat["compiled"]["median"]
        return None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["speedup"] = self.speedup
        return d

    def __str__(self) -> str:
        from rich.console import Console
        from rich.table import Table

        import io

        console = Console(file=io.StringIO(), record=True, width=110, color_system=None)
        console.print(f"[bold]graphopt report[/]: @{self.model} → target {self.target}, pipeline {self.pipeline!r}")
        t = Table(title="passes", title_justify="left")
        for col in ("pass", "changed", "ms", "nodes", "stats"):
            t.add_column(col)
        for p in self.passes:
            t.add_row(p["name"], "yes" if p["changed"] else "no", f"{p['seconds'] * 1e3:.1f}",
                      f"{p['nodes_before']}→{p['nodes_after']}",
                      ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in p["stats"].items()))
        console.print(t)
        if self.layers:
            console.print(self._layer_table())
        console.print(f"nodes {self.nodes_before} → {self.nodes_after}; weights "
                      f"{self.weight_bytes_before / 1e6:.2f} MB → {self.weight_bytes_after / 1e6:.2f} MB; "
                      + ", ".join(f"{k} {v:.2f} s" for k, v in self.timings.items()))
        if self.fidelity:
            f = self.fidelity
            console.print(f"fidelity vs {f.get('reference', 'original')}: max abs error {f['max_abs']:.3g} "
                          f"(relative {f['max_rel']:.3g}), cosine {f['cosine']:.8f}")
        if self.latency_ms:
            lt = Table(title="latency, ms (same run, interleaved rounds)", title_justify="left", min_width=44)
            for col in ("variant", "median", "p90"):
                lt.add_column(col)
            for name, v in self.latency_ms.items():
                lt.add_row(name, f"{v['median']:.3f}", f"{v['p90']:.3f}")
            console.print(lt)
            if self.speedup is not None:
                console.print(f"speedup vs {self.baseline}: [bold]{self.speedup:.2f}x[/]")
        return console.export_text().rstrip()


    def _layer_table(self) -> Any:
        from rich.table import Table

        t = Table(title=f"layers ({self.precision}): precision, weight error E = Σ(w − q)², model cosine with only "
                        "that layer quantized", title_justify="left")
        for col in ("layer", "precision", "E", "E rel", "SQNR dB", "zeros", "cosine alone", "why"):
            t.add_column(col, overflow="fold")
        for r in self.layers:
            num = lambda k, f, r=r: format(r[k], f) if k in r else "–"  # noqa: E731
            t.add_row(str(r["layer"]), r["precision"], num("error", ".3g"), num("rel_error", ".2e"),
                      num("sqnr_db", ".1f"), num("sparsity", ".1%"), num("output_cosine", ".6f"),
                      r.get("reason", "").split(" (")[0])  # the times are in report.json
        return t


def _flat(outs: Any) -> list[np.ndarray]:
    if hasattr(outs, "to_tuple"):  # transformers ModelOutput
        outs = outs.to_tuple()
    if not isinstance(outs, (list, tuple)):
        outs = [outs]
    flat: list[np.ndarray] = []
    for o in outs:
        if isinstance(o, (list, tuple)):
            flat += _flat(o)
        elif o is not None:
            flat.append(np.asarray(o.detach().numpy() if hasattr(o, "detach") else o, dtype=np.float64))
    return flat


def fidelity(got: Any, want: Any) -> dict[str, float]:
    """max abs error, error relative to the largest reference magnitude, and cosine over all outputs."""
    g, w = _flat(got), _flat(want)
    if len(g) != len(w) or any(a.shape != b.shape for a, b in zip(g, w)):
        raise ValueError(f"outputs differ in structure: {[a.shape for a in g]} vs {[b.shape for b in w]}")
    gv = np.concatenate([a.ravel() for a in g]) if g else np.zeros(0)
    wv = np.concatenate([b.ravel() for b in w]) if w else np.zeros(0)
    max_abs = float(np.max(np.abs(gv - wv))) if gv.size else 0.0
    scale = float(np.max(np.abs(wv))) if wv.size else 0.0
    denom = float(np.linalg.norm(gv) * np.linalg.norm(wv))
    cosine = float(gv @ wv / denom) if denom else 1.0
    return {"max_abs": max_abs, "max_rel": max_abs / scale if scale else max_abs, "cosine": cosine}


def measure_latency(variants: dict[str, Callable[[], Any]], repeats: int = 20, warmup: int = 3,
                    seed: int = 0) -> dict[str, dict[str, float]]:
    """Median and p90 milliseconds per variant; rounds run every variant once, in a shuffled order."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    rng = random.Random(seed)
    order = list(variants)
    for _ in range(repeats):
        rng.shuffle(order)
        for name in order:
            t = time.perf_counter()
            variants[name]()
            times[name].append((time.perf_counter() - t) * 1e3)
    return {k: {"median": statistics.median(v), "p90": float(np.percentile(v, 90))} for k, v in times.items()}


def build_report(model: Any, *, repeats: int = 20, measure: bool = True) -> Report:
    g, orig = model.graph, model.original or model.graph
    records = model.result.records if model.result is not None else []
    rep = Report(
        model=g.name, target=model.target, pipeline=model.pipeline,
        nodes_before=len(orig), nodes_after=len(g),
        weight_bytes_before=sum(c.const.nbytes for c in orig.constants.values()),
        weight_bytes_after=sum(c.const.nbytes for c in g.constants.values()),
        passes=[{"name": r.name, "changed": r.changed, "seconds": r.seconds, "nodes_before": r.nodes_before,
                 "nodes_after": r.nodes_after, "stats": dict(r.stats)} for r in records],
        timings=dict(model.timings),
        precision=getattr(model, "precision", "fp32"), layers=list(getattr(model, "layers", [])),
    )
    if not measure or not model.example_inputs:
        return rep
    xs = model.example_inputs
    if model.eager is not None:
        import torch

        targs = [torch.from_numpy(np.array(x)) for x in xs]
        names = [v.name for v in orig.inputs]
        kwargs = dict(zip(names, targs)) if _takes_kwargs(model.eager, names) else {}
        args = () if kwargs else tuple(targs)
        kwargs.update(model.eager_constants)  # the call's constants the trace specialized (need_weights=False)

        def eager() -> Any:
            with torch.inference_mode():
                return model.eager(*args, **kwargs)

        ref, rep.baseline = eager(), "eager"
        rep.fidelity = {**fidelity(model(*targs), ref), "reference": "eager PyTorch"}
        rep.latency_ms = measure_latency({"eager": eager, "compiled": lambda: model(*targs)}, repeats)
    else:
        from graphopt.backends import reference

        rep.fidelity = {**fidelity(model(*xs), reference.run(orig, xs)), "reference": "original graph (reference)"}
        rep.latency_ms = measure_latency({"compiled": lambda: model(*xs)}, repeats)
    return rep


def _takes_kwargs(module: Any, names: list[str]) -> bool:
    import inspect

    try:
        params = inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False
    return all(n in params for n in names)
