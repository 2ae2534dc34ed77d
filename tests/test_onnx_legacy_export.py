"""ONNX files as most users have them: made by the TorchScript exporter (`torch.onnx.export(dynamo=False)`) with
dynamic axes, whose shape arithmetic (Shape → Gather → Unsqueeze → Concat → Reshape, `expand(batch, -1)` as
Equal/Where, masks built from `batch_index * seq + arange(seq)`) must stay symbolic where it can and be
materialized from the bound dims (`shape_tensor`) where it is used as data. One artifact must then serve every
batch and length, and the fusion passes must find what they find on the torch.export graph of the same model."""

from __future__ import annotations

import io
import warnings
from collections import Counter
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import graphopt
from graphopt.backends import get_backend, reference
from graphopt.ir import assert_graph_equal, parse

SHAPE_TENSOR = """
graph @f(%x: f32[batch,seq]) {
  %n: i64[1,2] = shape_tensor() {values=[seq, "batch*seq"], shape=[1, 2]}
  %c: f32[1,2] = cast(%n) {dtype=f32}
  %y: f32[batch,seq] = add(%x, %x)
  return %y, %c
}
"""


@pytest.mark.parametrize("target", ["reference", "cpu", "onnxruntime"])
def test_shape_tensor_reads_the_bound_dims_on_every_target(target: str) -> None:
    g = parse(SHAPE_TENSOR)
    assert_graph_equal(parse(str(g)), g)  # printable and parseable
    run = get_backend(target).compile(g)
    for b, s in ((2, 3), (5, 7)):
        _, c = run(np.zeros((b, s), np.float32))
        np.testing.assert_array_equal(np.asarray(c), [[s, b * s]])


def _const(name: str, a: Any) -> Any:
    return h.make_node("Constant", [], [name], value=nh.from_array(np.array(a, np.int64)))


