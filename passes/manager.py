"""PassManager: runs a pipeline of passes, verifying, timing and counting each one.

Pipelines are text and round-trip: `str(PassManager.parse(p)) == p` for canonical `p`.

    pipeline := entry (',' entry)*
    entry    := pass-name ['{' key '=' value (' ' key '=' value)* '}'] | preset
    preset   := O0 | O1 | O2 | O3           (expanded in place)

Values are bare words (`1048576`, `true`, `a,b` for lists) or double-quoted strings.

>>> from graphopt.passes import PassManager
>>> str(PassManager.parse("canonicalize,fold-constants{max-size=1048576},dce"))
'canonicalize,fold-constants{max-size=1048576},dce'
"""

from __future__ import annotations

import gc
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from graphopt.errors import GraphoptError, NumericMismatchError, PassError, PipelineError
from graphopt.ir import Graph

from .context import PassContext
from .registry import PassInfo, PassResult, get_pass

__all__ = ["PassManager", "PassSpec", "PassRecord", "PipelineResult", "PRESETS"]

PRESETS: dict[str, str] = {
    "O0": "",
    "O1": "canonicalize,fold-constants,cse,dce",
    # O2: cleanups and the fusions that never lose; O3 adds rewrites whose payoff depends on the backend.
    "O2": ("infer-shapes,canonicalize,fold-constants,cse,fold-batchnorm,fuse-layernorm,fuse-rmsnorm,fuse-gelu,"
           "fuse-linear,fuse-conv,fuse-attention,eliminate-layout-ops,canonicalize,dce"),
    "O3": ("infer-shapes,canonicalize,fold-constants,cse,fold-batchnorm,fuse-layernorm,fuse-rmsnorm,fuse-gelu,"
           "fuse-linear,fuse-conv,fuse-attention,merge-parallel-linears,eliminate-layout-ops,canonicalize,dce"),
}


@dataclass(frozen=True)
class PassSpec:
    """One pipeline entry: a registered pass and the options given explicitly."""

    info: PassInfo
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        return self.info.name

    def resolved_options(self) -> dict[str, Any]:
        """Every option with defaults filled in, by kebab-case name."""
        out = {k: o.default for k, o in self.info.options.items()}
        out.update(self.options)
        return out

    def __str__(self) -> str:
        if not self.options:
            return self.name
        parts = []
        for key, value in self.options:
            text = self.info.options[key].format(value)
            if not re.fullmatch(r"[A-Za-z0-9_.,+\-]+", text):
                text = json.dumps(text)
            parts.append(f"{key}={text}")
        return f"{self.name}{{{' '.join(parts)}}}"


@dataclass
class PassRecord:
    """Timing and change statistics of one pass in one run."""

    name: str
    changed: bool
    seconds: float
    nodes_before: int
    nodes_after: int
    stats: dict[str, int | float] = field(default_factory=dict)
    skipped: bool = False
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class PipelineResult:
    """The optimized graph and a record per pass."""

    graph: Graph
    records: list[PassRecord]

    @property
    def changed(self) -> bool:
        return any(r.changed for r in self.records)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.records)

    def table(self) -> str:
        """A plain-text table of the records, for people."""
        rows = [("pass", "changed", "ms", "nodes", "stats")]
        for r in self.records:
            stats = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.stats.items())
            rows.append((r.name + (" (skipped)" if r.skipped else ""), "yes" if r.changed else "no",
                         f"{r.seconds * 1e3:.2f}", f"{r.nodes_before}->{r.nodes_after}", stats))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4] for row in rows)


