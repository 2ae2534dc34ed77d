import pytest

from graphopt.errors import VerificationError
from graphopt.ir import DType, Graph, TensorType, parse


def _g() -> Graph:
    return parse("""
graph @f(%x: f32[2,3]) {
  %0: f32[2,3] = relu(%x)  loc("block.0")
  %1: f32[2,3] = exp(%0)
  return %1
}""")


def test_valid_graph_passes() -> None:
    _g().verify()


def test_wrong_declared_type() -> None:
    g = parse("graph @f(%x: f32[2,3]) {\n  %0: f32[3,2] = relu(%x)  loc(\"block.0\")\n  return %0\n}")
    with pytest.raises(VerificationError, match=r"\[types\] at %0 = relu\(%x\) \(from block.0\): %0 is declared "
                                                r"f32\[3,2\] but relu gives f32\[2,3\]. run the infer-shapes pass"):
        g.verify()


def test_use_before_definition() -> None:
    g = _g()
    first, second = list(g)
    first.set_input(0, second.output)
    with pytest.raises(VerificationError, match=r"\[order\] .* input 0 \(%1\) is used before it is defined") as info:
        g.verify()
    assert info.value.rule == "order" and info.value.node is first


def test_value_from_another_graph() -> None:
    g, other = _g(), _g()
    next(iter(g)).set_input(0, other.inputs[0])
    with pytest.raises(VerificationError, match=r"\[ssa\].*not a value of this graph"):
        g.verify()


def test_schema_violation() -> None:
    g = _g()
    node = next(iter(g))
    node.inputs = [g.inputs[0], g.inputs[0]]
    with pytest.raises(VerificationError, match=r"\[schema\].*relu takes 1 inputs \(x\), got 2"):
        g.verify()


def test_shape_error_is_a_type_violation() -> None:
    g = parse("graph @f(%x: f32[2,3], %y: f32[4,3]) {\n  %0: f32[2,3] = add(%x, %y)\n  return %0\n}")
    with pytest.raises(VerificationError, match=r"\[types\].*do not broadcast"):
        g.verify()


def test_untyped_value() -> None:
    g = parse("graph @f(%x: f32[2]) {\n  %0: ? = relu(%x)\n  %1: ? = exp(%0)\n  return %1\n}")
    with pytest.raises(VerificationError, match=r"%0 has no type. run the infer-shapes pass"):
        g.verify()


def test_outputs_must_be_defined() -> None:
    g, other = _g(), _g()
    g.set_outputs([other.outputs[0]])
    with pytest.raises(VerificationError, match="graph output %1 is not defined in this graph"):
        g.verify()


def test_add_refuses_inputs_of_other_graphs() -> None:
    g, other = Graph(), Graph()
    x = other.add_input("x", TensorType(DType.F32, (2,)))
    with pytest.raises(VerificationError, match="belongs to another graph"):
        g.add("relu", [x])


_MALFORMED_ATTRS = ["strides=[0, 0]", "strides=[-1, 1]", "pads=[1]", "dilations=[0, 0]", "groups=0", "groups=3",
                    "strides=[1]", "pads=[-5, 0, 0, 0]", "dilations=[99, 99]", ""]
_MALFORMED_OPS = ["softmax(%0) {axis=7}", "transpose(%0) {perm=[0, 0, 1, 2]}", "reshape(%0) {shape=[7]}",
                  "gather(%0, %i) {axis=9}", "concat(%0, %0) {axis=-9}", "slice(%0) {starts=[0], ends=[1], axes=[9]}",
                  "squeeze(%0) {axes=[1]}", "reduce_sum(%0) {axes=[5]}", "expand(%0) {shape=[3, 3]}",
                  "split(%0) {axis=1, sizes=[5]}", "tile(%0) {repeats=[1]}", "pad(%0) {pads=[1, 1]}",
                  "unsqueeze(%0) {axes=[9]}", "topk(%0) {k=99}", "relu(%0)"]


@pytest.mark.parametrize("attr", _MALFORMED_ATTRS)
def test_malformed_nodes_are_graphopt_errors_never_raw_exceptions(attr: str) -> None:
    """Fuzz finding: ZeroDivisionError (stride 0), ValueError, IndexError and KeyError escaped verify/parse."""
    import numpy as np

    from graphopt.errors import GraphoptError

    for op in _MALFORMED_OPS:
        text = ("graph @f(%x: f32[1,2,5,5], %i: i64[3]) {\n  const @w: f32[2,2,3,3] = external\n"
                f"  %0: f32[1,2,3,3] = conv(%x, @w) {{{attr}}}\n  %1: f32[1,2,3,3] = {op}\n  return %1\n}}")
        try:
            parse(text.replace(" {}", ""), constants={"w": np.zeros((2, 2, 3, 3), np.float32)}).verify()
        except GraphoptError:
            pass


def test_builder_known_type_skips_inference_and_verify_catches_a_wrong_one() -> None:
    from graphopt.ir import Builder

    g = _g()
    b = Builder(g)
    x = g.inputs[0]
    with g.inserting_before(next(iter(g))):
        right = b.op("neg", [x], known_type=x.type)  # what inference would give: verify is satisfied
    g.set_outputs([*g.outputs, right])
    g.verify()
    with g.inserting_before(next(iter(g))):
        wrong = b.op("neg", [x], known_type=TensorType(DType.F32, (3, 2)))  # taken as given, not inferred
    assert right.type == x.type and wrong.type.shape == (3, 2)
    g.set_outputs([*g.outputs, wrong])
    with pytest.raises(VerificationError, match=r"declared f32\[3,2\] but neg gives f32\[2,3\]"):
        g.verify()
