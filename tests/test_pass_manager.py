import io

import numpy as np
import pytest

from graphopt.errors import NumericMismatchError, PassError, PipelineError
from graphopt.ir import parse
from graphopt.passes import (DumpToDirectory, NumericCheck, PassContext, PassManager, PassResult, PrintIR,
                             SkipPasses, VerifyEach, register_pass)

TEXT = """
graph @f(%x: f32[batch,4]) {
  const @one: f32[] = 1.0
  %0: f32[batch,4] = mul(%x, @one)
  %1: f32[batch,4] = identity(%0)
  %2: f32[batch,4] = exp(%1)
  %3: f32[batch,4] = exp(%1)
  %4: f32[batch,4] = add(%2, %3)
  return %4
}"""


@pytest.mark.parametrize("text", [
    "canonicalize,cse,fold-constants,dce",
    "fold-constants{max-size=1048576},dce",
    "cse{max-const-size=16},canonicalize",
    "",
])
def test_pipeline_text_round_trips(text: str) -> None:
    assert str(PassManager.parse(text)) == text
    assert str(PassManager.parse(str(PassManager.parse(text)))) == text


def test_presets_expand() -> None:
    assert str(PassManager.parse("O0")) == ""
    assert str(PassManager.parse("O1")) == "canonicalize,fold-constants,cse,dce"
    assert str(PassManager.parse("O1,infer-shapes")).endswith(",dce,infer-shapes")


@pytest.mark.parametrize("text,message", [
    ("canonicalise", "unknown pass 'canonicalise'; did you mean 'canonicalize'?"),
    ("fold-constants{max-sise=3}", "has no option 'max-sise'; did you mean 'max-size'?"),
    ("fold-constants{max-size}", "write key=value"),
    ("dce{", "unterminated"),
    ("O1{x=1}", "preset O1 takes no options"),
])
def test_bad_pipelines_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(PipelineError, match=message.replace("(", r"\(").replace("?", r"\?").replace("{", r"\{")):
        PassManager.parse(text)


def test_records_timing_and_stats() -> None:
    g = parse(TEXT)
    r = PassManager.parse("O1").run(g)
    names = [rec.name for rec in r.records]
    assert names == ["canonicalize", "fold-constants", "cse", "dce"]
    assert r.records[0].stats["rule:mul-one"] == 1 and r.records[0].nodes_before == 5
    assert r.records[2].stats["nodes-merged"] == 1
    assert all(rec.seconds >= 0 for rec in r.records)
    assert "canonicalize" in r.table()
    assert len(g) == 2


def test_disabled_and_skipped_passes() -> None:
    g = parse(TEXT)
    r = PassManager.parse("O1").run(g, PassContext(disabled={"cse"}, instruments=[SkipPasses(["dce"])]))
    assert [rec.skipped for rec in r.records] == [False, False, True, True]
    assert sum(n.op.name == "exp" for n in g) == 2


@register_pass("test-break-ir", replace=True)
def _break_ir(graph, ctx) -> PassResult:
    node = next(iter(graph))
    node.outputs[0].type = node.outputs[0].type.with_shape([7])
    return PassResult(changed=True)


@register_pass("test-break-numerics", replace=True)
def _break_numerics(graph, ctx) -> PassResult:
    for node in graph:
        if node.op.name == "exp":
            with graph.inserting_before(node):
                y = graph.add("neg", [node.inputs[0]])
            node.set_input(0, y)
            return PassResult(changed=True)
    return PassResult(changed=False)


@register_pass("test-not-a-result", replace=True)
def _not_a_result(graph, ctx):
    return True


@register_pass("test-new-graph", replace=True)
def _new_graph(graph, ctx) -> PassResult:
    return PassResult(changed=True, graph=graph.copy())


def test_verify_each_blames_the_pass() -> None:
    with pytest.raises(PassError, match=r"pass 'test-break-ir' left an invalid graph: \[types\].*\n  passes run before it: canonicalize"):
        PassManager.parse("canonicalize,test-break-ir,dce").run(parse(TEXT), PassContext(instruments=[VerifyEach()]))


def test_numeric_check_names_first_bad_pass() -> None:
    check = NumericCheck(rtol=1e-6)
    with pytest.raises(NumericMismatchError, match=r"pass 'test-break-numerics' changed output 0 of @f: max abs error"):
        PassManager.parse("canonicalize,cse,test-break-numerics,dce").run(parse(TEXT),
                                                                          PassContext(instruments=[check]))
    assert check.max_error["canonicalize"] == 0.0


def test_numeric_check_with_given_inputs() -> None:
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    check = NumericCheck([x])
    PassManager.parse("O1").run(parse(TEXT), PassContext(instruments=[check]))
    assert set(check.max_error) == {"canonicalize", "fold-constants", "cse", "dce"}


def test_pass_contract_violations() -> None:
    with pytest.raises(PassError, match="returned bool, not a PassResult. Pass developer"):
        PassManager.parse("test-not-a-result").run(parse(TEXT))
    with pytest.raises(PassError, match="declared in-place but returned a different graph"):
        PassManager.parse("test-new-graph").run(parse(TEXT))


def test_print_ir_and_dump(tmp_path) -> None:
    out = io.StringIO()
    PassManager.parse("O1").run(parse(TEXT), PassContext(instruments=[PrintIR(out), DumpToDirectory(tmp_path)]))
    assert "// ----- IR after canonicalize -----" in out.getvalue()
    assert "IR after fold-constants" not in out.getvalue()  # unchanged passes print nothing
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["00-input.gir", "01-canonicalize.gir", "02-fold-constants.gir", "03-cse.gir", "04-dce.gir"]
    assert parse((tmp_path / "04-dce.gir").read_text())  # dumps parse back
    with pytest.raises(FileExistsError):
        PassManager.parse("dce").run(parse(TEXT), PassContext(instruments=[DumpToDirectory(tmp_path)]))


def test_analyses_are_cached_and_invalidated() -> None:
    g = parse(TEXT)
    ctx = PassContext()
    ctx.analyses.get("use-counts", g)
    ctx.analyses.get("use-counts", g)
    assert ctx.analyses.computed["use-counts"] == 1
    PassManager.parse("infer-shapes").run(g, ctx)  # unchanged: everything preserved
    ctx.analyses.get("use-counts", g)
    assert ctx.analyses.computed["use-counts"] == 1
    PassManager.parse("cse").run(g, ctx)  # changed, preserves only shapes
    ctx.analyses.get("use-counts", g)
    assert ctx.analyses.computed["use-counts"] == 2


def test_cost_and_dominators() -> None:
    g = parse("""
graph @f(%x: f32[batch,8]) {
  const @w: f32[4,8] = external
  %0: f32[batch,4] = linear(%x, @w)
  %1: f32[batch,4] = relu(%0)
  return %1
}""", {"w": np.zeros((4, 8), np.float32)})
    from graphopt.passes.analysis import cost

    report = cost(g, {"batch": 3})
    assert report.flops == 2 * 3 * 4 * 8 + 3 * 4 and report.weight_bytes == 128
    idom = PassContext().analyses.get("dominators", g)
    assert idom["%1"] == "%0"