class PassManager:
    """An ordered list of passes. Build from text with `parse`, or from `PassSpec`s."""

    def __init__(self, passes: Sequence[PassSpec] = ()) -> None:
        self.passes = list(passes)

    @classmethod
    def parse(cls, text: str) -> PassManager:
        """Parse pipeline text (see the module docstring). PipelineError names the bad entry."""
        return cls(_parse_pipeline(text))

    def __str__(self) -> str:
        return ",".join(str(p) for p in self.passes)

    def __repr__(self) -> str:
        return f"PassManager({str(self)!r})"

    def without(self, index: int) -> PassManager:
        """The pipeline with entry `index` removed (for ablations)."""
        return PassManager(self.passes[:index] + self.passes[index + 1:])

    def run(self, graph: Graph, ctx: PassContext | None = None) -> PipelineResult:
        """Run every pass in order on `graph` (mutated in place unless a pass is functional).

        Python's cyclic garbage collector is paused for the run: a big graph is hundreds of thousands of objects,
        and each full collection walks all of them, which made passes superlinear (cse: 2 µs per node at 10k
        nodes, 9 µs at 100k). Reference counting still frees everything acyclic at once; cycles wait until the
        pipeline ends."""
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._run(graph, ctx)
        finally:
            if was_enabled:
                gc.enable()

    def _run(self, graph: Graph, ctx: PassContext | None) -> PipelineResult:
        ctx = ctx if ctx is not None else PassContext()
        disabled = set(ctx.disabled)
        # A copy of the input (weights shared) so that a crash report can rebuild the IR the failing pass was
        # given by replaying the passes before it, and write it to a file. Skipped for huge graphs, where the copy
        # would cost more than the passes; their report says how to get the IR instead.
        origin = graph.copy() if len(graph) <= _SNAPSHOT_NODES else None
        ran: list[PassSpec] = []
        for inst in ctx.instruments:
            inst.enter_pipeline(graph, ctx)
        records: list[PassRecord] = []
        for spec in self.passes:
            before = len(graph)
            if spec.name in disabled or not all(i.should_run(spec, graph, ctx) for i in ctx.instruments):
                records.append(PassRecord(spec.name, False, 0.0, before, before, skipped=True))
                continue
            for inst in ctx.instruments:
                inst.before_pass(spec, graph, ctx)
            ctx.current_pass = spec.name
            start = time.perf_counter()
            try:
                result = self._run_one(spec, graph, ctx)
            except PassError as e:
                raise _with_reproducer(e, origin, ran, spec, ctx) from e.__cause__
            seconds = time.perf_counter() - start
            if result.graph is not None:
                graph = result.graph
            ctx.passes_run.append(spec.name)
            if result.changed:
                ctx.analyses.invalidate(graph, spec.info.preserves)
            record = PassRecord(spec.name, result.changed, seconds, before, len(graph), dict(result.stats),
                                tables=dict(result.tables))
            records.append(record)
            try:
                for inst in ctx.instruments:
                    inst.after_pass(spec, graph, result, record, ctx)
            except PassError as e:  # VerifyEach, NumericCheck: the pass broke the graph or its numbers
                raise _with_reproducer(e, origin, ran, spec, ctx) from e.__cause__
            ran.append(spec)
        ctx.current_pass = ""
        out = PipelineResult(graph, records)
        for inst in ctx.instruments:
            inst.exit_pipeline(graph, out, ctx)
        return out

    @staticmethod
    def _run_one(spec: PassSpec, graph: Graph, ctx: PassContext) -> PassResult:
        try:
            fn = spec.info.instantiate(dict(spec.options))
            result = fn(graph, ctx)
        except PassError:
            raise
        except GraphoptError as e:  # the history is joined only here: per pass it made long pipelines quadratic
            before = ", ".join(ctx.passes_run) or "none"
            raise PassError(f"pass {spec.name!r} failed: {e}\n  passes run before it: {before}") from e
        except Exception as e:
            before = ", ".join(ctx.passes_run) or "none"
            raise PassError(f"pass {spec.name!r} crashed with {type(e).__name__}: {e}\n  passes run before it: "
                            f"{before}") from e
        if not isinstance(result, PassResult):
            raise PassError(f"pass {spec.name!r} returned {type(result).__name__}, not a PassResult. Pass developer: "
                            "return PassResult(changed=..., stats={...}).")
        if spec.info.inplace and result.graph is not None and result.graph is not graph:
            raise PassError(f"pass {spec.name!r} is declared in-place but returned a different graph. Pass "
                            "developer: mutate the graph you were given, or register with inplace=False.")
        if not spec.info.inplace and result.graph is None:
            raise PassError(f"pass {spec.name!r} is declared functional (inplace=False) but returned no graph. "
                            "Pass developer: return PassResult(..., graph=new_graph).")
        return result


