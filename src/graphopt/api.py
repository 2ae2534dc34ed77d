"""`graphopt.compile`: any model in, a callable compiled model out (with `.save`, `.report()`, `.source`).

>>> import torch, graphopt
>>> model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.GELU())
>>> compiled = graphopt.compile(model, (torch.randn(2, 8),), pipeline="O2", target="cpu")
>>> y = compiled(torch.randn(2, 8))
>>> tuple(y.shape), compiled.target
((2, 4), 'cpu')
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from graphopt.backends import check_coverage, get_backend
from graphopt.errors import ModelLoadError, ShapeInputsNeeded
from graphopt.ir import Graph
from graphopt.passes.manager import PipelineResult

__all__ = ["compile", "CompiledModel", "load_model", "read_gir", "to_graph"]


def to_graph(model: Any, example_inputs: Sequence[Any] | None = None, *, example_kwargs: Mapping[str, Any] | None = None,
             dynamic_shapes: Any = None, constants: Mapping[str, Any] | None = None) -> Graph:
    """Import anything graphopt accepts: nn.Module, ExportedProgram, .onnx/.pt2/.gir path, ModelProto, Graph.

    `example_inputs` may be a tuple, one tensor, or a dict of keyword inputs (how Hugging Face models are called),
    as `torch.onnx.export` takes them."""
    example_inputs, example_kwargs = _calling_convention(example_inputs, example_kwargs)
    if isinstance(model, Graph):
        return model
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if path.suffix == ".onnx":
            from graphopt.frontends.onnx import import_onnx

            return import_onnx(path, constants=constants)
        if path.suffix in (".pt2", ".pt"):
            from graphopt.frontends import load_pt2

            return load_pt2(path)
        if path.suffix == ".gir":
            return read_gir(path)
        raise ModelLoadError(f"{path}: unknown model format {path.suffix!r} (expected .onnx, .pt2 or .gir)")
    if type(model).__name__ == "ModelProto":
        from graphopt.frontends.onnx import import_onnx

        return import_onnx(model, constants=constants)
    if type(model).__name__ == "ExportedProgram":
        from graphopt.frontends.torch_export import decompose, import_exported_program

        return import_exported_program(decompose(model), dynamic_shapes=dynamic_shapes)
    if hasattr(model, "forward") and hasattr(model, "eval"):
        from graphopt.frontends import import_torch

        if example_inputs is None and not example_kwargs:
            raise TypeError("compiling an nn.Module needs example_inputs (and/or example_kwargs) to trace it")
        return import_torch(model, example_inputs or (), example_kwargs, dynamic_shapes)
    raise TypeError(f"cannot compile a {type(model).__name__}; pass an nn.Module, ExportedProgram, .onnx/.pt2 "
                    "path, onnx.ModelProto or graphopt Graph")


def read_gir(path: str | os.PathLike[str], weights: str | os.PathLike[str] | None = None) -> Graph:
    """An IR text file; constants printed as `external` are read from `weights` (default: the .npz beside it,
    `model.gir` → `model.npz`), with allow_pickle=False."""
    from graphopt.ir import parse

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ModelLoadError(f"{path}: not IR text (not UTF-8); for .onnx/.pt2 files name them by their "
                             "extension") from None
    npz = Path(weights) if weights is not None else path.with_suffix(".npz")
    constants: dict[str, np.ndarray] = {}
    if npz.is_file():
        try:
            with np.load(npz, allow_pickle=False) as data:
                constants = {k: data[k] for k in data.files}
        except (ValueError, OSError) as e:
            raise ModelLoadError(f"{npz}: cannot read the weights ({e})") from None
    elif weights is not None:
        raise ModelLoadError(f"{npz}: no such weights file")
    return parse(text, constants)


def _calling_convention(args: Any, kwargs: Mapping[str, Any] | None) -> tuple[Any, Mapping[str, Any] | None]:
    """(args, kwargs) from what users pass: a dict is keyword inputs, a lone tensor or array is one input."""
    if isinstance(args, Mapping):
        overlap = set(args) & set(kwargs or {})
        if overlap:
            raise TypeError(f"input(s) {', '.join(sorted(overlap))} given both in example_inputs and example_kwargs")
        return (), {**args, **(kwargs or {})}
    if hasattr(args, "shape") and hasattr(args, "dtype"):  # a torch tensor or numpy array, not a tuple of them
        return (args,), kwargs
    return args, kwargs


def compile(  # noqa: A001 - the public name users expect, as torch.compile
    model: Any,
    example_inputs: Sequence[Any] | None = None,
    *,
    example_kwargs: Mapping[str, Any] | None = None,
    dynamic_shapes: Any = None,
    pipeline: str = "O2",
    target: str = "cpu",
    quantize: str | None = None,
    calibration: Any = None,
    budget: float | None = 0.99,
    smooth: float = 0.5,
    kernel_choice: str = "measure",
    constants: Mapping[str, Any] | None = None,
) -> CompiledModel:
    """Import `model`, run `pipeline` over it, and compile it for `target` (cpu, onnxruntime, reference).

    `quantize` ("int8-dynamic", "int8-static", "int8-weight-only", "int4-weight-only", "bf16") then quantizes the
    layers the target runs faster in that precision, keeping in f32 the most sensitive ones until the outputs'
    cosine against f32 on the `calibration` inputs (an iterable of samples, or a CalibrationTable from
    `graphopt.calibrate`; default: the example inputs) is at least `budget` (None or 0: no search). `smooth` is SmoothQuant's migration strength (0: off).
    `kernel_choice="always"` quantizes every eligible layer even where the target measures it slower (accuracy
    studies; the cpu target then runs such layers' int8 semantics in f32 ops); the default "measure" keeps them f32.
    Pruning passes in `pipeline` that rank by taylor or activation importance read `calibration` too.
    `constants` fixes ONNX graph inputs to values (shape-like inputs: a Reshape target, Resize scales). Without
    it, an ONNX model whose shape arguments come from its inputs is returned as a `SpecializingModel` that
    compiles once per distinct value of those inputs when called (see graphopt.specialize).
    """
    if kernel_choice not in ("measure", "always"):
        raise ValueError(f"kernel_choice must be 'measure' or 'always', got {kernel_choice!r}")
    import time

    t0 = time.perf_counter()
    example_inputs, example_kwargs = _calling_convention(example_inputs, example_kwargs)
    try:
        original = to_graph(model, example_inputs, example_kwargs=example_kwargs, dynamic_shapes=dynamic_shapes,
                            constants=constants)
    except ShapeInputsNeeded as e:
        if constants is not None or not _is_onnx(model):
            raise
        from graphopt.specialize import SpecializingModel

        options = dict(pipeline=pipeline, target=target, quantize=quantize, calibration=calibration, budget=budget,
                       smooth=smooth, kernel_choice=kernel_choice)
        return SpecializingModel(e.inputs, _onnx_input_names(model),  # type: ignore[return-value]
                                 lambda values: compile(model, constants=values, **options))  # type: ignore[arg-type]
    t1 = time.perf_counter()
    backend = get_backend(target)
    graph = original.copy()
    result = _run_pipeline(graph, pipeline, calibration, lambda: [_examples(original, example_inputs, example_kwargs)])
    layers: list[dict[str, Any]] = []
    if quantize is not None and quantize != "fp32":
        result, layers = _quantize(result, quantize, calibration, budget, smooth, target, original,
                                   example_inputs, example_kwargs, measure=kernel_choice == "measure")
    check_coverage(result.graph, backend)
    t2 = time.perf_counter()
    exe = backend.compile(result.graph)
    t3 = time.perf_counter()
    # drawn only when a report asks: a model declared with huge inputs must not allocate them at compile time
    examples = lambda: _examples(original, example_inputs, example_kwargs)  # noqa: E731
    eager = model if hasattr(model, "forward") and hasattr(model, "eval") else None
    compiled = CompiledModel(result.graph, exe, target=target, pipeline=pipeline, result=result, original=original,
                             eager=eager, example_inputs=examples, eager_constants=_constants(example_kwargs),
                             timings={"import_s": t1 - t0, "passes_s": t2 - t1, "codegen_s": t3 - t2})
    compiled.layers = layers  # per quantizable layer: precision (int8, bf16 or fp32), why, errors
    compiled.precision = quantize or "fp32"
    return compiled


def _run_pipeline(graph: Graph, pipeline: str, calibration: Any, examples: Any) -> PipelineResult:
    """The pipeline over `graph`; pruning passes ranking by taylor or activation importance get their saliency
    from `calibration` (an iterable of samples; default: the example inputs)."""
    from graphopt.compression import needs_data, prune
    from graphopt.passes.calibration import CalibrationTable

    data = None
    if needs_data(pipeline):  # a CalibrationTable holds ranges, not inputs: importance needs the samples themselves
        data = calibration if calibration is not None and not isinstance(calibration, CalibrationTable) else examples()
    return prune(graph, pipeline, data=data)  # with the cpu target's GemmTimer, for low-rank{measure=true}


def _is_onnx(model: Any) -> bool:
    return type(model).__name__ == "ModelProto" or (isinstance(model, (str, os.PathLike))
                                                      and Path(model).suffix == ".onnx")


def _onnx_input_names(model: Any) -> list[str]:
    """The graph inputs of an ONNX path or ModelProto, by the file's names."""
    from graphopt.frontends.onnx.loading import graph_input_names, load_proto

    return graph_input_names(model if type(model).__name__ == "ModelProto" else load_proto(model)[0])


def _quantize(result: PipelineResult, mode: str, calibration: Any, budget: float | None, smooth: float, target: str,
              original: Graph, args: Any, kwargs: Any, *, measure: bool = True
              ) -> tuple[PipelineResult, list[dict[str, Any]]]:
    """Quantize the optimized graph: measured per-layer choice, then the budget search (graphopt.quantization)."""
    from graphopt import quantization as q

    graph = result.graph
    advice = q.cpu_advice() if target == "cpu" and measure else None
    # 7-bit activations only where full-range ones would overflow this CPU's int8 GEMM (no VNNI): measured
    reduce_range = True
    if target == "onnxruntime":  # full range (and ORT's one-node int8 GEMM) where ORT computes it exactly here
        from graphopt.backends.onnxruntime import int8_saturates as ort_int8_saturates

        reduce_range = ort_int8_saturates()
    if target == "cpu":
        from graphopt.backends.cpu.kernels import int8_conv_saturates, int8_saturates

        reduce_range = int8_saturates() or (mode == "int8-static" and int8_conv_saturates())
    samples = q.samples_for(graph, calibration) if calibration is not None else [_examples(original, args, kwargs)]
    table = q.calibrate(graph, samples) if smooth or mode == "int8-static" else None
    keep: list[str] = []
    rows: list[dict[str, Any]] = []
    f32_graph = graph.copy() if measure and target == "cpu" else None  # the fallback if int8 is slower overall
    if budget:
        keep, rows, _ = q.choose_float_layers(graph, samples, mode, budget, advice=advice, table=table, smooth=smooth,
                                              reduce_range=reduce_range)
    quantized = q.quantize_graph(graph, mode, skip=keep, advice=advice, table=table, smooth=smooth,
                                 reduce_range=reduce_range)
    layers, kept = q.layer_rows(quantized)
    if f32_graph is not None and layers:
        slower = q.slower_than_f32(graph, f32_graph, samples[0])
        if slower is not None:  # per-layer wins did not add up (tiny models: the extra ops cost more)
            rows_all = [{**r, "precision": "fp32", "reason": slower} for r in layers + kept]
            return PipelineResult(f32_graph, [*result.records, *quantized.records]), rows_all
    by_layer = {r["layer"]: r for r in rows}
    low = q.precision_name(mode)
    out = [{**by_layer.get(r["layer"], {}), **r, "precision": r.get("precision", low)} for r in layers]
    for r in kept:
        reason = r["reason"]
        if r["layer"] in keep:
            reason = (f"kept f32 for the budget: the model's cosine with only this layer in {low} is "
                      f"{by_layer[r['layer']]['output_cosine']:.6f}, among the lowest")
        out.append({**by_layer.get(r["layer"], {}), "layer": r["layer"], "precision": "fp32", "reason": reason})
    return PipelineResult(graph, [*result.records, *quantized.records]), out


def _examples(graph: Graph, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None) -> list[np.ndarray]:
    """Example inputs in graph-input order as numpy arrays; random ones when none were given."""
    from graphopt.backends.reference import random_inputs

    given = list(args or ())
    if kwargs:
        given += [kwargs[v.name] for v in graph.inputs[len(given):] if v.name in kwargs]
    if len(given) == len(graph.inputs):
        return [np.asarray(a.detach().cpu().numpy() if hasattr(a, "detach") else a) for a in given]
    return random_inputs(graph, {s: 8 for v in graph.inputs for s in v.type.symbols})


def _constants(kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The keyword arguments that are not tensors: torch.export specializes them, and eager must get them too."""
    return {k: v for k, v in (kwargs or {}).items() if not hasattr(v, "shape")}


class CompiledModel:
    """A compiled graph plus what is needed to explain it: the pipeline records, the original graph, timings."""

    def __init__(self, graph: Graph, executable: Any, *, target: str, pipeline: str,
                 result: PipelineResult | None = None, original: Graph | None = None, eager: Any = None,
                 example_inputs: list[np.ndarray] | Callable[[], list[np.ndarray]] | None = None,
                 timings: dict[str, float] | None = None, eager_constants: Mapping[str, Any] | None = None) -> None:
        self.graph = graph
        self.executable = executable
        self.target = target
        self.pipeline = pipeline
        self.result = result
        self.original = original
        self.eager = eager
        self._examples = example_inputs if example_inputs is not None else []
        self.eager_constants = dict(eager_constants or {})  # non-tensor keyword arguments of the traced call
        self.timings = timings or {}
        self.precision = "fp32"
        self.layers: list[dict[str, Any]] = []  # per quantizable layer: precision, why, weight and output error

    @property
    def example_inputs(self) -> list[np.ndarray]:
        """The inputs the report measures on (the ones traced with, else random ones drawn on first use)."""
        if callable(self._examples):
            self._examples = self._examples()
        return self._examples

    @example_inputs.setter
    def example_inputs(self, value: list[np.ndarray]) -> None:
        self._examples = value

    @property
    def source(self) -> str | None:
        """The generated code (cpu target), else None."""
        return getattr(self.executable, "source", None)

    @property
    def input_names(self) -> list[str]:
        return [v.name for v in self.graph.inputs]

    def __call__(self, *inputs: Any, **named: Any) -> Any:
        """Torch tensors in give tensors out, numpy arrays give arrays; one output is returned bare. A single dict
        argument is taken as inputs by name (`compiled(tokenizer(...))`)."""
        if len(inputs) == 1 and isinstance(inputs[0], Mapping) and not named:
            inputs, named = (), dict(inputs[0])
        outs = self.executable(*inputs, **named)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the artifact folder atomically (see graphopt.artifact)."""
        from graphopt.artifact import save

        return save(self, Path(path), overwrite=overwrite)

    def report(self, *, repeats: int = 20, measure: bool = True) -> Any:
        """Per-pass statistics, model size, fidelity vs the original and latency vs the baseline."""
        from graphopt.report import build_report

        return build_report(self, repeats=repeats, measure=measure)

    def __repr__(self) -> str:
        return (f"CompiledModel(@{self.graph.name}, target={self.target!r}, pipeline={self.pipeline!r}, "
                f"{len(self.graph)} nodes)")


def load_model(path: str | os.PathLike[str], *, target: str | None = None) -> CompiledModel:
    """Load a folder written by `CompiledModel.save` (no pickle, no saved code executed)."""
    from graphopt.artifact import load

    return load(Path(path), target=target)
