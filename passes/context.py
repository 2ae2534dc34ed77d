r"""PassContext: what a pipeline run carries besides the graph. Instruments hang here, not on passes.

>>> from graphopt.passes import PassContext, PassManager, VerifyEach
>>> from graphopt.ir import parse
>>> g = parse('graph @f(%x: f32[2]) {\n  %0: f32[2] = identity(%x)\n  return %0\n}')
>>> PassManager.parse("canonicalize").run(g, PassContext(instruments=[VerifyEach()])).changed
True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from .analysis import AnalysisManager

if TYPE_CHECKING:
    from graphopt.ir import Graph, Node

    from .manager import PassRecord, PassSpec, PipelineResult
    from .registry import PassResult

__all__ = ["PassContext", "Instrument", "Rejection"]

T = TypeVar("T")


class Instrument:
    """Hooks around every pass (TVM's PassInstrument). Override what you need; all default to no-ops."""

    def enter_pipeline(self, graph: Graph, ctx: PassContext) -> None:
        """Before the first pass."""

    def should_run(self, spec: PassSpec, graph: Graph, ctx: PassContext) -> bool:
        """False skips the pass (used for ablations and bisection)."""
        return True

    def before_pass(self, spec: PassSpec, graph: Graph, ctx: PassContext) -> None:
        """Just before `spec` runs."""

    def after_pass(self, spec: PassSpec, graph: Graph, result: PassResult, record: PassRecord,
                   ctx: PassContext) -> None:
        """Just after `spec` ran, with its result and timing record."""

    def exit_pipeline(self, graph: Graph, result: PipelineResult, ctx: PassContext) -> None:
        """After the last pass."""


@dataclass
class Rejection:
    """A rewrite that matched at `node` but was not applied, and why (the "why wasn't this fused?" answer)."""

    pass_name: str
    rule: str
    node: str
    origin: str
    reason: str

    def __str__(self) -> str:
        return f"{self.pass_name}/{self.rule} at {self.node}: {self.reason}"  # node names its origin


@dataclass
class PassContext:
    """Instruments, disabled passes, the analysis cache and diagnostics for one pipeline run.

    `explain=True` makes rewrite passes record every rejected match in `rejections`. Structured data for passes
    (a calibration table, an importance map) travels by type: `ctx.provide(table)` before the run, and in the pass
    `ctx.need(CalibrationTable)`, which names the pass and the type when nothing was provided.
    """

    instruments: Sequence[Instrument] = ()
    disabled: Iterable[str] = ()
    explain: bool = False
    analyses: AnalysisManager = field(default_factory=AnalysisManager)
    rejections: list[Rejection] = field(default_factory=list)
    passes_run: list[str] = field(default_factory=list)
    current_pass: str = ""
    data: dict[type, Any] = field(default_factory=dict)

    def provide(self, value: Any) -> PassContext:
        """Make `value` available to passes under its type (replacing an earlier one of the same type)."""
        self.data[type(value)] = value
        return self

    def find(self, kind: type[T]) -> T | None:
        """The provided value of type `kind` (or of a subclass), or None."""
        if kind in self.data:
            return self.data[kind]  # type: ignore[no-any-return]
        return next((v for t, v in self.data.items() if issubclass(t, kind)), None)

    def need(self, kind: type[T]) -> T:
        """The provided value of type `kind`; PassError naming the pass when there is none."""
        value = self.find(kind)
        if value is None:
            from graphopt.errors import PassError

            raise PassError(f"pass {self.current_pass or '(none)'!r} needs a {kind.__name__}; provide one with "
                            f"PassContext().provide(...) (or the option of the command that runs it)")
        return value

    def reject(self, rule: str, node: Node, reason: str) -> None:
        """Record why `rule` did not apply at `node` (only when `explain` is on)."""
        if self.explain:
            self.rejections.append(Rejection(self.current_pass, rule, node.describe(), node.origin, reason))
