"""fuse-layernorm, fuse-rmsnorm and fuse-gelu: the decomposed forms exporters emit, and what is left alone."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from helpers import check_pass

import graphopt
from graphopt.backends.reference import run
from graphopt.passes import PassContext, PassManager

LN = """
graph @f(%x: f32[2,3,4]) {{
  const @two: f32[] = 2.0
  const @eps: f32[] = 1e-5
  const @g: f32[4] = [1.0, 2.0, 0.5, -1.0]
  const @b: f32[4] = [0.0, 0.1, 0.2, 0.3]
  %0: f32[2,3,1] = reduce_mean(%x) {{axes=[{axes}], keepdims=true}}
  %1: f32[2,3,4] = sub(%x, %0)
  %2: f32[2,3,4] = {square}
  %3: f32[2,3,1] = reduce_mean(%2) {{axes=[{axes}], keepdims=true}}
  %4: f32[2,3,1] = add(%3, @eps)
  %5: f32[2,3,1] = rsqrt(%4)
  %6: f32[2,3,4] = mul(%1, %5)
  %7: f32[2,3,4] = mul(%6, @g)
  %8: f32[2,3,4] = add(@b, %7)
  return %8
}}"""


@pytest.mark.parametrize("square", ["pow(%1, @two)", "mul(%1, %1)"])
def test_layernorm_with_affine_fuses(square: str) -> None:
    check_pass("fuse-layernorm,dce", LN.format(axes="-1", square=square), """
graph @f(%x: f32[2,3,4]) {
  const @g: f32[4] = [1.0, 2.0, 0.5, -1.0]
  const @b: f32[4] = [0.0, 0.1, 0.2, 0.3]
  %8: f32[2,3,4] = layer_norm(%x, @g, @b) {axis=2, eps=1e-05}
  return %8
}""", rtol=1e-5)


def test_layernorm_over_a_middle_axis_is_rejected_with_a_reason() -> None:
    text = LN.format(axes="1", square="mul(%1, %1)").replace("f32[2,3,1]", "f32[2,1,4]")
    g = graphopt.ir.parse(text)
    ctx = PassContext(explain=True)
    PassManager.parse("fuse-layernorm").run(g, ctx)
    assert "layer_norm" not in {n.op.name for n in g}
    assert any("not the trailing axes" in r.reason for r in ctx.rejections)


def test_rmsnorm_from_llama_fuses_and_matches_eager() -> None:
    import transformers as T

    T.logging.set_verbosity_error()
    torch.manual_seed(0)
    cfg = T.LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                        intermediate_size=64, vocab_size=64, max_position_embeddings=64, use_cache=False)
    model = T.LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 64, (2, 9))
    compiled = graphopt.compile(model, (ids,), pipeline="O2")
    ops = [n.op.name for n in compiled.graph]
    assert ops.count("rms_norm") == 5 and "rsqrt" not in ops  # 2 per layer + the final norm
    with torch.no_grad():
        want = model(ids).logits.numpy()
    np.testing.assert_allclose(compiled(ids).numpy(), want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


def _onnx_gelu_ln_model() -> onnx.ModelProto:
    """The shape older torch.onnx exports give a BERT MLP: decomposed LayerNorm, then erf GELU."""
    c = lambda name, v: helper.make_tensor(name, TensorProto.FLOAT, [], [v])  # noqa: E731
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[-1]),
        helper.make_node("Sub", ["x", "m"], ["d"]),
        helper.make_node("Pow", ["d", "two"], ["d2"]),
        helper.make_node("ReduceMean", ["d2"], ["v"], axes=[-1]),
        helper.make_node("Add", ["v", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["s"]),
        helper.make_node("Div", ["d", "s"], ["n"]),
        helper.make_node("Mul", ["n", "gamma"], ["ng"]),
        helper.make_node("Add", ["ng", "beta"], ["ln"]),
        helper.make_node("Div", ["ln", "r2"], ["h"]),
        helper.make_node("Erf", ["h"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["e1"]),
        helper.make_node("Mul", ["ln", "e1"], ["g"]),
        helper.make_node("Mul", ["g", "half"], ["y"]),
    ]
    rng = np.random.default_rng(0)
    inits = [c("two", 2.0), c("eps", 1e-12), c("r2", 1.4142135), c("one", 1.0), c("half", 0.5),
             helper.make_tensor("gamma", TensorProto.FLOAT, [8], rng.standard_normal(8).tolist()),
             helper.make_tensor("beta", TensorProto.FLOAT, [8], rng.standard_normal(8).tolist())]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_onnx_decomposed_layernorm_and_gelu_fuse() -> None:
    original = graphopt.import_onnx(_onnx_gelu_ln_model())
    graph = original.copy()
    PassManager.parse("O2").run(graph)
    assert [n.op.name for n in graph] == ["layer_norm", "gelu"]
    x = np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32)
    np.testing.assert_allclose(run(graph, [x])[0], run(original, [x])[0], rtol=1e-5, atol=1e-5)


def test_gelu_tanh_form_fuses() -> None:
    check_pass("fuse-gelu,dce", """
