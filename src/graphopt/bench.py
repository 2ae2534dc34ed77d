"""`graphopt bench`: graphopt's targets against eager PyTorch, torch.compile and ONNX Runtime, measured honestly.

Every variant runs in the same process, after warm-up, in rounds that visit the variants in a shuffled order with a
pause between them (ONNX Runtime's pool threads otherwise keep spinning and steal the cores of whatever runs next).
Reported per variant: median and p90 latency, speedup over eager, compile time, model size, fidelity against eager
(max abs error, cosine), and achieved GFLOP/s next to the best GEMM throughput measured in the same run. With
`ablate=True`, each pass of the pipeline is removed in turn and the latency it bought is reported.

>>> import torch, graphopt
>>> from graphopt.bench import bench
>>> model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.GELU())
>>> result = bench(model, (torch.randn(8, 64),), peers=("eager",), targets=("cpu",), repeats=3, progress=False)
>>> sorted(v.name for v in result.variants)
['eager', 'graphopt-cpu']
"""

from __future__ import annotations

import json
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from graphopt.quantization import precision_name

__all__ = ["bench", "BenchResult", "Variant"]


@dataclass
class Variant:
    """One way of running the model, with what it cost to build and how it did."""

    name: str
    kind: str  # "peer" or "graphopt" or "ablation"
    run: Callable[[], Any] = field(repr=False)
    compile_s: float = 0.0
    size_bytes: int = 0
    note: str = ""
    times_ms: list[float] = field(default_factory=list, repr=False)
    fidelity: dict[str, float] = field(default_factory=dict)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms) if self.times_ms else float("nan")

    @property
    def p90_ms(self) -> float:
        return float(np.percentile(self.times_ms, 90)) if self.times_ms else float("nan")


