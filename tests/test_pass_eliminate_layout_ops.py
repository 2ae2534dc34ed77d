from helpers import check_pass

from graphopt.ir import parse
from graphopt.passes import PassContext, PassManager


def test_reshape_like_chains_collapse() -> None:
    check_pass("eliminate-layout-ops,dce", """
graph @f(%x: f32[b,3]) {
  %0: f32[b,1,3] = unsqueeze(%x) {axes=[1]}
  %1: f32[b,1,3,1] = unsqueeze(%0) {axes=[3]}
  %2: f32[b,3] = squeeze(%1) {axes=[1, 3]}
  %3: f32[b,3,1] = reshape(%x) {shape=[b, 3, 1]}
  %4: f32[b,1,3] = transpose(%3) {perm=[0, 2, 1]}
  %5: f32[b,1,3] = squeeze(%4) {axes=[]}
  return %2, %4
}""", """
graph @f(%x: f32[b,3]) {
  %4: f32[b,1,3] = reshape(%x) {shape=[b, 1, 3]}
  return %x, %4
}""")


def test_layout_ops_around_an_elementwise_op_cancel() -> None:
    check_pass("eliminate-layout-ops,dce", """
graph @f(%x: f32[2,3,4]) {
  %0: f32[3,2,4] = transpose(%x) {perm=[1, 0, 2]}
  %1: f32[3,2,4] = gelu(%0) {approximate="tanh"}
  %2: f32[2,3,4] = transpose(%1) {perm=[1, 0, 2]}
  %3: f32[6,4] = reshape(%2) {shape=[6, 4]}
  %4: f32[6,4] = exp(%3)
  %5: f32[2,3,4] = reshape(%4) {shape=[2, 3, 4]}
  return %5
}""", """
graph @f(%x: f32[2,3,4]) {
  %1: f32[2,3,4] = gelu(%x) {approximate="tanh"}
  %4: f32[2,3,4] = exp(%1)
  return %4
}""")


def test_transposes_that_reorder_data_stay_with_a_reason() -> None:
    g = parse("""
graph @f(%x: f32[2,3,4]) {
  %0: f32[3,2,4] = transpose(%x) {perm=[1, 0, 2]}
  %1: f32[3,2,4] = relu(%0)
  %2: f32[3,4,2] = transpose(%1) {perm=[0, 2, 1]}
  return %2
}""")
    ctx = PassContext(explain=True)
    PassManager.parse("eliminate-layout-ops").run(g, ctx)
    assert [n.op.name for n in g] == ["transpose", "relu", "transpose"]
    reasons = " | ".join(r.reason for r in ctx.rejections)
    assert "do not cancel" in reasons and "reorders dims that are not 1" in reasons