def _run_both(model: Any, *feeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort

    want = ort.InferenceSession(model.SerializeToString()).run(None, {i.name: f for i, f in
                                                                     zip(model.graph.input, feeds)})[0]
    got = graphopt.compile(model, target="cpu")(*feeds)
    return np.asarray(got), want


def test_expand_to_batch_minus_one_folds_through_equal_and_where() -> None:
    """The TorchScript exporter writes `t.expand(batch, -1)` as Where(Equal(shape, -1), 1, shape): decided at
    import (a positive dim is never -1), so the Expand target is the symbolic [batch, 4]."""
    nodes = [h.make_node("Shape", ["x"], ["s"]), _const("zero", [0]),
             h.make_node("Gather", ["s", "zero"], ["b"], axis=0), _const("m1", [-1]),
             h.make_node("Concat", ["b", "m1"], ["shape"], axis=0),
             h.make_node("ConstantOfShape", ["two"], ["ones"], value=nh.from_array(np.array([1], np.int64))),
             _const("neg", -1), h.make_node("Mul", ["ones", "neg"], ["negs"]),
             h.make_node("Equal", ["shape", "negs"], ["eq"]), h.make_node("Where", ["eq", "ones", "shape"], ["tgt"]),
             h.make_node("Expand", ["row", "tgt"], ["y"])]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, ["batch", 3])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["batch", 4])],
                     initializer=[nh.from_array(np.arange(4, dtype=np.float32).reshape(1, 4), "row"),
                                  nh.from_array(np.array([2], np.int64), "two")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    graph = graphopt.import_onnx(m)
    assert [n.op.name for n in graph] == ["expand"] and graph.outputs[0].type.shape == ("batch", 4)
    for b in (1, 5):
        got, want = _run_both(m, np.zeros((b, 3), np.float32))
        np.testing.assert_array_equal(got, want)


def test_a_shape_used_as_data_is_materialized_from_the_bound_dims() -> None:
    """`batch_index * seq + arange(seq)` (Hugging Face's mask code): seq multiplies data, so it becomes a
    shape_tensor read at run time, and the result is right at every length."""
    nodes = [h.make_node("Shape", ["x"], ["shp"]), _const("one", 1),
             h.make_node("Gather", ["shp", "one"], ["seq"], axis=0), _const("zero", 0),
             h.make_node("Gather", ["shp", "zero"], ["batch"], axis=0),
             _const("step", 1), h.make_node("Range", ["zero", "batch", "step"], ["bi"]),
             h.make_node("Unsqueeze", ["bi", "ax1"], ["col"]), h.make_node("Mul", ["col", "seq"], ["m"]),
             h.make_node("Range", ["zero", "seq", "step"], ["pos"]), h.make_node("Add", ["m", "pos"], ["idx"]),
             h.make_node("Cast", ["idx"], ["y"], to=T.FLOAT)]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, ["batch", "seq"])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["batch", "seq"])],
                     initializer=[nh.from_array(np.array([1], np.int64), "ax1")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    assert "shape_tensor" in {n.op.name for n in graphopt.import_onnx(m)}
    for b, s in ((2, 16), (3, 5)):
        got, want = _run_both(m, np.zeros((b, s), np.float32))
        assert got.shape == (b, s)
        np.testing.assert_array_equal(got, want)


def test_flatten_at_the_last_axis_makes_a_column() -> None:
    m = h.make_model(h.make_graph([h.make_node("Flatten", ["x"], ["y"], axis=2)], "g",
                                  [h.make_tensor_value_info("x", T.FLOAT, ["batch", "seq"])],
                                  [h.make_tensor_value_info("y", T.FLOAT, ["batch*seq", 1])]),
                     opset_imports=[h.make_opsetid("", 17)])
    got, want = _run_both(m, np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(got, want)


# -- whole models from the TorchScript exporter ------------------------------------------------------------
def _model(family: str) -> torch.nn.Module:
    import transformers as Tr

    torch.manual_seed(0)
    if family == "bert":
        m = Tr.BertModel(Tr.BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=128))
    else:
        m = Tr.GPT2Model(Tr.GPT2Config(vocab_size=100, n_embd=64, n_layer=2, n_head=4, n_positions=128))

    class Hidden(torch.nn.Module):  # last_hidden_state only: no cache outputs to export
        def __init__(self) -> None:
            super().__init__()
            self.m = m.eval()

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.m(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state \
                if family == "gpt2" else self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    return Hidden().eval()


def _feeds(b: int, s: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(b * 100 + s)
    ids = torch.randint(0, 100, (b, s), generator=g)
    mask = torch.ones(b, s, dtype=torch.long)
    mask[0, -2:] = 0  # padding: the mask path must be right, not just present
    return ids, mask


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_legacy_export_with_dynamic_axes_compiles_once_and_serves_every_shape(family: str) -> None:
    import onnxruntime as ort

    model = _model(family)
    axes = {"batch": 0, "seq": 1}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, _feeds(2, 12), buf, dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask"], output_names=["hidden"],
                          dynamic_axes={n: {v: k for k, v in axes.items()} for n in
                                        ("input_ids", "attention_mask", "hidden")})
    proto = onnx.load_from_string(buf.getvalue())
    compiled = graphopt.compile(proto, target="cpu", pipeline="O3")
    assert [v.type.shape for v in compiled.graph.inputs] == [("batch", "seq")] * 2
    session = ort.InferenceSession(buf.getvalue())
    for b, s in ((2, 12), (1, 5), (3, 17)):
        ids, mask = _feeds(b, s)
        want = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        got = np.asarray(compiled(ids, mask))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)

    # the fusion passes see through the shape arithmetic: the same fused ops as the torch.export graph
    from torch.export import Dim

    batch, seq = Dim("batch"), Dim("seq", max=128)
    exported = graphopt.compile(model, _feeds(2, 12), dynamic_shapes=({0: batch, 1: seq},) * 2, pipeline="O3")
    fused = ("linear", "scaled_dot_product_attention", "layer_norm", "matmul", "softmax")
    count = lambda g: {op: Counter(n.op.name for n in g)[op] for op in fused}  # noqa: E731
    assert count(compiled.graph) == count(exported.graph)
    assert count(compiled.graph)["scaled_dot_product_attention"] == 2


def test_reference_interpreter_runs_the_legacy_graph_too() -> None:
    model = _model("bert")
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, _feeds(2, 6), buf, dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask"],
                          dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}})
    graph = graphopt.import_onnx(onnx.load_from_string(buf.getvalue()))
    ids, mask = _feeds(2, 9)
    with torch.no_grad():
        want = model(ids, mask).numpy()
    got = reference.run(graph, [ids.numpy(), mask.numpy()])[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("starts, ends, steps", [([-1], [-2**63], [-1]), ([-2], [0], [-2]), ([5], [1], [-1])])
def test_slice_with_negative_steps_over_a_symbolic_dim(starts: list[int], ends: list[int], steps: list[int]) -> None:
    inits = [nh.from_array(np.array(v, np.int64), k) for k, v in
             (("st", starts), ("en", ends), ("ax", [1]), ("sp", steps))]
    m = h.make_model(h.make_graph([h.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])], "g",
                                  [h.make_tensor_value_info("x", T.FLOAT, [2, "seq"])],
                                  [h.make_tensor_value_info("y", T.FLOAT, [2, "n"])], initializer=inits),
                     opset_imports=[h.make_opsetid("", 17)])
    for s in (6, 9):
        x = np.arange(2 * s, dtype=np.float32).reshape(2, s)
        got, want = _run_both(m, x)
        np.testing.assert_array_equal(got, want)


