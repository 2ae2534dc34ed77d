import numpy as np
import pytest

from graphopt.ir import parse
from graphopt.passes import PassManager
from helpers import check_pass


def test_folds_chains_of_constant_ops() -> None:
    check_pass("fold-constants,dce", """
graph @f(%x: f32[3,2]) {
  const @w: f32[2,3] = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
  const @two: f32[] = 2.0
  %0: f32[3,2] = transpose(@w) {perm=[1, 0]}
  %1: f32[3,2] = mul(%0, @two)
  %2: f32[3,2] = add(%x, %1)
  return %2
}""", """
graph @f(%x: f32[3,2]) {
  const @k: f32[3,2] = [[2.0, 8.0], [4.0, 10.0], [6.0, 12.0]]
  %2: f32[3,2] = add(%x, @k)
  return %2
}""")


def test_respects_max_size_and_symbolic_attrs() -> None:
    g = parse("""
graph @f(%x: f32[n]) {
  const @w: f32[4] = [1.0, 2.0, 3.0, 4.0]
  %0: f32[4] = exp(@w)
  %1: i64[n] = arange() {end=n}
  %2: f32[n] = cast(%1) {dtype=f32}
  %3: f32[n] = add(%x, %2)
  return %3, %0
}""")
    r = PassManager.parse("fold-constants{max-size=3}").run(g)
    assert not r.changed  # exp result has 4 elements > 3; arange has a symbolic end
    r = PassManager.parse("fold-constants").run(g)
    assert r.records[0].stats == {"folded": 1}
    np.testing.assert_allclose(g.outputs[1].const, np.exp([1, 2, 3, 4]).astype(np.float32))


def test_bad_option_value_is_reported() -> None:
    from graphopt.errors import PipelineError

    with pytest.raises(PipelineError, match="option max-size of fold-constants"):
        PassManager.parse("fold-constants{max-size=big}")


def test_a_weight_is_not_replicated_into_batch_copies() -> None:
    g = parse("graph @f(%x: f32[4,8,128]) {\n  const @w: f32[128,64] = external\n"
              "  %0: f32[4,128,64] = expand(@w) {shape=[4, 128, 64]}\n  %1: f32[4,8,64] = matmul(%x, %0)\n"
              "  return %1\n}", constants={"w": np.ones((128, 64), np.float32)})
    PassManager.parse("fold-constants").run(g)
    assert [n.op.name for n in g] == ["expand", "matmul"] and len(g.constants) == 1
