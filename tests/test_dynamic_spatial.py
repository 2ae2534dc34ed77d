"""Convolution, pooling and transposed convolution over symbolic spatial sizes (audio: f32[batch, 1, seq];
variable-resolution vision), compiled once and run at several lengths on every target."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.export import Dim

import graphopt
from graphopt.ir import parse


class Audio(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.depthwise = torch.nn.Conv1d(4, 8, 5, padding=2, groups=4)  # ConvBERT's separable conv over seq
        self.down = torch.nn.Conv1d(8, 8, 4, stride=2, padding=1)
        self.up = torch.nn.ConvTranspose1d(8, 4, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(torch.relu(self.down(self.depthwise(x))))


@pytest.mark.parametrize("target", ["reference", "cpu", "onnxruntime"])
def test_one_compile_serves_every_length(target: str) -> None:
    m = Audio().eval()
    # (pooling is left out: torch.export guards `seq // 2` to the example's value; it is covered in IR text below)
    compiled = graphopt.compile(m, (torch.randn(2, 4, 40),), target=target,
                                dynamic_shapes=({0: Dim("batch"), 2: Dim("seq", min=8, max=4096)},))
    assert not isinstance(compiled.graph.outputs[0].type.shape[2], int)
    for n in (16, 41, 164):
        x = torch.randn(3, 4, n)
        with torch.no_grad():
            want = m(x).numpy()
        np.testing.assert_allclose(np.asarray(compiled(x)), want, rtol=1e-4, atol=1e-5)


def test_symbolic_window_arithmetic_in_ir_text() -> None:
    g = parse("""
graph @f(%x: f32[1,2,seq], %w: f32[3,2,5]) {
  %y: f32[1,3,"floor(seq/2-2)+1"] = conv(%x, %w) {strides=[2], pads=[0, 0], dilations=[1]}
  return %y
}
""")
    run = graphopt.compile(g, target="cpu")
    for n in (9, 20):
        assert np.asarray(run(np.ones((1, 2, n), np.float32), np.ones((3, 2, 5), np.float32))).shape == \
            (1, 3, (n - 5) // 2 + 1)


@pytest.mark.parametrize("target", ["reference", "cpu", "onnxruntime"])
def test_pooling_over_a_symbolic_length(target: str) -> None:
    g = parse("""
graph @f(%x: f32[1,2,seq]) {
  %y: f32[1,2,"floor(seq/2-1/2)+1"] = max_pool(%x) {kernel=[3], strides=[2], pads=[1, 1], dilations=[1]}
  %z: f32[1,2,"floor(seq/2-1/2)+1"] = avg_pool(%x) {kernel=[3], strides=[2], pads=[1, 1]}
  return %y, %z
}
""")
    run = graphopt.compile(g, target=target)
    for n in (9, 20):
        x = np.random.default_rng(n).standard_normal((1, 2, n)).astype(np.float32)
        t = torch.from_numpy(x)
        want = [torch.nn.functional.max_pool1d(t, 3, 2, 1).numpy(), torch.nn.functional.avg_pool1d(t, 3, 2, 1).numpy()]
        for got, w in zip(run(x), want):
            np.testing.assert_allclose(np.asarray(got), w, rtol=1e-5, atol=1e-6)


def test_ceil_mode_pooling_over_a_symbolic_dim_is_refused_with_the_reason() -> None:
    from graphopt.ir import DType, Graph, TensorType

    g = Graph("f")
    x = g.add_input("x", TensorType(DType.F32, (1, 2, "seq")))
    with pytest.raises(Exception, match="ceil_mode pooling needs static sizes"):
        g.add("max_pool", [x], {"kernel": [2], "strides": [2], "pads": [0, 0], "ceil_mode": True})


class Decoder(torch.nn.Module):
    """A variable-resolution decoder: upsampling whose output size follows the input's."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.nn.functional.interpolate(self.conv(x), scale_factor=2, mode="bilinear")
        return torch.nn.functional.interpolate(y, scale_factor=2, mode="nearest")


@pytest.mark.parametrize("target", ["reference", "cpu", "onnxruntime"])
def test_interpolation_over_symbolic_height_and_width(target: str) -> None:
    m = Decoder().eval()
    dims = {2: Dim("h", min=4, max=512), 3: Dim("w", min=4, max=512)}
    compiled = graphopt.compile(m, (torch.randn(1, 3, 12, 10),), target=target, dynamic_shapes=(dims,))
    assert [n.op.name for n in compiled.graph].count("interpolate") == 2
    assert not isinstance(compiled.graph.outputs[0].type.shape[2], int)
    for h, w in ((8, 8), (13, 21), (40, 6)):
        x = torch.randn(1, 3, h, w)
        with torch.no_grad():
            want = m(x).numpy()
        np.testing.assert_allclose(np.asarray(compiled(x)), want, rtol=1e-4, atol=1e-5)


def test_legacy_onnx_resize_over_symbolic_height_and_width(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import warnings

    import onnxruntime as ort

    m = Decoder().eval()
    path = tmp_path / "decoder.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.randn(1, 3, 12, 10),), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "y": {0: "n", 2: "h2", 3: "w2"}})
    compiled = graphopt.compile(str(path), target="cpu")
    sess = ort.InferenceSession(str(path))
    for shape in ((1, 3, 8, 8), (2, 3, 13, 21)):
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        np.testing.assert_allclose(np.asarray(compiled(x)), sess.run(None, {"x": x})[0], rtol=1e-4, atol=1e-5)


def test_onnx_resize_of_an_expression_dim_scales_the_whole_expression() -> None:
    # after a Pad the height is h+2; resizing by 2 gives 2*(h+2), not 2*h+2
    import onnxruntime as ort
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"]),
             helper.make_node("Resize", ["p", "", "scales"], ["y"], mode="nearest",
                              coordinate_transformation_mode="asymmetric", nearest_mode="floor")]
    inits = [helper.make_tensor("pads", TensorProto.INT64, [8], [0, 0, 1, 1, 0, 0, 1, 1]),
             helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, "h", "w"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, "h2", "w2"])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    compiled = graphopt.compile(m, target="cpu")
    x = np.random.default_rng(0).standard_normal((1, 2, 5, 3)).astype(np.float32)
    want = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(np.asarray(compiled(x)), want)
