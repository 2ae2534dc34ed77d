"""ONNX backend-test conformance: the node cases shipped in the `onnx` wheel, run through graphopt.

Each case (a one-node model plus inputs and expected outputs, generated locally by
`onnx.backend.test.case.node.collect_testcases`) is imported with `import_onnx`, optimized with `pipeline`, compiled
for `target` and compared with the expected outputs the way ONNX's own runner does (same dtype and shape, then
`rtol`/`atol` from the case). ONNX Runtime on the untouched model is the baseline.

>>> from graphopt.conformance import node_cases, run_case
>>> case = next(c for c in node_cases("Relu"))
>>> run_case(case, "cpu").status
'pass'
"""

from __future__ import annotations

import functools
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CaseResult", "node_cases", "run_case", "run_ort", "op_type", "summarize"]

STATUSES = ("pass", "fail", "unsupported", "error")


@dataclass(frozen=True)
class CaseResult:
    """One case on one target: pass, fail (ran, wrong answer), unsupported (refused cleanly) or error (crash)."""

    case: str
    op: str
    target: str
    status: str
    detail: str = ""


def node_cases(op: str | None = None) -> list[Any]:
    """The ONNX node test cases (optionally those whose op is `op`), generated in memory (no download)."""
    cases = _all_cases()
    return [c for c in cases if op is None or op_type(c) == op]


@functools.lru_cache(maxsize=1)
def _all_cases() -> tuple[Any, ...]:
    # onnx fills one module-level list on its first collection (and filters it then), so always collect it all
    from onnx.backend.test.case import node

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = list(node.collect_testcases(None))
    return tuple(sorted(cases, key=lambda c: c.name))


def op_type(case: Any) -> str:
    """The op a case tests: its last node's op type (function-expanded cases end with the op's output)."""
    nodes = case.model.graph.node
    return nodes[-1].op_type if nodes else "?"


def _compare(got: Sequence[Any], want: Sequence[Any], rtol: float, atol: float) -> str:
    """'' when `got` matches `want` like onnx.backend.test's runner checks it, else what differs."""
    if len(got) != len(want):
        return f"{len(got)} outputs, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        if isinstance(w, (list, tuple)):  # sequence outputs: element by element
            if not isinstance(g, (list, tuple)):
                return f"output {i}: a {type(g).__name__}, expected a sequence"
            inner = _compare(g, w, rtol, atol)
            if inner:
                return f"output {i}: {inner}"
            continue
        if type(w).__name__ == "TensorProto":
            from onnx import numpy_helper

            w = numpy_helper.to_array(w)
        if hasattr(g, "detach"):  # a target given no inputs at all answers in torch tensors
            from graphopt.backends.base import to_numpy

            g = to_numpy(g)
        g, w = np.asarray(g), np.asarray(w)
        if g.dtype != w.dtype:
            return f"output {i}: dtype {g.dtype}, expected {w.dtype}"
        if g.shape != w.shape:
            return f"output {i}: shape {g.shape}, expected {w.shape}"
        if w.dtype.kind in "fc" or w.dtype.name in ("bfloat16",) or w.dtype.name.startswith("float8"):
            g64, w64 = g.astype(np.float64), w.astype(np.float64)
            if not np.allclose(g64, w64, rtol=rtol, atol=atol, equal_nan=True):
                err = np.nanmax(np.abs(g64 - w64)) if g.size else 0.0
                return f"output {i}: max abs error {err:.3g} (rtol {rtol}, atol {atol})"
        elif not np.array_equal(g, w):
            return f"output {i}: {int((g != w).sum())} of {g.size} elements differ"
    return ""


def _array(x: Any) -> Any:
    """A case input as numpy (some cases store inputs as TensorProto, e.g. bfloat16 ones)."""
    if type(x).__name__ == "TensorProto":
        from onnx import numpy_helper

        return numpy_helper.to_array(x)
    return np.asarray(x)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def _compile(model: Any, target: str, pipeline: str, constants: dict[str, Any] | None = None) -> Any:
    from graphopt.backends import check_coverage, get_backend
    from graphopt.frontends.onnx import import_onnx
    from graphopt.passes import PassManager

    graph = PassManager.parse(pipeline).run(import_onnx(model, constants=constants)).graph
    backend = get_backend(target)
    check_coverage(graph, backend)
    return backend.compile(graph)


