import pytest

from graphopt.errors import PassError
from graphopt.ir import DType, TensorType, parse
from graphopt.passes import PassManager


def test_fills_missing_types() -> None:
    g = parse("""
graph @f(%x: f32[batch,8]) {
  %0: ? = reshape(%x) {shape=[batch, 2, 4]}
  %1: ? = reduce_mean(%0) {axes=[-1]}
  return %1
}""")
    r = PassManager.parse("infer-shapes").run(g)
    assert r.records[0].stats == {"types-updated": 2}
    assert g.outputs[0].type == TensorType(DType.F32, ("batch", 2))
    g.verify()


def test_reports_the_node_that_cannot_be_typed() -> None:
    g = parse("""
graph @f(%x: f32[2,3], %y: f32[4,5]) {
  %0: ? = matmul(%x, %y)  loc("encoder.mlp")
  return %0
}""")
    with pytest.raises(PassError, match=r"matmul.*encoder\.mlp.*contraction dims differ \(3 vs 4\)"):
        PassManager.parse("infer-shapes").run(g)


def test_defaults_that_need_input_types_are_filled_once_the_types_are_known() -> None:
    from graphopt.ir import parse
    from graphopt.passes import PassManager

    g = parse("""graph @g(%x: f32[1,2,5,5], %w: f32[3,2,3,3]) {
  %r: ? = relu(%x)
  %y: ? = conv(%r, %w)
  %z: ? = slice(%y) {starts=[0], ends=[1]}
  return %z
}""")
    _, conv, sl = list(g)
    assert conv.attrs["strides"] is None and sl.attrs["axes"] is None  # made before %y had a type
    PassManager.parse("infer-shapes").run(g)
    assert conv.attrs["strides"] == (1, 1) and conv.attrs["pads"] == (0, 0, 0, 0) and sl.attrs["axes"] == (0,)
