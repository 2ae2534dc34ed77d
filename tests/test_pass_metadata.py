"""What lossy passes and their users need from the pass layer: choice options, a typed data channel, float
statistics and tables, budgets the numeric check enforces, validated `preserves`, an analysis cache that notices
any change, and crash and drift reports whose command really reproduces them."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Literal

import ml_dtypes
import numpy as np
import pytest

from graphopt.cli import main
from graphopt.errors import NumericMismatchError, PassError, PipelineError
from graphopt.ir import Graph, parse
from graphopt.passes import (Budget, NumericCheck, PassContext, PassManager, PassResult, VerifyEach, get_pass,
                             register_pass)

TEXT = """
graph @mlp(%x: f32[4,16]) {
  const @w: f32[8,16] = external
  %0: f32[4,8] = linear(%x, @w)
  %1: f32[4,8] = relu(%0)
  return %1
}"""


def _graph() -> Graph:
    return parse(TEXT, {"w": np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)})


def _scale_weights(graph: Graph, fn) -> bool:  # type: ignore[no-untyped-def]
    changed = False
    for c in list(graph.constants.values()):
        if c.type.dtype.is_float and c.const.size > 1:
            new = graph.add_constant(fn(np.asarray(c.const)).astype(np.float32), name=graph.fresh_name(c.name))
            c.replace_all_uses_with(new)
            graph.remove_constant(c)
            changed = True
    return changed


@register_pass("test-round-weights", budget=Budget(cosine=0.9999, sqnr_db=30.0), replace=True)
def _round_weights(graph: Graph, ctx: PassContext, *, to: Literal["bf16", "f16"] = "bf16") -> PassResult:
    """Round float weights through bf16 or f16 (lossy, small error)."""
    narrow = ml_dtypes.bfloat16 if to == "bf16" else np.float16
    return PassResult(changed=_scale_weights(graph, lambda a: a.astype(narrow)),
                      stats={"to-" + to: 1, "weights-max-rel-error": 0.004}, tables={"layers": [{"name": "w"}]})


@register_pass("test-zero-half", budget=Budget(cosine=0.999), replace=True)
def _zero_half(graph: Graph, ctx: PassContext) -> PassResult:
    """Zero every other weight (lossy, far over a tight budget)."""
    def halve(a: np.ndarray) -> np.ndarray:
        a = a.copy()
        a.reshape(-1)[::2] = 0
        return a
    return PassResult(changed=_scale_weights(graph, halve))


@register_pass("test-round-claims-exact", replace=True)
def _round_claims_exact(graph: Graph, ctx: PassContext) -> PassResult:
    """Round weights through bf16 but declare no budget: the numeric check must blame it."""
    return PassResult(changed=_scale_weights(graph, lambda a: a.astype(ml_dtypes.bfloat16)))


@dataclass
class Table:
    scale: float


@register_pass("test-needs-table", replace=True)
def _needs_table(graph: Graph, ctx: PassContext) -> PassResult:
    """Read a structured table through the typed channel."""
    return PassResult(changed=False, stats={"scale": ctx.need(Table).scale})


@register_pass("test-crash", replace=True)
def _crash(graph: Graph, ctx: PassContext) -> PassResult:
    """Crash on a linear with a fused relu, which exists only after fuse-linear: a reproducer holding the pipeline's
    input instead of the IR this pass was given would not crash."""
    if any(n.op.name == "linear" and n.attrs["activation"] == "relu" for n in graph):
        raise ZeroDivisionError("fused relu seen")
    return PassResult(changed=False)


def test_choice_options_are_validated_and_listed(capsys: pytest.CaptureFixture[str]) -> None:
    info = get_pass("test-round-weights")
    assert info.options["to"].choices == ("bf16", "f16") and not info.exact
    assert str(PassManager.parse("test-round-weights{to=f16}")) == "test-round-weights{to=f16}"
    with pytest.raises(PipelineError, match="expected one of bf16, f16, got 'f8'"):
        PassManager.parse("test-round-weights{to=f8}")
    assert main(["passes"]) == 0
    out = capsys.readouterr().out
    assert "to: bf16 | f16 = 'bf16'" in out and "lossy, budget: cosine >= 0.9999, SQNR >= 30.0 dB" in out


def test_a_literal_default_outside_its_choices_is_refused_at_registration() -> None:
    with pytest.raises(TypeError, match="default 'x' is not one of"):
        @register_pass("test-bad-choice", replace=True)
        def _bad(graph: Graph, ctx: PassContext, *, mode: Literal["a", "b"] = "x") -> PassResult:  # type: ignore[assignment]
            return PassResult(changed=False)


def test_structured_data_travels_by_type() -> None:
    r = PassManager.parse("test-needs-table").run(_graph(), PassContext().provide(Table(0.25)))
    assert r.records[0].stats["scale"] == 0.25
    with pytest.raises(PassError, match="pass 'test-needs-table' needs a Table"):
        PassManager.parse("test-needs-table").run(_graph())


def test_float_stats_and_tables_reach_the_record() -> None:
    r = PassManager.parse("test-round-weights").run(_graph())
    rec = r.records[0]
    assert rec.stats["weights-max-rel-error"] == 0.004 and rec.tables["layers"] == [{"name": "w"}]
    assert "weights-max-rel-error=0.004" in r.table()


def test_a_lossy_pass_within_budget_passes_and_later_passes_are_checked_against_its_result() -> None:
    check = NumericCheck()
    PassManager.parse("test-round-weights,canonicalize,fuse-linear").run(_graph(), PassContext(instruments=[check]))
    m = check.metrics["test-round-weights"]
    assert 0.9999 <= m["cosine"] < 1.0 and m["sqnr_db"] > 30  # bf16 rounding really moved the outputs
    assert check.max_error["fuse-linear"] < 1e-5  # exact after it, against the rounded result


def test_a_lossy_pass_over_its_budget_is_named() -> None:
    with pytest.raises(NumericMismatchError, match=r"lossy pass 'test-zero-half' is over its budget \(cosine >= "
                                                   r"0.999\) on output 0 of @mlp: cosine 0\.\d+ < 0.999"):
        PassManager.parse("canonicalize,test-zero-half").run(_graph(), PassContext(instruments=[NumericCheck()]))


def test_a_pass_that_rounds_without_declaring_a_budget_is_blamed() -> None:
    with pytest.raises(NumericMismatchError, match="pass 'test-round-claims-exact' changed output 0.*it is exact"):
        PassManager.parse("test-round-claims-exact").run(_graph(), PassContext(instruments=[NumericCheck()]))


def test_preserves_names_are_checked() -> None:
    with pytest.raises(ValueError, match="preserves unknown analyses \\['use-count'\\]; did you mean 'use-counts'"):
        register_pass("test-bad-preserves", preserves=("use-count",), replace=True)(lambda g, c: None)


def test_the_analysis_cache_notices_changes_made_outside_passes() -> None:
    g = _graph()
    ctx = PassContext()
    assert ctx.analyses.get("use-counts", g)["0"] == 1
    relu = next(n for n in g if n.op.name == "relu")
    with g.inserting_after(relu):
        g.add("neg", [relu.inputs[0]])  # a second use of %0, made by hand between runs
    assert ctx.analyses.get("use-counts", g)["0"] == 2
    assert ctx.analyses.computed["use-counts"] == 2


def test_an_analysis_a_changing_pass_preserves_is_reused() -> None:
    g = _graph()
    ctx = PassContext()
    ctx.analyses.get("dominators", g)
    ctx.analyses.get("use-counts", g)
    PassManager.parse("test-round-weights").run(g, ctx)  # changed, preserves nothing: both recomputed
    ctx.analyses.get("use-counts", g)
    assert ctx.analyses.computed["use-counts"] == 2

    @register_pass("test-renames-keep-counts", preserves=("use-counts",), replace=True)
    def _rename(graph: Graph, c: PassContext) -> PassResult:
        graph.metadata["touched"] = True
        graph.set_outputs(list(graph.outputs))  # a change, that keeps every use count
        return PassResult(changed=True)

    PassManager.parse("test-renames-keep-counts").run(g, ctx)
    ctx.analyses.get("use-counts", g)
    ctx.analyses.get("dominators", g)
    assert ctx.analyses.computed == {"use-counts": 2, "dominators": 2}


def _command(message: str) -> list[str]:
    line = re.search(r"reproduce with: (graphopt opt .*)", message)
    assert line, message
    argv = shlex.split(line.group(1))
    assert argv[:2] == ["graphopt", "opt"]
    return argv[1:]


def test_a_crash_report_gives_a_command_that_reproduces_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(PassError) as info:
        PassManager.parse("canonicalize,fuse-linear,test-crash").run(_graph())
    argv = _command(str(info.value))
    assert "--load-pass" in argv and "--pipeline" in argv and argv[argv.index("--pipeline") + 1] == "test-crash"
    capsys.readouterr()
    assert main(argv) == 1
    assert "crashed with ZeroDivisionError: fused relu seen" in capsys.readouterr().err


def test_a_drift_report_gives_a_command_that_reproduces_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(NumericMismatchError) as info:
        PassManager.parse("fuse-linear,test-zero-half").run(_graph(), PassContext(instruments=[NumericCheck()]))
    argv = _command(str(info.value))
    assert argv[-1] == "--numeric-check"
    gir = argv[1]
    assert "linear(" in open(gir).read() and "activation=\"relu\"" in open(gir).read()  # the IR *before* the pass
    capsys.readouterr()
    assert main(argv) == 1
    assert "is over its budget" in capsys.readouterr().err


def test_verify_each_failures_also_come_with_a_reproducer() -> None:
    @register_pass("test-break-types", replace=True)
    def _break(graph: Graph, ctx: PassContext) -> PassResult:
        node = next(iter(graph))
        node.outputs[0].type = node.outputs[0].type.with_shape([7])
        return PassResult(changed=True)

    with pytest.raises(PassError, match="left an invalid graph(.|\n)*reproduce with: graphopt opt .*--verify-each"):
        PassManager.parse("test-break-types").run(_graph(), PassContext(instruments=[VerifyEach()]))
