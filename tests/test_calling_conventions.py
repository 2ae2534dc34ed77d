"""The calling conventions users reach for, and the names they get back (new-user trial)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import graphopt


@pytest.fixture(scope="module")
def bert() -> torch.nn.Module:
    import transformers as T

    cfg = T.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       vocab_size=100, max_position_embeddings=32)
    return T.BertModel(cfg).eval()


def test_dict_and_bare_tensor_example_inputs(bert: torch.nn.Module) -> None:
    ids = torch.randint(0, 100, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    want = bert(input_ids=ids, attention_mask=mask).last_hidden_state
    c = graphopt.compile(bert, {"input_ids": ids, "attention_mask": mask})
    np.testing.assert_allclose(c({"input_ids": ids, "attention_mask": mask})[0].numpy(), want.detach().numpy(),
                               atol=1e-5)
    bare = graphopt.compile(bert, ids)
    np.testing.assert_allclose(bare(ids)[0].numpy(), bert(ids).last_hidden_state.detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("extra", [{"return_dict": False}, {"attention_mask": None}, {"output_hidden_states": True}])
def test_constants_in_the_call_are_specialized(bert: torch.nn.Module, extra: dict) -> None:  # type: ignore[type-arg]
    """Was: KeyError: False inside the torch frontend."""
    ids = torch.randint(0, 100, (2, 8))
    c = graphopt.compile(bert, example_kwargs={"input_ids": ids, **extra})
    assert [v.name for v in c.graph.inputs] == ["input_ids"]
    want = bert(input_ids=ids, **extra)
    np.testing.assert_allclose(c(ids)[0].numpy(), want[0].detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("target", ["cpu", "onnxruntime", "reference"])
def test_output_and_weight_names_survive_every_pass_and_target(bert: torch.nn.Module, target: str) -> None:
    """Was: `last_hidden_state` came back as `447`, ONNX output `y` as `5`, fused weights as `c_17`."""
    c = graphopt.compile(bert, (torch.randint(0, 100, (2, 8)),), pipeline="O3", target=target)
    assert [v.name for v in c.graph.outputs] == ["last_hidden_state", "pooler_output"]
    linear_weights = [n.inputs[1].name for n in c.graph if n.op.name == "linear"]
    assert linear_weights and all("weight" in name for name in linear_weights), linear_weights

    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Neg", ["h"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    c = graphopt.compile(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), target=target,
                         pipeline="O3")
    assert [v.name for v in c.graph.outputs] == ["y"]
