r"""Ready instruments: verify-each, print-IR, dump-to-directory, numeric check, timing table.

>>> import numpy as np
>>> from graphopt.ir import parse
>>> from graphopt.passes import PassManager, PassContext, NumericCheck
>>> g = parse('graph @f(%x: f32[4]) {\n  %0: f32[4] = identity(%x)\n  return %0\n}')
>>> check = NumericCheck()
>>> _ = PassManager.parse("canonicalize,dce").run(g, PassContext(instruments=[check]))
>>> check.max_error["canonicalize"]
0.0
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from graphopt.errors import NumericMismatchError, PassError, VerificationError
from graphopt.fileio import write_text_atomic

from .context import Instrument, PassContext

if TYPE_CHECKING:
    from graphopt.ir import Graph

    from .manager import PassRecord, PassSpec
    from .registry import PassResult

__all__ = ["VerifyEach", "PrintIR", "DumpToDirectory", "NumericCheck", "SkipPasses"]


class VerifyEach(Instrument):
    """Run `graph.verify()` after every pass that changed the graph; blame the pass that broke it."""

    def enter_pipeline(self, graph: Graph, ctx: PassContext) -> None:
        try:
            graph.verify()
        except VerificationError as e:
            raise PassError(f"the input graph is invalid before any pass ran: {e}") from e

    def after_pass(self, spec: PassSpec, graph: Graph, result: PassResult, record: PassRecord,
                   ctx: PassContext) -> None:
        if not result.changed:
            return
        try:
            graph.verify()
        except VerificationError as e:
            before = ", ".join(ctx.passes_run[:-1]) or "none"
            raise PassError(f"pass {spec.name!r} left an invalid graph: {e}\n  passes run before it: {before}") from e


class PrintIR(Instrument):
    """Print the IR before and/or after passes (after: only when the pass changed something)."""

    def __init__(self, stream: IO[str] | None = None, *, before: bool = False, after_change: bool = True,
                 only: Sequence[str] = ()) -> None:
        self.stream = stream
        self.before = before
        self.after_change = after_change
        self.only = set(only)

    def _out(self) -> IO[str]:
        return self.stream if self.stream is not None else sys.stdout

    def _wanted(self, spec: PassSpec) -> bool:
        return not self.only or spec.name in self.only

    def before_pass(self, spec: PassSpec, graph: Graph, ctx: PassContext) -> None:
        if self.before and self._wanted(spec):
            print(f"// ----- IR before {spec} -----\n{graph}", file=self._out())

    def after_pass(self, spec: PassSpec, graph: Graph, result: PassResult, record: PassRecord,
                   ctx: PassContext) -> None:
        if self.after_change and result.changed and self._wanted(spec):
            print(f"// ----- IR after {spec} -----\n{graph}", file=self._out())


class DumpToDirectory(Instrument):
    """Write `00-input.gir`, `01-<pass>.gir`, ... into a directory (atomically, never over existing files)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._step = 0

    def _write(self, name: str, graph: Graph) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self._step:02d}-{name}.gir"
        try:
            write_text_atomic(path, str(graph) + "\n")
        except FileExistsError as e:
            raise FileExistsError(f"{e}; dump into an empty directory") from None
        self._step += 1

    def enter_pipeline(self, graph: Graph, ctx: PassContext) -> None:
        self._write("input", graph)

    def after_pass(self, spec: PassSpec, graph: Graph, result: PassResult, record: PassRecord,
                   ctx: PassContext) -> None:
        self._write(spec.name, graph)