@dataclass
class BenchResult:
    model: str
    threads: int
    repeats: int
    pipeline: str
    flops: int
    gemm_gflops: dict[str, float]
    variants: list[Variant]
    skipped: dict[str, str] = field(default_factory=dict)  # variant → why it could not be built
    machine: str = field(default_factory=lambda: f"{platform.machine()} {platform.processor() or ''}".strip())

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)

    def rows(self) -> list[dict[str, Any]]:
        eager = next((v for v in self.variants if v.name == "eager"), None)
        best_gemm = max(self.gemm_gflops.values(), default=0.0)
        out = []
        for v in self.variants:
            gflops = self.flops / (v.median_ms * 1e6) if v.times_ms and self.flops else 0.0
            out.append({
                "variant": v.name, "kind": v.kind, "median_ms": round(v.median_ms, 3), "p90_ms": round(v.p90_ms, 3),
                "speedup_vs_eager": round(eager.median_ms / v.median_ms, 3) if eager and v.times_ms else None,
                "compile_s": round(v.compile_s, 2), "size_mb": round(v.size_bytes / 1e6, 2),
                "gflops": round(gflops, 1), "roofline": round(gflops / best_gemm, 3) if best_gemm else None,
                "max_abs_err": v.fidelity.get("max_abs"), "cosine": v.fidelity.get("cosine"), "note": v.note,
            })
        return out

    def to_json(self) -> str:
        meta = {k: v for k, v in asdict(self).items() if k != "variants"}
        return json.dumps({**meta, "rows": self.rows()}, indent=2, default=str) + "\n"

    def markdown(self) -> str:
        best = max(self.gemm_gflops.items(), key=lambda kv: kv[1], default=("none", 0.0))
        lines = [f"**{self.model}** — {self.threads} threads, median of {self.repeats} interleaved rounds, "
                 f"{self.flops / 1e9:.2f} GFLOP per run; best GEMM in this run: {best[1]:.0f} GFLOP/s ({best[0]}).",
                 "",
                 "| variant | median ms | p90 ms | vs eager | compile s | size MB | GFLOP/s | of best GEMM | max abs err "
                 "| cosine |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in self.rows():
            err = "" if r["max_abs_err"] is None else f"{r['max_abs_err']:.2e}"
            cos = "" if r["cosine"] is None else f"{r['cosine']:.7f}"
            sp = "" if r["speedup_vs_eager"] is None else f"{r['speedup_vs_eager']:.2f}x"
            roof = "" if r["roofline"] is None else f"{100 * r['roofline']:.0f}%"
            name = r["variant"] + (f" ({r['note']})" if r["note"] else "")
            lines.append(f"| {name} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | {sp} | {r['compile_s']:.1f} | "
                         f"{r['size_mb']:.1f} | {r['gflops']:.1f} | {roof} | {err} | {cos} |")
        lines += [f"\nNot run: **{name}** — {why}" for name, why in self.skipped.items()]
        return "\n".join(lines) + "\n"

    def plot(self, path: str | Path) -> Path | None:
        """A bar chart of median latency per variant (None when matplotlib is not installed)."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return None
        rows = [r for r in self.rows() if r["kind"] != "ablation"]
        fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(rows)))
        colors = ["#4c72b0" if r["kind"] == "graphopt" else "#999999" for r in rows]
        ax.barh([r["variant"] for r in rows], [r["median_ms"] for r in rows], color=colors)
        ax.invert_yaxis()
        ax.set_xlabel("median latency, ms (lower is better)")
        ax.set_title(f"{self.model}: {self.threads} threads")
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def _onnx_peer(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any], graph: Any, threads: int, *,
               own_export: bool = False) -> Variant:
    """ONNX Runtime with its own optimizations on an unoptimized export: torch.onnx's (the baseline users have),
    or with `own_export` graphopt's O0 export — a separate, labelled variant, never a silent substitute."""
    t0 = time.perf_counter()
    if own_export:
        from graphopt.backends.onnx_export import to_onnx

        proto, label, note = to_onnx(graph), "onnxruntime (graphopt O0 export)", "graphopt O0 export"
    else:
        import torch

        proto = torch.onnx.export(model, args, kwargs=kwargs or None, dynamo=True, verbose=False).model_proto
        label, note = "onnxruntime", "torch.onnx export"
    data = proto.SerializeToString()
    from graphopt.backends.onnxruntime import session

    sess = session(data, threads=threads)
    feeds = _feeds([i.name for i in sess.get_inputs()], args, kwargs)
    return Variant(label, "peer", lambda: sess.run(None, feeds), time.perf_counter() - t0, len(data), note)


def _feeds(names: list[str], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, np.ndarray]:
    """A runtime's inputs as arrays: keyword inputs by name, the rest in order."""
    positional = iter(args)
    feeds = {}
    for name in names:
        v = kwargs[name] if name in kwargs else next(positional)
        feeds[name] = np.asarray(v.detach().numpy() if hasattr(v, "detach") else v)
    return feeds


def _onnx_int8_peer(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any], threads: int) -> Variant:
    """ONNX Runtime's own int8 path, as its docs tell users to reach it: `quantize_dynamic` (per-tensor int8
    weights, QOperator format) on the torch.onnx export."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from graphopt.backends.onnxruntime import session

    t0 = time.perf_counter()
    proto = torch.onnx.export(model, args, kwargs=kwargs or None, dynamo=True, verbose=False).model_proto
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(proto.SerializeToString())
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
        data = dst.read_bytes()
    sess = session(data, threads=threads)
    feeds = _feeds([i.name for i in sess.get_inputs()], args, kwargs)
    return Variant("onnxruntime int8-dynamic", "peer", lambda: sess.run(None, feeds), time.perf_counter() - t0,
                   len(data), "quantize_dynamic")


def _torch_int8_peer(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Variant:
    """torch's dynamic int8 (`torch.ao.quantization.quantize_dynamic` on every nn.Linear, fbgemm)."""
    import copy
    import warnings

    import torch

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
    size = sum(t.numel() * t.element_size() for t in q.state_dict().values() if isinstance(t, torch.Tensor))
    return Variant("torch int8-dynamic", "peer", lambda: q(*args, **kwargs), time.perf_counter() - t0, size,
                   "quantize_dynamic")


def _openvino_peer(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any], threads: int, precision: str | None
                   ) -> Variant:
    """OpenVINO on the torch.onnx export, latency hint, `threads` threads. `precision` None is OpenVINO's default
    for this CPU (bf16 where the CPU has avx512_bf16 or AMX, else f32: the label says which); "f32" forces f32."""
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints
    import torch

    t0 = time.perf_counter()
    proto = torch.onnx.export(model, args, kwargs=kwargs or None, dynamo=True, verbose=False).model_proto
    core = ov.Core()
    config: dict[str, Any] = {props.inference_num_threads(): threads,
                              hints.performance_mode(): hints.PerformanceMode.LATENCY}
    if precision == "f32":
        config[hints.inference_precision()] = ov.Type.f32
    with tempfile.TemporaryDirectory() as tmp:  # read_model takes a path; external data would sit beside it
        path = Path(tmp) / "model.onnx"
        path.write_bytes(proto.SerializeToString())
        compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    used = str(compiled.get_property(hints.inference_precision())).replace("<Type: '", "").rstrip("'>")
    used = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(used, used)
    request = compiled.create_infer_request()
    feeds = _feeds([port.get_any_name() for port in compiled.inputs], args, kwargs)
    label = "openvino f32" if precision == "f32" else f"openvino default ({used})"
    return Variant(label, "peer", lambda: request.infer(feeds), time.perf_counter() - t0, proto.ByteSize(),
                   f"torch.onnx export, inference precision {used}")


