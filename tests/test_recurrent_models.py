"""Recurrent models as users have them: bidirectional, stacked nn.LSTM/GRU/RNN through torch.export, and the
ONNX LSTM/GRU/RNN ops (forward, reverse, bidirectional) that older ONNX exports contain — each on the
reference, cpu and onnxruntime targets, against eager PyTorch or ONNX Runtime."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import graphopt
from graphopt.errors import UnsupportedOpError

KINDS = [(torch.nn.LSTM, {}), (torch.nn.GRU, {}), (torch.nn.RNN, {}), (torch.nn.RNN, {"nonlinearity": "relu"})]
IDS = ["lstm", "gru", "rnn-tanh", "rnn-relu"]


def _outputs(out: Any) -> list[np.ndarray]:
    flat = [out[0], *(out[1] if isinstance(out[1], tuple) else [out[1]])] if isinstance(out, tuple) else list(out)
    return [np.asarray(o.detach() if isinstance(o, torch.Tensor) else o) for o in flat]


@pytest.mark.parametrize("target", ["reference", "cpu", "onnxruntime"])
@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_bidirectional_stacked_recurrent_layers_from_torch(kind: Any, target: str) -> None:
    cls, kw = kind
    torch.manual_seed(0)
    m = cls(4, 6, num_layers=2, bidirectional=True, batch_first=True, **kw).eval()
    x = torch.randn(3, 7, 4)
    compiled = graphopt.compile(m, (x,), target=target)
    for got, want in zip(_outputs(compiled(x)), _outputs(m(x))):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("kind", KINDS[:3], ids=IDS[:3])
def test_onnx_recurrent_ops_from_the_torchscript_exporter(kind: Any, bidirectional: bool) -> None:
    import onnxruntime as ort

    cls, kw = kind
    torch.manual_seed(1)
    m = cls(4, 6, num_layers=2, bidirectional=bidirectional, batch_first=True, **kw).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.randn(3, 7, 4),), buf, dynamo=False, opset_version=17, input_names=["x"],
                          dynamic_axes={"x": {0: "batch", 1: "seq"}})
    proto = onnx.load_from_string(buf.getvalue())
    assert cls.__name__ in {n.op_type for n in proto.graph.node}
    session = ort.InferenceSession(buf.getvalue())
    compiled = graphopt.compile(proto, target="cpu")
    for b, s in ((2, 9), (1, 3)):  # one artifact, every batch and length
        x = np.random.default_rng(s).standard_normal((b, s, 4)).astype(np.float32)
        for got, want in zip(_outputs(compiled(x)), session.run(None, {"x": x})):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _onnx_gru(direction: str, linear_before_reset: int = 1) -> Any:
    rng = np.random.default_rng(0)
    dirs = 2 if direction == "bidirectional" else 1
    w = rng.standard_normal((dirs, 9, 4)).astype(np.float32)
    r = rng.standard_normal((dirs, 9, 3)).astype(np.float32)
    b = rng.standard_normal((dirs, 18)).astype(np.float32)
    node = h.make_node("GRU", ["x", "w", "r", "b"], ["y", "yh"], hidden_size=3, direction=direction,
                       linear_before_reset=linear_before_reset)
    g = h.make_graph([node], "g", [h.make_tensor_value_info("x", T.FLOAT, ["seq", 2, 4])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["seq", dirs, 2, 3]),
                      h.make_tensor_value_info("yh", T.FLOAT, [dirs, 2, 3])],
                     initializer=[nh.from_array(w, "w"), nh.from_array(r, "r"), nh.from_array(b, "b")])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


@pytest.mark.parametrize("target", ["reference", "cpu", "onnxruntime"])
@pytest.mark.parametrize("linear_before_reset", [1, 0])  # 0: ONNX's default and Keras' GRU; 1: torch's
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_onnx_gru_in_every_direction(direction: str, linear_before_reset: int, target: str) -> None:
    import onnxruntime as ort

    m = _onnx_gru(direction, linear_before_reset)
    x = np.random.default_rng(5).standard_normal((6, 2, 4)).astype(np.float32)
    want = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})
    got = graphopt.compile(m, target=target)(x)
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-4, atol=1e-5)


def test_what_the_ir_ops_do_not_compute_is_refused_by_name() -> None:
    m = _onnx_gru("forward")
    m.graph.node[0].attribute.append(h.make_attribute("clip", 2.0))
    with pytest.raises(UnsupportedOpError, match="GRU with clip"):
        graphopt.import_onnx(m)