def _if_model(cond_from_shape: bool) -> Any:
    then = h.make_graph([h.make_node("Mul", ["x", "two"], ["t"])], "then", [],
                        [h.make_tensor_value_info("t", T.FLOAT, ["batch", 3])])
    other = h.make_graph([h.make_node("Sub", ["x", "two"], ["e"])], "else", [],
                         [h.make_tensor_value_info("e", T.FLOAT, ["batch", 3])])
    if cond_from_shape:  # `if x.shape[1] == 3` as exporters write it: decided at import
        pre = [h.make_node("Shape", ["x"], ["s"]), _const("one", 1), h.make_node("Gather", ["s", "one"], ["d"]),
               _const("three", 3), h.make_node("Equal", ["d", "three"], ["c"])]
    else:  # a run-time condition on the data
        pre = [h.make_node("ReduceSum", ["x"], ["sum"], keepdims=0), _const("zero", 0),
               h.make_node("Cast", ["zero"], ["fzero"], to=T.FLOAT), h.make_node("Greater", ["sum", "fzero"], ["c"])]
    g = h.make_graph(pre + [h.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, ["batch", 3])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["batch", 3])],
                     initializer=[nh.from_array(np.array(2.0, np.float32), "two")])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


@pytest.mark.parametrize("cond_from_shape", [True, False])
def test_onnx_if_folds_a_known_condition_and_selects_on_a_runtime_one(cond_from_shape: bool) -> None:
    m = _if_model(cond_from_shape)
    ops = {n.op.name for n in graphopt.import_onnx(m)}
    assert ("where" in ops) is (not cond_from_shape)
    for sign in (1.0, -1.0):
        got, want = _run_both(m, np.full((2, 3), sign, np.float32))
        np.testing.assert_array_equal(got, want)


def _reduce_with_axes_input() -> Any:
    g = h.make_graph([h.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, [2, 3, 4]), h.make_tensor_value_info("axes", T.INT64, [1])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["a", "b"])])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 18)])


def test_shape_arguments_from_inputs_name_the_inputs() -> None:
    from graphopt.errors import ShapeInputsNeeded

    with pytest.raises(ShapeInputsNeeded, match="reduce axes .* graph input\\(s\\) 'axes'") as e:
        graphopt.import_onnx(_reduce_with_axes_input())
    assert e.value.inputs == ["axes"]


def test_compile_specializes_on_shape_inputs_per_value_under_a_guard() -> None:
    from graphopt.specialize import SpecializingModel

    m = graphopt.compile(_reduce_with_axes_input(), target="cpu")
    assert isinstance(m, SpecializingModel) and m.needed == ["axes"]
    with pytest.raises(graphopt.GraphoptError, match="call it once"):
        _ = m.graph  # nothing compiled yet: no graph to show or save
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    for axis in (1, 2, 1, 0):
        np.testing.assert_array_equal(np.asarray(m(x, np.array([axis]))), x.sum(axis=axis))
    assert len(m.specializations) == 3  # axis 1 was compiled once and reused
    assert [v.name for v in m.graph.inputs] == ["x"]  # the latest specialization: axes became a constant


def test_a_runtime_roi_is_honoured_not_ignored() -> None:
    import onnxruntime as ort

    node = h.make_node("Resize", ["x", "roi", "scales"], ["y"], mode="linear",
                       coordinate_transformation_mode="tf_crop_and_resize")
    g = h.make_graph([node], "g", [h.make_tensor_value_info("x", T.FLOAT, [1, 1, 4, 4]),
                                   h.make_tensor_value_info("roi", T.FLOAT, [8])],
                     [h.make_tensor_value_info("y", T.FLOAT, [1, 1, 3, 3])],
                     initializer=[nh.from_array(np.array([1, 1, 0.75, 0.75], np.float32), "scales")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    compiled = graphopt.compile(m, target="reference")
    for roi in ([0, 0, 0.4, 0.6, 1, 1, 0.6, 0.8], [0, 0, 0, 0, 1, 1, 1, 1]):
        r = np.array(roi, np.float32)
        want = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x, "roi": r})[0]
        np.testing.assert_allclose(np.asarray(compiled(x, r)), want, rtol=1e-5, atol=1e-5)