def _gemm_roofline() -> dict[str, float]:
    """GFLOP/s of a 128x768 @ 768x3072 GEMM through F.linear and packed oneDNN (the best CPU paths here)."""
    import torch
    import torch.nn.functional as F

    from graphopt.backends.cpu.kernels import pack_linear_weight

    m, k, n = 128, 768, 3072
    x, w, b = torch.randn(m, k), torch.randn(n, k), torch.randn(n)
    paths: dict[str, Callable[[], Any]] = {"F.linear": lambda: F.linear(x, w, b)}
    try:
        packed = pack_linear_weight(w)  # packed as the cpu target packs it
        paths["oneDNN packed"] = lambda: torch.ops.mkldnn._linear_pointwise(x, packed, b, "none", [], "")
    except RuntimeError:
        pass
    out = {}
    with torch.inference_mode():
        for name, fn in paths.items():
            for _ in range(3):
                fn()
            times = []
            for _ in range(15):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            out[name] = 2 * m * k * n / statistics.median(times) / 1e9
    return out


def bench(model: Any, example_inputs: Sequence[Any] = (), *, example_kwargs: Mapping[str, Any] | None = None,
          dynamic_shapes: Any = None, targets: Sequence[str] = ("cpu", "onnxruntime"),
          peers: Sequence[str] = ("eager", "torch.compile", "onnxruntime"), pipeline: str = "O3", threads: int = 2,
          repeats: int = 50, warmup: int = 3, ablate: bool = False, pause_s: float = 0.05, progress: bool = True,
          name: str | None = None, precisions: Sequence[str] = (), calibration: Any = None,
          budget: float = 0.99) -> BenchResult:
    """Compile and time every variant of `model` on the example inputs; see the module docstring.

    `precisions` ("int8-dynamic", ...) adds a graphopt-cpu variant per precision (and a graphopt-onnxruntime one
    per int8 precision when "onnxruntime" is among the targets), quantized with the accuracy
    `budget` (least cosine vs f32) on `calibration` (default: the example inputs); the peers "onnxruntime-int8" and "torch-int8" are
    ONNX Runtime's and torch's dynamic int8 as their docs give them; "openvino" is OpenVINO in f32 and, where it
    differs on this CPU, in its default precision (bf16 on CPUs with bf16 units)."""
    import torch

    import graphopt
    from graphopt.passes import PassManager
    from graphopt.passes.analysis import cost
    from graphopt.report import fidelity

    torch.set_num_threads(threads)
    args, kwargs = tuple(example_inputs), dict(example_kwargs or {})
    model.eval()
    variants: list[Variant] = []
    graph0 = graphopt.to_graph(model, args, example_kwargs=kwargs, dynamic_shapes=dynamic_shapes)
    inputs = list(args) + [kwargs[v.name] for v in graph0.inputs[len(args):] if v.name in kwargs]
    bindings = {d: int(x.shape[i]) for v, x in zip(graph0.inputs, inputs) for i, d in enumerate(v.type.shape)
                if isinstance(d, str)}
    flops = cost(PassManager.parse("infer-shapes").run(graph0.copy()).graph, bindings).flops

    def step(what: str) -> None:
        if progress:
            from rich.console import Console

            Console(stderr=True).log(what)

    with torch.inference_mode():
        if "eager" in peers:
            variants.append(Variant("eager", "peer", lambda: model(*args, **kwargs), 0.0,
                                    sum(p.numel() * p.element_size() for p in model.parameters())))
        if "torch.compile" in peers:
            step("torch.compile (first call compiles)")
            t0 = time.perf_counter()
            compiled_tc = torch.compile(model)
            compiled_tc(*args, **kwargs)
            variants.append(Variant("torch.compile", "peer", lambda: compiled_tc(*args, **kwargs),
                                    time.perf_counter() - t0, variants[0].size_bytes if variants else 0))
    skipped: dict[str, str] = {}

    def attempt(label: str, build: Callable[[], Variant]) -> None:
        # One variant that cannot be built (an op a target lacks) must not cost the others their numbers.
        try:
            variants.append(build())
        except Exception as e:  # noqa: BLE001 - recorded with its reason and shown in the table
            skipped[label] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            step(f"{label}: not run ({skipped[label]})")

    if "onnxruntime" in peers:
        step("exporting to ONNX for ONNX Runtime")
        attempt("onnxruntime", lambda: _onnx_peer(model, args, kwargs, graph0, threads))
        if "onnxruntime" in skipped:  # torch.onnx could not export it: say so, and time ORT on our export instead
            attempt("onnxruntime (graphopt O0 export)",
                    lambda: _onnx_peer(model, args, kwargs, graph0, threads, own_export=True))

    if "onnxruntime-int8" in peers:
        step("ONNX Runtime quantize_dynamic")
        attempt("onnxruntime int8-dynamic", lambda: _onnx_int8_peer(model, args, kwargs, threads))
    if "torch-int8" in peers:
        attempt("torch int8-dynamic", lambda: _torch_int8_peer(model, args, kwargs))
    if "openvino" in peers:
        step("OpenVINO on the torch.onnx export")
        attempt("openvino f32", lambda: _openvino_peer(model, args, kwargs, threads, "f32"))
        attempt("openvino default", lambda: _openvino_peer(model, args, kwargs, threads, None))
        if ("openvino f32" not in skipped and "openvino default" not in skipped
                and variants[-1].name == "openvino default (f32)"):
            variants.pop()  # the default is f32 on this CPU: the same model twice would only add noise

    example_arrays = [np.asarray(x.detach().numpy() if hasattr(x, "detach") else x) for x in inputs]

    def graphopt_variant(label: str, kind: str, pipe: str, target: str, precision: str | None = None) -> Variant:
        t0 = time.perf_counter()
        cm = graphopt.compile(graph0.copy(), pipeline=pipe, target=target, quantize=precision, budget=budget,
                              calibration=calibration if calibration is not None else [example_arrays])
        call_args = list(args) + [kwargs[v.name] for v in cm.graph.inputs[len(args):] if v.name in kwargs]
        kept = sum(r["precision"] == "fp32" for r in cm.layers)
        low = precision_name(precision) if precision else ""  # `kind` stays the variant's: "graphopt"
        note = f"{len(cm.layers) - kept} {low} / {kept} f32 layers" if precision else ""
        return Variant(label, kind, lambda: cm(*call_args), time.perf_counter() - t0,
                       sum(c.const.nbytes for c in cm.graph.constants.values()), note)

    for target in targets:
        step(f"graphopt {pipeline} → {target}")
        attempt(f"graphopt-{target}", lambda t=target: graphopt_variant(f"graphopt-{t}", "graphopt", pipeline, t))
    for precision in precisions:
        # the onnxruntime target too for int8 (its integer ops and ONNX Runtime's fused int8 GEMM); ONNX Runtime's
        # CPU provider has no bf16 GEMM, so bf16 there would only measure casts
        for target in ["cpu"] + (["onnxruntime"] if "onnxruntime" in targets and precision.startswith("int8") else []):
            step(f"graphopt {pipeline} → {target}, {precision}")
            attempt(f"graphopt-{target} {precision}", lambda p=precision, t=target: graphopt_variant(
                f"graphopt-{t} {p}", "graphopt", pipeline, t, p))
    if ablate and targets:
        specs = [str(s) for s in PassManager.parse(pipeline).passes]
        for spec in dict.fromkeys(specs):
            rest = ",".join(s for s in specs if s != spec)
            step(f"ablation: {pipeline} without {spec}")
            attempt(f"without {spec}", lambda s=spec, r=rest: graphopt_variant(f"without {s}", "ablation", r, targets[0]))

    with torch.inference_mode():
        ref = variants[0].run() if variants and variants[0].name == "eager" else None
        for v in variants:
            if ref is not None:
                try:
                    v.fidelity = fidelity(v.run(), ref)
                except ValueError as e:
                    v.note = (v.note + "; " if v.note else "") + f"fidelity n/a: {e}"
        step(f"timing {len(variants)} variants, {repeats} rounds")
        for v in variants:
            for _ in range(warmup):
                v.run()
        order = list(range(len(variants)))
        rng = random.Random(0)
        for _ in range(repeats):
            rng.shuffle(order)
            for i in order:
                # After the pause the thread pools are parked, and waking them (up to ~10 ms on a VM) is not the
                # model's latency: one untimed call first, so every variant is timed warm.
                variants[i].run()
                t = time.perf_counter()
                variants[i].run()
                variants[i].times_ms.append((time.perf_counter() - t) * 1e3)
                time.sleep(pause_s)  # let ONNX Runtime's pool threads park before the next variant
    return BenchResult(name or graph0.name, threads, repeats, pipeline, flops, _gemm_roofline(), variants,
                       skipped)


def write_outputs(result: BenchResult, folder: str | Path) -> list[Path]:
    """result.json, result.md and result.png (when matplotlib is there) in `folder`, written atomically."""
    from graphopt.fileio import write_text_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [write_text_atomic(folder / "result.json", result.to_json(), overwrite=True),
             write_text_atomic(folder / "result.md", result.markdown(), overwrite=True)]
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        png = result.plot(Path(tmp) / "result.png")
        if png is not None:
            target = folder / "result.png"
            png.replace(target)
            paths.append(target)
    return paths