class NumericCheck(Instrument):
    """Run the reference interpreter before the pipeline and after every changing pass; raise
    NumericMismatchError naming the first pass that moves the outputs further than it may.

    An exact pass may move them by float rounding only (`rtol`/`atol`). A lossy pass (one registered with a
    `budget`) is held to its budget — cosine, SQNR or relative error against the outputs before it ran — and its
    result becomes the reference the passes after it are checked against, so each pass answers for its own error.
    `inputs` are given arrays, or None for random ones (symbols bound by `bindings`, default 2).
    `max_error[pass]` records the largest absolute error seen after each exact pass, `metrics[pass]` the worst
    budget metrics of each lossy one.
    """

    def __init__(self, inputs: Sequence[np.ndarray] | None = None, *, rtol: float = 1e-5, atol: float = 1e-6,
                 bindings: Mapping[str, int] | None = None, seed: int = 0) -> None:
        self.inputs = inputs
        self.rtol, self.atol = rtol, atol
        self.bindings = bindings
        self.seed = seed
        self.max_error: dict[str, float] = {}
        self.metrics: dict[str, dict[str, float]] = {}
        self._expected: list[np.ndarray] = []

    def enter_pipeline(self, graph: Graph, ctx: PassContext) -> None:
        from graphopt.ir.interpreter import random_inputs, run

        if self.inputs is None:
            self.inputs = random_inputs(graph, self.bindings, self.seed)
        self._expected = run(graph, self.inputs)

    def after_pass(self, spec: PassSpec, graph: Graph, result: PassResult, record: PassRecord,
                   ctx: PassContext) -> None:
        from graphopt.ir.interpreter import run

        if not result.changed:
            if spec.info.exact:
                self.max_error[spec.name] = self.max_error.get(spec.name, 0.0)
            return
        assert self.inputs is not None
        got = run(graph, self.inputs)
        before = ", ".join(ctx.passes_run[:-1]) or "none"
        budget = spec.info.budget
        if budget is not None:
            worst: dict[str, float] = {}
            for i, (want, have) in enumerate(zip(self._expected, got)):
                if want.shape != have.shape or want.dtype != have.dtype:
                    raise NumericMismatchError(
                        f"lossy pass {spec.name!r} changed output {i} of @{graph.name} from {want.dtype}"
                        f"{list(want.shape)} to {have.dtype}{list(have.shape)}\n  passes run before it: {before}")
                metrics = budget.measure(want, have)
                problem = budget.violation(metrics)
                if problem is not None:
                    raise NumericMismatchError(
                        f"lossy pass {spec.name!r} is over its budget ({budget}) on output {i} of @{graph.name}: "
                        f"{problem}\n  passes run before it: {before}")
                for k, v in metrics.items():  # the worst over outputs: low cosine/SQNR, high error
                    worse = max if k == "max_rel_error" else min
                    worst[k] = worse(worst.get(k, v), v)
            self.metrics[spec.name] = worst
            self._expected = got  # the lossy result is the reference for the passes after it
            return
        worst_abs = 0.0
        for i, (want, have) in enumerate(zip(self._expected, got)):
            err = _compare(want, have, self.rtol, self.atol)
            if isinstance(err, str):
                raise NumericMismatchError(
                    f"pass {spec.name!r} changed output {i} of @{graph.name}: {err} "
                    f"(rtol={self.rtol}, atol={self.atol}; it is exact)\n  passes run before it: {before}")
            worst_abs = max(worst_abs, err)
        self.max_error[spec.name] = max(self.max_error.get(spec.name, 0.0), worst_abs)


def _compare(want: np.ndarray, have: np.ndarray, rtol: float, atol: float) -> float | str:
    """Max abs error, or the reason the outputs are not comparable / not close."""
    if want.shape != have.shape or want.dtype != have.dtype:
        return f"expected {want.dtype}{list(want.shape)}, got {have.dtype}{list(have.shape)}"
    if want.dtype == bool or np.issubdtype(want.dtype, np.integer):
        bad = int(np.count_nonzero(want != have))
        return f"{bad} elements differ" if bad else 0.0
    w, h = want.astype(np.float64), have.astype(np.float64)
    nan_mismatch = np.isnan(w) != np.isnan(h)
    if nan_mismatch.any():
        return f"NaN appears in {int(nan_mismatch.sum())} positions where it did not"
    finite = np.isfinite(w) & np.isfinite(h)
    if ((w != h) & ~finite & ~np.isnan(w)).any():
        return "an infinity changed"
    err = np.abs(w - h)[finite]
    if err.size == 0:
        return 0.0
    tol = atol + rtol * np.abs(w[finite])
    if (err > tol).any():
        return f"max abs error {err.max():.3g} exceeds tolerance at {int((err > tol).sum())} elements"
    return float(err.max())


class SkipPasses(Instrument):
    """Skip the named passes (ablations); `ctx.disabled` does the same without an instrument."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = set(names)

    def should_run(self, spec: PassSpec, graph: Graph, ctx: PassContext) -> bool:
        return spec.name not in self.names

