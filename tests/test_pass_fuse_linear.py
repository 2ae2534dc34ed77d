import numpy as np
import pytest
import torch

from helpers import check_pass

import graphopt
from graphopt.backends import get_backend
from graphopt.backends.cpu.kernels import linear_kernel, packed_from_ratios
from graphopt.backends.reference import random_inputs, run
from graphopt.ir import parse
from graphopt.passes import PassContext, PassManager


def test_matmul_by_constant_and_bias_become_linear() -> None:
    check_pass("fuse-linear,dce", """
graph @f(%x: f32[b,s,3]) {
  const @w: f32[3,2] = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
  const @bias: f32[2] = [0.5, 0.25]
  %0: f32[b,s,2] = matmul(%x, @w)
  %1: f32[b,s,2] = add(@bias, %0)
  return %1
}""", """
graph @f(%x: f32[b,s,3]) {
  const @wt: f32[2,3] = [[1.0, 3.0, 5.0], [2.0, 4.0, 6.0]]
  const @bias: f32[2] = [0.5, 0.25]
  %1: f32[b,s,2] = linear(%x, @wt, @bias)
  return %1
}""", rtol=1e-6)


def test_a_bias_shaped_1x1xN_is_flattened() -> None:
    check_pass("fuse-linear,dce", """
graph @f(%x: f32[4,3]) {
  const @w: f32[3,2] = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
  const @bias: f32[1,2] = [[0.5, 0.25]]
  %0: f32[4,2] = matmul(%x, @w)
  %1: f32[4,2] = add(%0, @bias)
  return %1
}""", """
graph @f(%x: f32[4,3]) {
  const @wt: f32[2,3] = [[1.0, 3.0, 5.0], [2.0, 4.0, 6.0]]
  const @bias: f32[2] = [0.5, 0.25]
  %1: f32[4,2] = linear(%x, @wt, @bias)
  return %1
}""", rtol=1e-6)


def test_rejections_say_why() -> None:
    g = parse("""
graph @f(%x: f32[4,3], %w: f32[3,2]) {
  const @w2: f32[3,2] = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
  const @rowbias: f32[4,1] = [[1.0], [2.0], [3.0], [4.0]]
  %0: f32[4,2] = matmul(%x, %w)
  %1: f32[4,2] = matmul(%x, @w2)
  %2: f32[4,2] = add(%1, @rowbias)
  %3: f32[4,2] = add(%0, %2)
  return %3
}""")
    inputs = random_inputs(g)
    want = run(g, inputs)
    ctx = PassContext(explain=True)
    PassManager.parse("fuse-linear,dce").run(g, ctx)
    assert sorted(n.op.name for n in g) == ["add", "add", "linear", "matmul"]  # bias per row: not a linear bias
    reasons = " | ".join(r.reason for r in ctx.rejections)
    assert "does not broadcast as one value per output feature" in reasons
    np.testing.assert_allclose(run(g, inputs)[0], want[0], rtol=1e-5)


