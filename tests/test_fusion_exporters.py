"""The whole O3 fusion pipeline must find the same ops whichever exporter produced the graph: torch.export
(core ATen) or torch.onnx, for transformers models with attn_implementation "eager" and "sdpa", and for a CNN.
A fusion that silently stops matching when the exporter changes is what this file catches."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

import graphopt
from graphopt.backends import get_backend
from graphopt.passes import PassManager

from test_pass_fuse_attention import _inputs, _model

# the ops fusion creates, and the ones it should leave none of
FUSED = ("linear", "scaled_dot_product_attention", "layer_norm", "rms_norm", "conv", "split")
LEFT_OVER = ("softmax", "matmul", "batch_norm", "relu", "gelu", "erf", "tanh", "rsqrt", "sqrt",
             "sigmoid")


def _resnet():  # type: ignore[no-untyped-def]
    import transformers as T

    torch.manual_seed(0)
    cfg = T.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=3)
    return T.ResNetForImageClassification(cfg).eval(), {"pixel_values": torch.randn(1, 3, 32, 32)}


def _case(name: str):  # type: ignore[no-untyped-def]
    if name == "resnet":
        return _resnet()
    family, impl = name.split("-")
    return _model(family, impl), _inputs(family)


def _signature(graph: graphopt.ir.Graph) -> dict[str, int]:
    counts = Counter(n.op.name for n in graph)
    return {op: counts[op] for op in FUSED + LEFT_OVER if counts[op]}


@pytest.mark.parametrize("name", ["bert-eager", "bert-sdpa", "gpt2-eager", "gpt2-sdpa", "llama-sdpa", "resnet"])
def test_torch_export_and_onnx_export_fuse_alike(name: str) -> None:
    model, kwargs = _case(name)
    from_torch = graphopt.to_graph(model, (), example_kwargs=kwargs)
    proto = torch.onnx.export(model, tuple(kwargs.values()), input_names=list(kwargs), dynamo=True,
                              verbose=False).model_proto
    from_onnx = graphopt.import_onnx(proto)
    sigs = []
    feeds = [kwargs[v.name].numpy() for v in from_onnx.inputs]
    with torch.no_grad():
        out = model(**kwargs)
    want = (out.logits if hasattr(out, "logits") else out.last_hidden_state).numpy()
    for graph in (from_torch, from_onnx):
        PassManager.parse("O3").run(graph)
        sigs.append(_signature(graph))
        got = get_backend("cpu").compile(graph)(*feeds)[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
    assert sigs[0] == sigs[1], f"torch.export → {sigs[0]}, torch.onnx → {sigs[1]}"
    assert not any(op in sigs[0] for op in LEFT_OVER), f"unfused ops left: {sigs[0]}"
