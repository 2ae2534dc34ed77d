import numpy as np
import pytest
import torch

from helpers import check_pass, check_semantics

import graphopt
from graphopt.backends import get_backend
from graphopt.backends.cpu import delegate, kernels
from graphopt.backends.reference import run
from graphopt.ir import parse
from graphopt.passes import PassContext, PassManager

BLOCK = """
graph @f(%x: f32[1,4,6,6]) {{
  const @w1: f32[4,4,3,3] = external
  const @b1: f32[4] = external
  const @w2: f32[4,4,3,3] = external
  %0: f32[1,4,6,6] = conv(%x, @w1, @b1) {{pads=[1, 1, 1, 1]}}
  %1: f32[1,4,6,6] = relu(%0)
  %2: f32[1,4,6,6] = conv(%1, @w2) {{pads=[1, 1, 1, 1]}}
  %3: f32[1,4,6,6] = add({skip_first})
  %4: f32[1,4,6,6] = {act}(%3)
  return %4
}}"""


def _block(act: str = "relu", skip_first: bool = False) -> graphopt.ir.Graph:
    rng = np.random.default_rng(0)
    consts = {"w1": rng.standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.3,
              "b1": rng.standard_normal(4).astype(np.float32),
              "w2": rng.standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.3}
    return parse(BLOCK.format(act=act, skip_first="%x, %2" if skip_first else "%2, %x"), constants=consts)


@pytest.mark.parametrize("skip_first", [False, True])
def test_residual_block_becomes_two_convs(skip_first: bool) -> None:
    g = _block(skip_first=skip_first)
    x = np.random.default_rng(1).standard_normal((1, 4, 6, 6)).astype(np.float32)
    want = run(g, [x])[0]
    stats = PassManager.parse("fuse-conv,dce").run(g).records[0].stats
    assert stats["rule:conv-residual"] == 1 and stats["rule:conv-relu-3"] == 1 and stats["rule:conv-relu-4"] == 1
    convs = list(g)
    assert [(len(n.inputs), n.attrs["activation"]) for n in convs] == [(3, "relu"), (4, "relu")]
    assert convs[1].inputs[3] is g.inputs[0]
    np.testing.assert_allclose(run(g, [x])[0], want, rtol=1e-6, atol=1e-6)


def test_activation_and_bias_text_form() -> None:
    check_pass("fuse-conv,dce", """
graph @f(%x: f32[1,1,2,2]) {
  const @w: f32[2,1,1,1] = [[[[1.0]]], [[[-2.0]]]]
  const @b: f32[2] = [0.5, 0.25]
  %0: f32[1,2,2,2] = conv(%x, @w, @b)
  %1: f32[1,2,2,2] = silu(%0)
  return %1
}""", """
graph @f(%x: f32[1,1,2,2]) {
  const @w: f32[2,1,1,1] = [[[[1.0]]], [[[-2.0]]]]
  const @b: f32[2] = [0.5, 0.25]
  %1: f32[1,2,2,2] = conv(%x, @w, @b) {activation="silu"}
  return %1
}""", rtol=1e-6)