def test_cpu_linear_matches_reference_whichever_kernel_wins() -> None:
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((96, 64)).astype(np.float32), rng.standard_normal(96).astype(np.float32)
    g = parse("graph @f(%x: f32[n,64]) {\n  const @w: f32[64,96] = external\n  const @b: f32[96] = external\n"
              "  %0: f32[n,96] = matmul(%x, @w)\n  %1: f32[n,96] = add(%0, @b)\n  return %1\n}",
              constants={"w": w.T.copy(), "b": b})
    PassManager.parse("fuse-linear,dce").run(g)
    exe = get_backend("cpu").compile(g)
    rows_from = linear_kernel(64, 96)
    assert rows_from in (None, 1, 16, 64, 256)
    if rows_from is not None:  # packed once in make(); rows below rows_from take F.linear at run time
        assert "rt.pack_linear_weight" in exe.source
    for rows in (1, 7, 130):
        x = rng.standard_normal((rows, 64)).astype(np.float32)
        np.testing.assert_allclose(exe(x)[0], run(g, [x])[0], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(exe(torch.from_numpy(x))[0].numpy(), x @ w.T + b, rtol=1e-4, atol=1e-4)


def test_packed_linear_choice_ignores_ties_and_needs_a_clear_win() -> None:
    # ratios are oneDNN / F.linear time at 1, 16, 64 and 256 rows
    assert packed_from_ratios([1.4, 0.75, 0.93, 1.03]) == 16  # a tie at 256 rows does not undo the win at 16
    assert packed_from_ratios([1.4, 0.75, 0.93, 1.2]) is None  # a clear loss at 256 rows does
    assert packed_from_ratios([1.02, 0.98, 1.01, 0.99]) is None  # all ties: F.linear, no packed copy
    assert packed_from_ratios([0.5, 0.6, 0.7, 0.8]) == 1
    assert packed_from_ratios([1.3, 1.2, 0.96, 0.9]) == 256  # 64 rows is only a tie: packing starts at 256


def test_activation_after_linear_joins_its_epilogue() -> None:
    check_pass("fuse-linear,dce", """
graph @f(%x: f32[4,3]) {
  const @w: f32[3,2] = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
  const @bias: f32[2] = [0.5, -0.25]
  %0: f32[4,2] = matmul(%x, @w)
  %1: f32[4,2] = add(%0, @bias)
  %2: f32[4,2] = gelu(%1) {approximate="tanh"}
  %3: f32[4,2] = relu(%2)
  return %3
}""", """
graph @f(%x: f32[4,3]) {
  const @wt: f32[2,3] = [[1.0, 3.0, 5.0], [2.0, 4.0, 6.0]]
  const @bias: f32[2] = [0.5, -0.25]
  %2: f32[4,2] = linear(%x, @wt, @bias) {activation="gelu_tanh"}
  %3: f32[4,2] = relu(%2)
  return %3
}""", rtol=1e-6)


def test_a_bias_after_an_activated_linear_is_not_its_bias() -> None:
    unchanged = """
graph @f(%x: f32[4,3]) {
  const @w: f32[2,3] = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
  const @bias: f32[2] = [0.5, -0.25]
  %0: f32[4,2] = linear(%x, @w) {activation="relu"}
  %1: f32[4,2] = add(%0, @bias)
  return %1
}"""
    check_pass("fuse-linear,dce", unchanged, unchanged)


def test_cpu_activated_linear_on_both_kernel_paths() -> None:
    rng = np.random.default_rng(1)
    w, b = rng.standard_normal((256, 128)).astype(np.float32), rng.standard_normal(256).astype(np.float32)
    for act in ("gelu", "gelu_tanh", "relu", "silu", "tanh"):
        g = parse("graph @f(%x: f32[n,128]) {\n  const @w: f32[256,128] = external\n  const @b: f32[256] = external\n"
                  f"  %0: f32[n,256] = linear(%x, @w, @b) {{activation=\"{act}\"}}\n  return %0\n}}",
                  constants={"w": w, "b": b})
        exe = get_backend("cpu").compile(g)
        for rows in (1, 300):  # below and above any measured packing threshold
            x = rng.standard_normal((rows, 128)).astype(np.float32)
            np.testing.assert_allclose(exe(x)[0], run(g, [x])[0], rtol=1e-4, atol=1e-4)


def test_export_layouts_around_a_linear_are_absorbed() -> None:
    # torch.export's x @ W over batch dims: expand(W) + batched matmul; and reshape → 2-D linear → reshape back.
    check_pass("fuse-linear,dce", """
graph @f(%x: f32[b,s,3]) {
  const @w: f32[3,2] = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
  const @v: f32[2,4] = [[1.0, 0.0, 2.0, 1.0], [0.5, 1.0, 0.0, -1.0]]
  const @bias: f32[4] = [0.5, 0.25, 0.0, 1.0]
  %0: f32[b,3,2] = expand(@w) {shape=[b, 3, 2]}
  %1: f32[b,s,2] = matmul(%x, %0)
  %2: f32["b*s",2] = reshape(%1) {shape=["b*s", 2]}
  %3: f32["b*s",4] = matmul(%2, @v)
  %4: f32["b*s",4] = add(%3, @bias)
  %5: f32[b,s,4] = reshape(%4) {shape=[b, s, 4]}
  %6: f32[b,s,4] = gelu(%5)
  %7: f32[b,s,2,2] = reshape(%6) {shape=[b, s, 2, 2]}
  return %7
}""", """
graph @f(%x: f32[b,s,3]) {
  const @wt: f32[2,3] = [[1.0, 3.0, 5.0], [2.0, 4.0, 6.0]]
  const @vt: f32[4,2] = [[1.0, 0.5], [0.0, 1.0], [2.0, 0.0], [1.0, -1.0]]
  const @bias: f32[4] = [0.5, 0.25, 0.0, 1.0]
  %1: f32[b,s,2] = linear(%x, @wt)
  %5: f32[b,s,4] = linear(%1, @vt, @bias) {activation="gelu"}
  %7: f32[b,s,2,2] = reshape(%5) {shape=[b, s, 2, 2]}
  return %7
}""", rtol=1e-6)


def test_an_expand_over_other_batch_dims_is_not_a_linear() -> None:
    g = parse("""
graph @f(%x: f32[1,5,3]) {
  const @w: f32[3,2] = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
  %0: f32[4,3,2] = expand(@w) {shape=[4, 3, 2]}
  %1: f32[4,5,2] = matmul(%x, %0)
  return %1
}""")
    ctx = PassContext(explain=True)
    PassManager.parse("fuse-linear").run(g, ctx)
    assert [n.op.name for n in g] == ["expand", "matmul"]
    assert any("expanded to batch dims [4], the input has [1]" in r.reason for r in ctx.rejections)


@pytest.mark.parametrize("pipeline", ["O1", "O2", "O3"])
def test_shared_parameters_stay_shared(pipeline: str) -> None:
    """New-user trial: ALBERT's shared layer was stored once per layer (0.63 MB of parameters, 6.4 MB artifact).
    Folding, fuse-linear and merge-parallel-linears each made a copy per use of one shared weight."""
    import transformers as T

    cfg = T.AlbertConfig(hidden_size=64, num_hidden_layers=6, num_attention_heads=2, intermediate_size=128,
                         vocab_size=100, embedding_size=32)
    model = T.AlbertModel(cfg).eval()
    ids = torch.randint(0, 100, (1, 16))
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    c = graphopt.compile(model, (ids,), pipeline=pipeline)
    assert sum(v.const.nbytes for v in c.graph.constants.values()) <= 1.05 * params
    np.testing.assert_allclose(c(ids)[0].detach().numpy(), model(ids).last_hidden_state.detach().numpy(),
                               atol=1e-5)


def test_a_linear_on_a_flattened_input_read_by_two_reshapes_runs_unflattened_and_merges() -> None:
    # ConvBERT through torch.export: the query projection runs on reshape(x, [b*s, in]) and two reshapes read it,
    # so linear-unflatten (one reader) never applied and merge-parallel-linears could not join it with the key.
    check_pass("fuse-linear,merge-parallel-linears,dce", """
graph @f(%x: f32[2,3,4]) {
  const @wq: f32[2,4] = [[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 2.0, 0.25]]
  const @wk: f32[2,4] = [[0.0, 1.0, -2.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
  %0: f32[6,4] = reshape(%x) {shape=[6, 4]}
  %1: f32[6,2] = linear(%0, @wq)
  %2: f32[2,3,2] = reshape(%1) {shape=[2, 3, 2]}
  %3: f32[2,3,2,1] = reshape(%1) {shape=[2, 3, 2, 1]}
  %4: f32[2,3,2] = linear(%x, @wk)
  return %2, %3, %4
}""", """
graph @f(%x: f32[2,3,4]) {
  const @wq: f32[4,4] = [[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 2.0, 0.25], [0.0, 1.0, -2.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
  %0: f32[2,3,4] = linear(%x, @wq)
  %1: f32[2,3,2], %2: f32[2,3,2] = split(%0) {axis=-1, sizes=[2, 2]}
  %3: f32[2,3,2,1] = reshape(%1) {shape=[2, 3, 2, 1]}
  return %1, %3, %2
}""", rtol=1e-6)


def test_a_chain_of_linears_on_flattened_rows_sinks_the_flattening() -> None:
    # MobileBERT's bottleneck: linear(reshape(x)) read by another linear; both end up on [b, s, ...]
    g = check_pass("fuse-linear,dce", """
graph @f(%x: f32[2,3,4]) {
  const @w1: f32[2,4] = [[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 2.0, 0.25]]
  const @w2: f32[3,2] = [[1.0, 2.0], [3.0, 4.0], [-1.0, 0.5]]
  %0: f32[6,4] = reshape(%x) {shape=[6, 4]}
  %1: f32[6,2] = linear(%0, @w1)
  %2: f32[6,3] = linear(%1, @w2)
  %3: f32[2,3,3] = reshape(%2) {shape=[2, 3, 3]}
  return %3
}""", """
graph @f(%x: f32[2,3,4]) {
  const @w1: f32[2,4] = [[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 2.0, 0.25]]
  const @w2: f32[3,2] = [[1.0, 2.0], [3.0, 4.0], [-1.0, 0.5]]
  %0: f32[2,3,2] = linear(%x, @w1)
  %1: f32[2,3,3] = linear(%0, @w2)
  return %1
}""", rtol=1e-6)
    assert [n.op.name for n in g] == ["linear", "linear"]
