"""Compile, run, show, explain and benchmark models.

MODEL is a .onnx file, a .pt2 file, a .gir IR file, or `package.module:factory` where factory() returns
`(module, example_inputs[, example_kwargs[, dynamic_shapes]])`; with dynamic_shapes (torch.export Dims) the
compiled model keeps symbolic dims, and `--input-shape name=1x128` picks the sizes the report measures.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from graphopt.artifact import check_destination
from graphopt.errors import ModelLoadError
from graphopt.quantization import PRECISIONS

__all__ = ["add_commands"]


def _resolve(spec: str) -> tuple[Any, Any, Any, Any]:
    """(model, example_inputs, example_kwargs, dynamic_shapes) for a path or a `module:factory` spec."""
    if ":" in spec and not Path(spec).exists():
        mod_name, _, fn_name = spec.partition(":")
        sys.path.insert(0, str(Path.cwd()))
        try:
            fn = getattr(importlib.import_module(mod_name), fn_name)
        except (ImportError, AttributeError) as e:
            raise ModelLoadError(f"cannot load factory {spec!r}: {e}") from None
        out = fn()
        if not isinstance(out, tuple) or len(out) not in (2, 3, 4):
            raise ModelLoadError(f"{spec} must return (module, example_inputs[, example_kwargs[, dynamic_shapes]])")
        return (*out, *(None,) * (4 - len(out)))  # type: ignore[return-value]
    return spec, None, None, None


def _shapes(items: list[str]) -> dict[str, list[int]]:
    out = {}
    for item in items:
        name, _, dims = item.partition("=")
        try:
            out[name] = [int(d) for d in dims.lower().split("x")]
        except ValueError:
            raise ModelLoadError(f"--input-shape {item!r}: expected name=1x128") from None
    return out


def _examples_from_shapes(graph: Any, shapes: dict[str, list[int]]) -> list[np.ndarray] | None:
    from graphopt.backends.reference import random_inputs

    if not shapes:
        return None
    unknown = set(shapes) - {v.name for v in graph.inputs}
    if unknown:
        raise ModelLoadError(f"--input-shape names unknown input(s) {', '.join(sorted(unknown))}; inputs: "
                             f"{', '.join(v.name for v in graph.inputs)}")
    bindings: dict[str, int] = {}
    for v in graph.inputs:
        want = shapes.get(v.name)
        if want is None:
            continue
        if len(want) != v.type.rank or any(isinstance(d, int) and d != n for d, n in zip(v.type.shape, want)):
            raise ModelLoadError(f"--input-shape {v.name}={'x'.join(map(str, want))} does not fit {v.name}: "
                                 f"{v.type} (static dims come from tracing; a factory can return dynamic_shapes)")
        for d, n in zip(v.type.shape, want):
            if isinstance(d, str):
                bindings[d] = n
    return random_inputs(graph, bindings)


def _budget(text: str | None) -> float | None:
    """--budget cosine=0.99 (or a bare 0.99): the least cosine vs f32 the quantized model may reach."""
    if text is None:
        return 0.99
    key, _, value = text.rpartition("=")
    if key not in ("", "cosine"):
        raise ModelLoadError(f"--budget {text!r}: only cosine=VALUE is supported")
    try:
        return float(value)
    except ValueError:
        raise ModelLoadError(f"--budget {text!r}: expected cosine=0.99") from None


def _calibration(spec: str | None) -> Any:
    """--calibration FILE.npz (arrays by input name, one sample per leading index; no pickle) or module:function
    (returning an iterable of samples)."""
    if spec is None:
        return None
    if spec.endswith(".npz"):
        try:
            with np.load(spec, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"--calibration {spec}: cannot read ({e})") from None
    mod_name, _, fn_name = spec.partition(":")
    sys.path.insert(0, str(Path.cwd()))
    try:
        return getattr(importlib.import_module(mod_name), fn_name)()
    except (ImportError, AttributeError) as e:
        raise ModelLoadError(f"--calibration {spec!r}: {e}; expected FILE.npz or module:function") from None


def _quant_options(args: argparse.Namespace) -> dict[str, Any]:
    if getattr(args, "precision", "fp32") == "fp32":
        return {}
    return {"quantize": args.precision, "calibration": _calibration(args.calibration), "budget": _budget(args.budget)}


def _compile(args: argparse.Namespace) -> Any:
    from rich.console import Console

    import graphopt

    console = Console(stderr=True)
    with console.status(f"importing {args.model} and running {args.pipeline}..."):
        model, ex_args, ex_kwargs, dynamic = _resolve(args.model)
        compiled = graphopt.compile(model, ex_args, example_kwargs=ex_kwargs, dynamic_shapes=dynamic,
                                    pipeline=args.pipeline, target=args.target, **_quant_options(args))
        examples = _examples_from_shapes(compiled.original, _shapes(args.input_shape))
        if examples is not None:
            compiled.example_inputs = examples
    return compiled


def _cmd_compile(args: argparse.Namespace) -> int:
    from rich.console import Console

    out = Path(args.output)
    check_destination(out, overwrite=args.overwrite)  # before any work
    compiled = _compile(args)
    console = Console(stderr=True)
    with console.status("measuring fidelity and latency..."):
        report = compiled.report(repeats=args.repeats)
    print(report)
    out = compiled.save(args.output, overwrite=args.overwrite)
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    extra = ""
    if compiled.layers:
        from graphopt.quantization import plot_layers

        plot_layers(compiled.layers, str(out / "layers.png"), title=f"@{compiled.graph.name} {compiled.precision}")
        extra = ", layers.png"
    print(f"wrote {out}/ (manifest.json, model.gir, weights, report.json{extra}"
          + (", forward.py)" if compiled.source else ")"))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    import graphopt
    from graphopt.backends.reference import random_inputs

    compiled = graphopt.load(args.artifact, target=args.target)
    if args.inputs:
        with np.load(args.inputs, allow_pickle=False) as z:
            feed = {k: z[k] for k in z.files}
        outs = compiled.executable(**feed)
    else:
        xs = _examples_from_shapes(compiled.graph, _shapes(args.input_shape)) or random_inputs(
            compiled.graph, {s: 8 for v in compiled.graph.inputs for s in v.type.symbols})
        outs = compiled.executable(*xs)
    for v, o in zip(compiled.graph.outputs, outs):
        o = np.asarray(o)
        print(f"{v.name}: {o.dtype}{list(o.shape)} mean={float(o.astype(np.float64).mean()):.6g} "
              f"max|x|={float(np.abs(o.astype(np.float64)).max()) if o.size else 0:.6g}")
    if args.output:
        from graphopt.fileio import write_bytes_atomic
        import io

        buf = io.BytesIO()
        np.savez(buf, **{v.name: np.asarray(o) for v, o in zip(compiled.graph.outputs, outs)})  # names as printed
        write_bytes_atomic(args.output, buf.getvalue(), overwrite=args.overwrite)
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    import graphopt
    from graphopt.passes import PassManager

    model, ex_args, ex_kwargs, dynamic = _resolve(args.model)
    graph = graphopt.to_graph(model, ex_args, example_kwargs=ex_kwargs, dynamic_shapes=dynamic)
    if args.pipeline:
        PassManager.parse(args.pipeline).run(graph)
    if args.format == "text":
        print(graph.format())
    elif args.format == "dot":
        print(graph.to_dot())
    else:
        import subprocess

        try:
            svg = subprocess.run(["dot", "-Tsvg"], input=graph.to_dot(), capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            raise ModelLoadError(f"--format svg needs Graphviz's `dot` on PATH ({e}); use --format dot") from None
        print(svg.stdout)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from graphopt.bench import bench, write_outputs

    model, ex_args, ex_kwargs, dynamic = _resolve(args.model)
    if isinstance(model, (str, Path)):
        raise ModelLoadError("graphopt bench needs a package.module:factory model (eager PyTorch and torch.compile "
                             "are among the peers); for a file, use graphopt compile's report")
    split = lambda text: [t for t in text.split(",") if t]  # noqa: E731
    result = bench(model, ex_args or (), example_kwargs=ex_kwargs, dynamic_shapes=dynamic,
                   targets=split(args.targets), peers=split(args.peers), pipeline=args.pipeline, threads=args.threads,
                   repeats=args.repeats, ablate=args.ablate, name=args.name, precisions=split(args.precisions))
    print(result.markdown())
    if args.output:
        for path in write_outputs(result, args.output):
            print(f"wrote {path}")
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    import graphopt
    from graphopt.passes import PassContext, PassManager

    model, ex_args, ex_kwargs, dynamic = _resolve(args.model)
    graph = graphopt.to_graph(model, ex_args, example_kwargs=ex_kwargs, dynamic_shapes=dynamic)
    specs = PassManager.parse(args.pipeline).passes
    names = [s.name for s in specs]
    if args.pass_name not in names:
        raise ModelLoadError(f"pass {args.pass_name!r} is not in pipeline {args.pipeline!r} ({', '.join(names)})")
    upto = PassManager(specs[: names.index(args.pass_name) + 1])
    ctx = PassContext(explain=True)
    result = upto.run(graph, ctx)
    record = [r for r in result.records if r.name == args.pass_name][-1]
    print(f"{args.pass_name}: " + (", ".join(f"{k} {v}" for k, v in record.stats.items()) or "nothing matched"))
    mine = [r for r in ctx.rejections if r.pass_name == args.pass_name]
    for r in mine:
        print(f"  not applied at {r.node}: {r.reason}")
    for table, rows in record.tables.items():  # per-layer / per-group tables (quantize, prune-structured, low-rank)
        print(f"  {table}:")
        for row in rows:
            print("    " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    if not mine and not record.tables:
        print("  no candidate site was rejected")
    return 0


def add_commands(sub: Any) -> None:
    from .cli import add_load_pass

    c = sub.add_parser("compile", help="compile a model to a saved artifact and print the report",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("model", help=".onnx, .pt2, .gir, or package.module:factory")
    c.add_argument("-o", "--output", required=True, help="artifact folder to write")
    c.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    c.add_argument("-p", "--pipeline", default="O2", help="pass pipeline or preset (default O2)")
    c.add_argument("-t", "--target", default="cpu", help="cpu, onnxruntime or reference (default cpu)")
    c.add_argument("--input-shape", action="append", default=[], metavar="NAME=1x128",
                   help="shape of an input for the report's example inputs (binds symbolic dims)")
    c.add_argument("--repeats", type=int, default=20, help="latency repeats in the report (default 20)")
    c.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="quantize the layers the target runs faster in int8 (default fp32)")
    c.add_argument("--calibration", metavar="FILE.npz|module:fn",
                   help="inputs for the accuracy budget and smoothing (default: the example inputs)")
    c.add_argument("--budget", metavar="cosine=0.99", help="least cosine vs f32 on the calibration inputs")
    add_load_pass(c)
    c.set_defaults(fn=_cmd_compile)
    r = sub.add_parser("run", help="run a compiled artifact on inputs from an npz (or random ones)")
    r.add_argument("artifact", help="folder written by graphopt compile")
    r.add_argument("--inputs", help="npz with one array per graph input, by name (loaded without pickle)")
    r.add_argument("--input-shape", action="append", default=[], metavar="NAME=1x128")
    r.add_argument("--target", help="run on another target than the one compiled for")
    r.add_argument("-o", "--output", help="write the outputs to this npz")
    r.add_argument("--overwrite", action="store_true")
    r.set_defaults(fn=_cmd_run)
    b = sub.add_parser("bench", help="time graphopt's targets against eager, torch.compile and ONNX Runtime",
                       description="Every variant in one process, interleaved shuffled rounds after warm-up; "
                                   "median/p90 latency, speedup, compile time, size, fidelity, GFLOP/s vs the best "
                                   "GEMM measured in the same run; --ablate removes one pass at a time.")
    b.add_argument("model", help="package.module:factory returning (module, example_inputs[, kwargs[, dynamic]])")
    b.add_argument("--targets", default="cpu,onnxruntime", help="graphopt targets (default cpu,onnxruntime)")
    b.add_argument("--peers", default="eager,torch.compile,onnxruntime",
                   help="baselines (default eager,torch.compile,onnxruntime; also onnxruntime-int8, torch-int8, "
                        "openvino: OpenVINO f32 and, where it differs, its default precision for this CPU)")
    b.add_argument("-p", "--pipeline", default="O3", help="pipeline for graphopt's variants (default O3)")
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--repeats", type=int, default=50, help="timed rounds (default 50)")
    b.add_argument("--ablate", action="store_true", help="also time the pipeline with each pass removed")
    b.add_argument("--precisions", default="", metavar="int8-dynamic,bf16",
                   help="also time graphopt-cpu in these precisions (peers: add onnxruntime-int8,torch-int8)")
    b.add_argument("--name", help="model name in the tables")
    b.add_argument("-o", "--output", help="folder for result.json, result.md and result.png")
    add_load_pass(b)
    b.set_defaults(fn=_cmd_bench)
    e = sub.add_parser("explain", help="run a pipeline up to a pass and say where it applied and why not elsewhere")
    e.add_argument("model", help=".onnx, .pt2, .gir, or package.module:factory")
    e.add_argument("--pass", dest="pass_name", required=True, help="the pass to explain, e.g. fuse-attention")
    e.add_argument("-p", "--pipeline", default="O3", help="the pipeline the pass runs in (default O3)")
    add_load_pass(e)
    e.set_defaults(fn=_cmd_explain)
    s = sub.add_parser("show", help="print a model's IR (optionally after a pipeline) as text, DOT or SVG")
    s.add_argument("model", help=".onnx, .pt2, .gir, or package.module:factory")
    s.add_argument("-p", "--pipeline", default="", help="run this pipeline first")
    s.add_argument("--format", choices=("text", "dot", "svg"), default="text")
    add_load_pass(s)
    s.set_defaults(fn=_cmd_show)