def _split_top(text: str) -> list[str]:
    """Split on commas outside braces and quotes."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == '"' and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "{":
            depth += 1
        elif not quoted and ch == "}":
            depth -= 1
            if depth < 0:
                raise PipelineError(f"unbalanced '}}' at column {i + 1} of {text!r}")
        elif not quoted and depth == 0 and ch == ",":
            parts.append(text[start:i])
            start = i + 1
    if depth or quoted:
        raise PipelineError(f"unterminated {'string' if quoted else '{'} in pipeline {text!r}")
    parts.append(text[start:])
    return parts


_ENTRY = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9\-]*)\s*(?:\{(.*)\})?\s*\Z", re.S)
_OPTION = re.compile(r'\s*([A-Za-z0-9_\-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s"]+)')


def _parse_options(info: PassInfo, body: str) -> tuple[tuple[str, Any], ...]:
    options: dict[str, Any] = {}
    pos = 0
    while body[pos:].strip():
        m = _OPTION.match(body, pos)
        if m is None:
            raise PipelineError(f"bad option syntax in {info.name}{{{body}}} at {body[pos:].strip()!r}; "
                                "write key=value separated by spaces")
        key, raw = m.group(1), m.group(2)
        opt = info.check_option(key)
        text = json.loads(raw) if raw.startswith('"') else raw
        try:
            options[key] = opt.parse(text)
        except ValueError as e:
            raise PipelineError(f"option {key} of {info.name}: {e}") from None
        pos = m.end()
    return tuple(options.items())


def _parse_pipeline(text: str) -> list[PassSpec]:
    specs: list[PassSpec] = []
    if not text.strip():
        return specs
    for entry in _split_top(text):
        m = _ENTRY.match(entry)
        if m is None:
            raise PipelineError(f"cannot parse pipeline entry {entry.strip()!r}; expected name or name{{k=v ...}}")
        name, body = m.group(1), m.group(2)
        if name in PRESETS:
            if body is not None:
                raise PipelineError(f"preset {name} takes no options")
            specs.extend(_parse_pipeline(PRESETS[name]))
            continue
        info = get_pass(name)
        specs.append(PassSpec(info, _parse_options(info, body) if body else ()))
    return specs


_SNAPSHOT_NODES = 20_000


def _with_reproducer(error: PassError, origin: Graph | None, ran: list[PassSpec], failing: PassSpec,
                     ctx: PassContext) -> PassError:
    """`error` with the command that reproduces it: the IR the failing pass was given, rebuilt by replaying the
    passes before it on the pipeline's input, written to a fresh folder."""
    from .repro import load_pass_flags, reproduce_command

    if "reproduce with:" in str(error):
        return error
    flags = (" --numeric-check" if isinstance(error, NumericMismatchError)
             else " --verify-each" if "left an invalid graph" in str(error) else "")
    if origin is None:
        hint = ("\n  reproduce with: rerun with --dump-dir DIR (the graph is too large to snapshot by default) and "
                f"run `graphopt opt DIR/<file before {failing.name}>.gir --pipeline '{failing}'`")
    else:
        try:
            # the replay gets the run's data (a calibration table) but none of its instruments
            before = PassManager(list(ran)).run(origin, PassContext(data=dict(ctx.data))).graph if ran else origin
            hint = "\n  reproduce with: " + reproduce_command(before, str(failing),
                                                             plugins=load_pass_flags([*ran, failing])) + flags
        except Exception as e:  # noqa: BLE001 - the original error matters more than the reproducer
            hint = f"\n  (no reproducer: replaying the passes before it failed with {type(e).__name__}: {e})"
    out = type(error)(str(error) + hint)
    out.__cause__ = error.__cause__
    return out
