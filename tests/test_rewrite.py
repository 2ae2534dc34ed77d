import numpy as np
import pytest

from graphopt.errors import PassError, RewriteLimitError
from graphopt.ir import parse
from graphopt.passes import (AttrVar, Const, MatchFailure, PassContext, Pat, Rule, Var, apply_rules)

X, Y = Var("x"), Var("y")


def test_pattern_failure_names_the_node() -> None:
    g = parse("""
graph @f(%x: f32[2]) {
  %0: f32[2] = exp(%x)
  %1: f32[2] = mul(%0, %x)
  return %1
}""")
    with pytest.raises(MatchFailure, match="expected a constant, got %x") as info:
        Pat("mul", Pat("exp", X), Const()).match(g.outputs[0])
    assert info.value.reason.startswith("expected a constant")


def test_commuted_variants_and_same_var_twice() -> None:
    rule = Rule("x-times-x", Pat("mul", X, X), lambda rw, m: rw.op("pow", [m.x, rw.const(np.float32(2))]))
    assert len(rule.variants) == 1  # mul(x, x) is its own commuted form
    g = parse("""
graph @f(%x: f32[2], %y: f32[2]) {
  %0: f32[2] = mul(%x, %x)
  %1: f32[2] = mul(%x, %y)
  return %0, %1
}""")
    stats = apply_rules(g, [rule])
    assert stats.fired["x-times-x"] == 1
    assert [n.op.name for n in g] == ["pow", "mul"]


def test_unknown_op_in_pattern_fails_at_construction() -> None:
    from graphopt.errors import UnsupportedOpError

    with pytest.raises(UnsupportedOpError, match="did you mean 'transpose'"):
        Pat("transpse", X)


def test_attribute_capture_and_rejection_reasons() -> None:
    rule = Rule("same-perm", Pat("transpose", Pat("transpose", X, perm=AttrVar("p")), perm=AttrVar("p")),
                lambda rw, m: m.x)
    g = parse("""
graph @f(%x: f32[2,3,4]) {
  %0: f32[3,2,4] = transpose(%x) {perm=[1, 0, 2]}
  %1: f32[3,4,2] = transpose(%0) {perm=[0, 2, 1]}
  return %1
}""")
    ctx = PassContext(explain=True)
    assert apply_rules(g, [rule], ctx).total == 0
    assert len(ctx.rejections) == 1
    assert "attribute perm=(1, 0, 2) differs from p=(0, 2, 1)" in ctx.rejections[0].reason


def test_check_reason_is_recorded() -> None:
    rule = Rule("never", Pat("relu", X), lambda rw, m: m.x, check=lambda m: "inputs must be non-negative")
    g = parse('graph @f(%x: f32[2]) {\n  %0: f32[2] = relu(%x)  loc("block.act")\n  return %0\n}')
    ctx = PassContext(explain=True, current_pass="demo")
    apply_rules(g, [rule], ctx)
    assert str(ctx.rejections[0]) == "demo/never at %0 = relu(%x) (from block.act): inputs must be non-negative"


def test_rules_that_undo_each_other_hit_the_cap_and_are_named() -> None:
    to_neg = Rule("relu-to-abs", Pat("relu", X), lambda rw, m: rw.op("abs", [m.x]))
    back = Rule("abs-to-relu", Pat("abs", X), lambda rw, m: rw.op("relu", [m.x]))
    g = parse('graph @f(%x: f32[2]) {\n  %0: f32[2] = relu(%x)\n  return %0\n}')
    with pytest.raises(RewriteLimitError, match=r"rules that kept firing: .*relu-to-abs.*abs-to-relu|abs-to-relu.*relu-to-abs"):
        apply_rules(g, [to_neg, back], max_rewrites=50)


def test_type_changing_replacement_is_a_rule_bug() -> None:
    bad = Rule("bad", Pat("reduce_sum", X), lambda rw, m: m.x)
    g = parse('graph @f(%x: f32[2,3]) {\n  %0: f32[2] = reduce_sum(%x) {axes=[1]}\n  return %0\n}')
    with pytest.raises(PassError, match="would change %0 from f32\\[2\\] to f32\\[2,3\\]"):
        apply_rules(g, [bad])


def test_single_use_constraint() -> None:
    rule = Rule("fuse", Pat("relu", Pat("exp", X, single_use=True)), lambda rw, m: rw.op("sigmoid", [m.x]))
    g = parse("""
graph @f(%x: f32[2]) {
  %0: f32[2] = exp(%x)
  %1: f32[2] = relu(%0)
  return %1, %0
}""")
    ctx = PassContext(explain=True)
    assert apply_rules(g, [rule], ctx).total == 0
    assert "has other users" in ctx.rejections[0].reason


def test_rewrites_reach_a_fixpoint_through_the_worklist() -> None:
    # neg(neg(neg(neg(x)))) collapses fully: each rewrite exposes the next match.
    from graphopt.passes.canonicalize import CANONICALIZE_RULES

    body = "\n".join(f"  %{i + 1}: f32[2] = neg(%{i})" for i in range(8))
    g = parse(f"graph @f(%0: f32[2]) {{\n{body}\n  return %8\n}}")
    stats = apply_rules(g, CANONICALIZE_RULES)
    assert stats.fired["neg-neg"] == 4 and len(g) == 0