graph @f(%x: f32[6]) {
  const @three: f32[] = 3.0
  const @k: f32[] = 0.044715
  const @c: f32[] = 0.7978845608
  const @one: f32[] = 1.0
  const @half: f32[] = 0.5
  %0: f32[6] = pow(%x, @three)
  %1: f32[6] = mul(@k, %0)
  %2: f32[6] = add(%x, %1)
  %3: f32[6] = mul(%2, @c)
  %4: f32[6] = tanh(%3)
  %5: f32[6] = add(%4, @one)
  %6: f32[6] = mul(%x, @half)
  %7: f32[6] = mul(%6, %5)
  return %7
}""", """
graph @f(%x: f32[6]) {
  %7: f32[6] = gelu(%x) {approximate="tanh"}
  return %7
}""", rtol=1e-5)


def test_a_wrong_constant_is_not_gelu() -> None:
    g = graphopt.ir.parse("""
graph @f(%x: f32[4]) {
  const @r2: f32[] = 1.5
  const @one: f32[] = 1.0
  const @half: f32[] = 0.5
  %0: f32[4] = div(%x, @r2)
  %1: f32[4] = erf(%0)
  %2: f32[4] = add(%1, @one)
  %3: f32[4] = mul(%x, %2)
  %4: f32[4] = mul(%3, @half)
  return %4
}""")
    ctx = PassContext(explain=True)
    PassManager.parse("fuse-gelu").run(g, ctx)
    assert "gelu" not in {n.op.name for n in g}
    assert any("is not 1.41421" in r.reason for r in ctx.rejections)


@pytest.mark.parametrize("inverse", ["div(@one, %s)", "reciprocal(%s)"])
def test_rmsnorm_as_the_torchscript_exporter_writes_rsqrt_fuses(inverse: str) -> None:
    """torch.rsqrt exported by the TorchScript exporter is Div(1, Sqrt(...)): the same RMSNorm."""
    import numpy as np

    from graphopt.backends import reference
    from graphopt.ir import parse
    from graphopt.passes import PassManager

    inv = inverse % "%3"
    g = parse(f"""graph @f(%x: f32[2,4]) {{
  const @two: f32[] = 2.0
  const @eps: f32[] = 1e-6
  const @one: f32[] = 1.0
  %0: f32[2,4] = pow(%x, @two)
  %1: f32[2,1] = reduce_mean(%0) {{axes=[-1], keepdims=true}}
  %2: f32[2,1] = add(%1, @eps)
  %3: f32[2,1] = sqrt(%2)
  %4: f32[2,1] = {inv}{' {rounding_mode="none"}' if inv.startswith('div') else ''}
  %5: f32[2,4] = mul(%x, %4)
  return %5
}}""")
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    want = reference.run(g, [x])[0]
    PassManager.parse("fuse-rmsnorm,dce").run(g)
    assert [n.op.name for n in g] == ["rms_norm"]
    np.testing.assert_allclose(reference.run(g, [x])[0], want, rtol=1e-5)