def test_a_broadcast_add_is_not_a_residual() -> None:
    g = parse("""
graph @f(%x: f32[1,1,2,2], %s: f32[1,2,1,1]) {
  const @w: f32[2,1,1,1] = [[[[1.0]]], [[[-2.0]]]]
  %0: f32[1,2,2,2] = conv(%x, @w)
  %1: f32[1,2,2,2] = add(%0, %s)
  %2: f32[1,2,2,2] = relu(%1)
  return %2
}""")
    ctx = PassContext(explain=True)
    PassManager.parse("fuse-conv,dce").run(g, ctx)
    assert [n.op.name for n in g] == ["conv", "add", "relu"]
    assert any("a broadcast is no residual" in r.reason for r in ctx.rejections)


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("act", ["relu", "gelu", "tanh"])
def test_cpu_fused_conv_matches_reference_on_both_kernel_paths(monkeypatch: pytest.MonkeyPatch, packed: bool,
                                                                act: str) -> None:
    monkeypatch.setattr(kernels, "conv_kernel", lambda *a, **k: packed)
    g = _block(act)
    PassManager.parse("fuse-conv,dce").run(g)
    with delegate.torch_only():  # torch's kernels (the ONNX Runtime race is tests/test_cpu_delegate.py's)
        exe = get_backend("cpu").compile(g)
    assert ("rt.pack_conv_weight" in exe.source) == packed
    x = np.random.default_rng(2).standard_normal((1, 4, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(exe(x)[0], run(g, [x])[0], rtol=1e-4, atol=1e-4)


def test_a_symbolic_batch_runs_the_packed_conv_at_every_batch_and_is_measured_at_eight(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A packed weight's layout does not depend on the batch: a dynamic-batch conv runs oneDNN's packed kernel
    (F.conv2d re-lays the weight out on every call), measured at a batch of 8."""
    asked = []
    monkeypatch.setattr(kernels, "conv_kernel", lambda size, *a, **k: asked.append(size) or True)
    rng = np.random.default_rng(0)
    consts = {"w1": rng.standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.3,
              "b1": rng.standard_normal(4).astype(np.float32),
              "w2": rng.standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.3}
    g = parse(BLOCK.format(act="relu", skip_first="%2, %x").replace("[1,4,6,6]", "[n,4,6,6]"), constants=consts)
    PassManager.parse("fuse-conv,dce").run(g)
    with delegate.torch_only():
        exe = get_backend("cpu").compile(g)
    assert exe.source.count("rt.pack_conv_weight") == 2 and "F.conv2d" not in exe.source
    assert {tuple(s) for s in asked} == {(8, 4, 6, 6)}
    for batch in (1, 3, 17):
        x = rng.standard_normal((batch, 4, 6, 6)).astype(np.float32)
        np.testing.assert_allclose(exe(x)[0], run(g, [x])[0], rtol=1e-4, atol=1e-4)


def test_conv_kernel_choice_is_a_measurement() -> None:
    kernels.conv_kernel.cache_clear()
    assert kernels.conv_kernel((1, 8, 10, 10), (8, 8, 3, 3), (1, 1), (1, 1), (1, 1), 1) in (True, False)
    assert kernels.conv_kernel((1, 8, 10), (8, 8, 3), (1,), (1,), (1,), 1) is False  # 1-D: no packed kernel


def test_resnet_through_O3_matches_eager() -> None:
    import transformers as T

    torch.manual_seed(0)
    cfg = T.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic", num_labels=3)
    model = T.ResNetForImageClassification(cfg).eval()
    x = torch.randn(2, 3, 32, 32)
    compiled = graphopt.compile(model, (x,), pipeline="O3", target="cpu")
    ops = [n.op.name for n in compiled.graph]
    assert "relu" not in ops and "add" not in ops and "batch_norm" not in ops
    with torch.no_grad():
        want = model(x).logits.numpy()
    got = compiled(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


@pytest.mark.parametrize("order", ["%0, %1", "%1, %0"])
def test_residual_that_is_another_conv_keeps_each_convs_bias(order: str) -> None:
    """Fuzz case: add(conv_a, conv_b) fused into conv_b (the one without bias) must not take conv_a's bias and
    attributes."""
    check_semantics("fuse-conv,dce", f"""
graph @f(%x: f32[1,2,4,4]) {{
  const @wa: f32[2,2,1,1] = [[[[1.0]], [[0.5]]], [[[0.0]], [[-1.0]]]]
  const @ba: f32[2] = [10.0, -10.0]
  const @wb: f32[2,2,3,3] = external
  %0: f32[1,2,4,4] = conv(%x, @wa, @ba)
  %1: f32[1,2,2,2] = conv(%x, @wb)
  %2: f32[1,2,4,4] = add({order})
  return %2
}}""".replace("@wb: f32[2,2,3,3] = external", "@wb: f32[2,2,1,1] = [[[[2.0]], [[0.0]]], [[[1.0]], [[1.0]]]]")
     .replace("f32[1,2,2,2]", "f32[1,2,4,4]"))