def _failure(case: Any, target: str, e: Exception) -> CaseResult:
    from graphopt.errors import ModelLoadError, UnsupportedOpError

    if isinstance(e, UnsupportedOpError) and "no graphopt converter" in str(e):
        return CaseResult(case.name, op_type(case), target, "unsupported",
                          f"no converter for {', '.join(sorted(getattr(e, 'ops', None) or {}))}")
    status = "unsupported" if isinstance(e, (UnsupportedOpError, ModelLoadError)) else "error"
    return CaseResult(case.name, op_type(case), target, status, _first_line(e))


def run_case(case: Any, target: str, pipeline: str = "O0") -> CaseResult:
    """Import, optimize, compile and run every data set of `case` on `target`; compare with the expected outputs.

    The case model is taken as given. One whose shape-like arguments (Reshape targets, Resize scales, reduction
    axes) are graph inputs runs as a `SpecializingModel` — compiled per distinct value of those inputs when called,
    as `graphopt.compile` does — and its result says so in `detail` ("specialized on call: ...").
    """
    from graphopt.errors import ShapeInputsNeeded
    from graphopt.frontends.onnx.loading import graph_input_names
    from graphopt.specialize import SpecializingModel

    try:
        try:
            exe: Any = _compile(case.model, target, pipeline)
        except ShapeInputsNeeded as e:
            exe = SpecializingModel(e.inputs, graph_input_names(case.model),
                                    lambda consts: _compile(case.model, target, pipeline, consts))
    except Exception as e:  # noqa: BLE001 - a crash is a result here, recorded with its message
        return _failure(case, target, e)
    for inputs, outputs in case.data_sets:
        try:
            with np.errstate(all="ignore"):
                got = exe(*[_array(x) for x in inputs])
        except Exception as e:  # noqa: BLE001
            status = "unsupported" if type(e).__name__ in ("UnsupportedOpError", "ShapeInputsNeeded",
                                                           "ModelLoadError") else "error"
            return CaseResult(case.name, op_type(case), target, status, _first_line(e))
        diff = _compare(got, outputs, case.rtol, case.atol)
        if diff:
            return CaseResult(case.name, op_type(case), target, "fail", diff)
    detail = f"specialized on call: {', '.join(exe.needed)}" if isinstance(exe, SpecializingModel) else ""
    return CaseResult(case.name, op_type(case), target, "pass", detail)


def run_ort(case: Any) -> CaseResult:
    """The baseline: ONNX Runtime (CPU, its own optimizations) on the untouched case model."""
    import onnxruntime as ort

    op = op_type(case)
    try:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 4
        sess = ort.InferenceSession(case.model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        return CaseResult(case.name, op, "onnxruntime", "unsupported", _first_line(e))
    names = [i.name for i in sess.get_inputs()]
    for inputs, outputs in case.data_sets:
        try:
            got = sess.run(None, {n: _array(x) for n, x in zip(names, inputs)})
        except Exception as e:  # noqa: BLE001
            return CaseResult(case.name, op, "onnxruntime", "error", _first_line(e))
        diff = _compare(got, outputs, case.rtol, case.atol)
        if diff:
            return CaseResult(case.name, op, "onnxruntime", "fail", diff)
    return CaseResult(case.name, op, "onnxruntime", "pass")


def summarize(results: Iterable[CaseResult], baseline: str = "onnxruntime") -> dict[str, Any]:
    """Counts per target and per op, and each target's pass rate over the cases `baseline` passes."""
    by_target: dict[str, dict[str, CaseResult]] = defaultdict(dict)
    for r in results:
        by_target[r.target][r.case] = r
    base_pass = {c for c, r in by_target.get(baseline, {}).items() if r.status == "pass"}
    out: dict[str, Any] = {"targets": {}, "ops": defaultdict(dict)}
    for target, rs in by_target.items():
        counts = Counter(r.status for r in rs.values())
        passed = {c for c, r in rs.items() if r.status == "pass"}
        out["targets"][target] = {
            "cases": len(rs), **{s: counts.get(s, 0) for s in STATUSES},
            "of_baseline": f"{len(passed & base_pass)}/{len(base_pass)}",
            "of_baseline_rate": round(len(passed & base_pass) / max(len(base_pass), 1), 4),
        }
        for op, group in _by_op(rs.values()).items():
            out["ops"][op][target] = f"{sum(r.status == 'pass' for r in group)}/{len(group)}"
    out["ops"] = dict(sorted(out["ops"].items()))
    return out


def _by_op(results: Iterable[CaseResult]) -> dict[str, list[CaseResult]]:
    groups: dict[str, list[CaseResult]] = defaultdict(list)
    for r in results:
        groups[r.op].append(r)
    return groups
