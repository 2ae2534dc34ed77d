"""fuse-attention against what real exporters produce: torch.export (core ATen) and torch.onnx, for transformers
models with attn_implementation "eager" and "sdpa", plus grouped-query attention; and the rejection reasons."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import check_semantics

import graphopt
from graphopt.backends import get_backend
from graphopt.backends.reference import run
from graphopt.ir import parse
from graphopt.passes import PassContext, PassManager


def _model(family: str, impl: str):  # type: ignore[no-untyped-def]
    import transformers as T

    T.logging.set_verbosity_error()
    torch.manual_seed(0)
    if family == "bert":
        cfg = T.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                           vocab_size=64, max_position_embeddings=64, attn_implementation=impl)
        return T.BertModel(cfg).eval()
    if family == "gpt2":
        cfg = T.GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=64, n_positions=64, use_cache=False,
                           attn_implementation=impl)
        return T.GPT2LMHeadModel(cfg).eval()
    cfg = T.LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                        intermediate_size=64, vocab_size=64, max_position_embeddings=64, use_cache=False,
                        attn_implementation=impl)
    return T.LlamaForCausalLM(cfg).eval()


def _inputs(family: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 64, (2, 12), generator=g)
    if family != "bert":
        return {"input_ids": ids}
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 8:] = 0  # padding: a real additive mask
    return {"input_ids": ids, "attention_mask": mask}


def _fuse(graph, layers: int = 2):  # type: ignore[no-untyped-def]
    ctx = PassContext(explain=True)
    result = PassManager.parse("O2").run(graph, ctx)
    ops = [n.op.name for n in graph]
    rejected = [str(r) for r in ctx.rejections if r.pass_name == "fuse-attention"]
    assert ops.count("scaled_dot_product_attention") == layers and "softmax" not in ops, rejected
    stats = next(r.stats for r in result.records if r.name == "fuse-attention")
    assert stats == {"fused": layers, "rejected": 0}
    return graph


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_torch_export_attention_fuses_and_matches_eager(family: str, impl: str) -> None:
    model, kwargs = _model(family, impl), _inputs(family)
    graph = _fuse(graphopt.import_torch(model, (), kwargs))
    exe = get_backend("cpu").compile(graph)
    with torch.no_grad():
        out = model(**kwargs)
    want = (out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state).numpy()
    got = exe(*[kwargs[v.name].numpy() for v in graph.inputs])[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_onnx_export_attention_fuses_and_matches(impl: str) -> None:
    model, kwargs = _model("bert", impl), _inputs("bert")
    proto = torch.onnx.export(model, (kwargs["input_ids"], kwargs["attention_mask"]), dynamo=True,
                              verbose=False).model_proto
    original = graphopt.import_onnx(proto)
    graph = _fuse(original.copy())
    feeds = [kwargs[n].numpy() for n in ("input_ids", "attention_mask")]
    np.testing.assert_allclose(get_backend("cpu").compile(graph)(*feeds)[0], run(original, feeds)[0],
                               rtol=1e-4, atol=1e-5)


def test_probabilities_returned_are_not_fused_and_say_why() -> None:
    g = parse("""
graph @attn(%q: f32[1,2,4,8], %k: f32[1,2,8,4], %v: f32[1,2,4,8]) {
  const @s: f32[] = 0.35355339
  %0: f32[1,2,4,4] = matmul(%q, %k)
  %1: f32[1,2,4,4] = mul(%0, @s)
  %2: f32[1,2,4,4] = softmax(%1)
  %3: f32[1,2,4,8] = matmul(%2, %v)
  return %3, %2
}""")
    ctx = PassContext(explain=True)
    PassManager.parse("fuse-attention").run(g, ctx)
    assert "softmax" in [n.op.name for n in g]
    assert any("are a graph output" in r.reason and "%2 = softmax" in r.node for r in ctx.rejections)


@pytest.mark.parametrize("need_weights", [False, True])
def test_multihead_attention_fuses_and_leaves_no_zero_mask_constant(need_weights: bool) -> None:
    """New-user trial: nn.MultiheadAttention was never fused (0.56-0.84x eager) and its [batch, heads, seq, seq]
    zero guard was stored in the artifact (8.5 MB at batch 4, seq 256)."""
    mha = torch.nn.MultiheadAttention(64, 4, batch_first=True).eval()
    x = torch.randn(4, 256, 64)
    c = graphopt.compile(mha, (x, x, x), example_kwargs={"need_weights": need_weights})
    assert max(v.const.size for v in c.graph.constants.values()) <= 192 * 64  # the projection weights only
    ops = [n.op.name for n in c.graph]
    if not need_weights:  # with need_weights the probabilities are an output: nothing to fuse, and it says why
        assert ops.count("scaled_dot_product_attention") == 1 and "softmax" not in ops
    want = mha(x, x, x, need_weights=need_weights)
    got = c(x, x, x)
    np.testing.assert_allclose((got[0] if need_weights else got).numpy(), want[0].detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("scale", [" {scale=0.5}", ""])  # "": the default 1/sqrt(head size)
@pytest.mark.parametrize("math_wins", [False, True])
def test_cpu_attention_kernel_choice_keeps_the_result(monkeypatch: pytest.MonkeyPatch, math_wins: bool,
                                                      scale: str) -> None:
    """The cpu target runs unmasked SDPA as bmm + softmax + bmm where that measured faster; both paths agree
    (with the default scale the math path multiplied by None: a flaky crash whenever it won the race under load)."""
    from graphopt.backends.cpu import kernels

    monkeypatch.setattr(kernels, "attention_math_wins", lambda *a, **k: math_wins)
    g = parse("graph @a(%q: f32[2,2,8,4], %k: f32[2,2,8,4], %v: f32[2,2,8,4]) {\n"
              f"  %0: f32[2,2,8,4] = scaled_dot_product_attention(%q, %k, %v){scale}\n  return %0\n}}")
    xs = [np.random.default_rng(i).standard_normal((2, 2, 8, 4)).astype(np.float32) for i in range(3)]
    exe = graphopt.backends.get_backend("cpu").compile(g)
    assert ("torch.softmax(" in exe.source) == math_wins
    np.testing.assert_allclose(exe(*xs)[0], run(g, xs)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mask_dtype", ["f32", "bool"])
@pytest.mark.parametrize("math_wins", [False, True])
def test_cpu_masked_attention_kernel_choice_keeps_the_result_and_fully_masked_rows(
        monkeypatch: pytest.MonkeyPatch, math_wins: bool, mask_dtype: str) -> None:
    """Masked SDPA as bmm + mask + softmax + bmm where that measured faster (12 short padded sentences: 2.4x
    faster here). A row whose mask excludes every key gives 0, as SDPA does; plain softmax would give NaN."""
    from graphopt.backends.cpu import kernels

    monkeypatch.setattr(kernels, "attention_math_wins", lambda *a, **k: math_wins)
    g = parse(f"graph @a(%q: f32[2,2,8,4], %k: f32[2,2,8,4], %v: f32[2,2,8,4], %m: {mask_dtype}[2,1,8,8]) {{\n"
              "  %0: f32[2,2,8,4] = scaled_dot_product_attention(%q, %k, %v, %m)\n  return %0\n}")
    xs = [np.random.default_rng(i).standard_normal((2, 2, 8, 4)).astype(np.float32) for i in range(3)]
    keep = np.ones((2, 1, 8, 8), bool)
    keep[..., 6:] = False  # padding
    exe = graphopt.backends.get_backend("cpu").compile(g)
    assert ("rt.attention_math(" in exe.source) == math_wins
    for fully in (False, True):
        k = keep.copy()
        k[1, 0, 3] = not fully  # sample 1, query 3: no key at all
        mask = k if mask_dtype == "bool" else np.where(k, 0.0, -np.inf).astype(np.float32)
        want = run(g, [*xs, mask])[0]
        got = exe(*xs, mask)[0]
        assert not np.isnan(got).any()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("math_wins", [False, True])
def test_attention_over_run_time_shapes_is_raced_per_shape_and_keeps_the_result(monkeypatch: pytest.MonkeyPatch,
                                                                               math_wins: bool) -> None:
    from graphopt.backends.cpu import kernels

    seen: list[tuple[int, ...]] = []
    monkeypatch.setattr(kernels, "attention_math_wins", lambda q, *a, **k: seen.append(q) or math_wins)
    g = parse("graph @a(%q: f32[b,2,s,4], %k: f32[b,2,s,4], %v: f32[b,2,s,4], %m: f32[b,1,1,s]) {\n"
              "  %0: f32[b,2,s,4] = scaled_dot_product_attention(%q, %k, %v, %m)\n  return %0\n}")
    exe = graphopt.backends.get_backend("cpu").compile(g)
    assert "rt.attention_auto(" in exe.source
    for b, s in ((3, 5), (1, 9)):
        xs = [np.random.default_rng(i).standard_normal((b, 2, s, 4)).astype(np.float32) for i in range(3)]
        mask = np.where(np.arange(s) < s - 1, 0.0, -1e9).astype(np.float32) * np.ones((b, 1, 1, 1), np.float32)
        mask = mask.reshape(b, 1, 1, s)
        np.testing.assert_allclose(exe(*xs, mask)[0], run(g, [*xs, mask])[0], rtol=1e-5, atol=1e-6)
    assert seen == [(3, 2, 5, 4), (1, 2, 9, 4)]  # the choice is asked with each call's own shapes


# The IR the pass leaves, spelled out: a change to what it emits (an extra transpose, a lost scale, a materialized
# head repeat) shows up here as a diff of text, not only as a count of ops.
_EXPECTED_IR = [
    ("""
graph @attn(%q: f32[1,2,4,8], %k: f32[1,2,4,8], %v: f32[1,2,4,8], %m: f32[1,1,4,4]) {
  const @s: f32[] = 8.0
  %kt: f32[1,2,8,4] = transpose(%k) {perm=[0, 1, 3, 2]}
  %0: f32[1,2,4,4] = matmul(%q, %kt)
  %1: f32[1,2,4,4] = div(%0, @s)
  %2: f32[1,2,4,4] = add(%1, %m)
  %3: f32[1,2,4,4] = softmax(%2)
  %4: f32[1,2,4,8] = matmul(%3, %v)
  return %4
}""", """
graph @attn(%q: f32[1,2,4,8], %k: f32[1,2,4,8], %v: f32[1,2,4,8], %m: f32[1,1,4,4]) {
  %6: f32[1,2,4,8] = scaled_dot_product_attention(%q, %k, %v, %m) {scale=0.125}
  return %6
}"""),
    # scores divided by a constant, K given already transposed: the scale is 1/2, K is transposed back
    ("""
graph @attn(%q: f32[1,2,4,8], %k: f32[1,2,8,4], %v: f32[1,2,4,8], %m: f32[1,1,4,4]) {
  const @s: f32[] = 2.0
  %0: f32[1,2,4,4] = matmul(%q, %k)
  %1: f32[1,2,4,4] = div(%0, @s)
  %2: f32[1,2,4,4] = add(%1, %m)
  %3: f32[1,2,4,4] = softmax(%2)
  %4: f32[1,2,4,8] = matmul(%3, %v)
  return %4
}""", """
graph @attn(%q: f32[1,2,4,8], %k: f32[1,2,8,4], %v: f32[1,2,4,8], %m: f32[1,1,4,4]) {
  %5: f32[1,2,4,8] = transpose(%k) {perm=[0, 1, 3, 2]}
  %6: f32[1,2,4,8] = scaled_dot_product_attention(%q, %5, %v, %m) {scale=0.5}
  return %6
}"""),
    # fuzz case: softmax((Q·Kᵀ + M)·s)·V is SDPA with mask M·s (SDPA adds its mask after scaling)
    ("""
graph @attn(%q: f32[1,2,4,8], %k: f32[1,2,8,4], %v: f32[1,2,4,8], %m: f32[1,1,4,4]) {
  const @s: f32[] = 3.0
  %0: f32[1,2,4,4] = matmul(%q, %k)
  %1: f32[1,2,4,4] = add(%0, %m)
  %2: f32[1,2,4,4] = mul(%1, @s)
  %3: f32[1,2,4,4] = softmax(%2)
  %4: f32[1,2,4,8] = matmul(%3, %v)
  return %4
}""", """
graph @attn(%q: f32[1,2,4,8], %k: f32[1,2,8,4], %v: f32[1,2,4,8], %m: f32[1,1,4,4]) {
  const @c: f32[] = 3.0
  %5: f32[1,1,4,4] = mul(%m, @c)
  %6: f32[1,2,4,8] = transpose(%k) {perm=[0, 1, 3, 2]}
  %7: f32[1,2,4,8] = scaled_dot_product_attention(%q, %6, %v, %5) {scale=3.0}
  return %7
}"""),
    ("""
graph @gqa(%q: f32[1,4,4,8], %k: f32[1,2,4,8], %v: f32[1,2,4,8]) {
  const @s: f32[] = 0.125
  %ke: f32[1,2,1,4,8] = unsqueeze(%k) {axes=[2]}
  %kx: f32[1,2,2,4,8] = expand(%ke) {shape=[1,2,2,4,8]}
  %kr: f32[1,4,4,8] = reshape(%kx) {shape=[1,4,4,8]}
  %ve: f32[1,2,1,4,8] = unsqueeze(%v) {axes=[2]}
  %vx: f32[1,2,2,4,8] = expand(%ve) {shape=[1,2,2,4,8]}
  %vr: f32[1,4,4,8] = reshape(%vx) {shape=[1,4,4,8]}
  %kt: f32[1,4,8,4] = transpose(%kr) {perm=[0, 1, 3, 2]}
  %0: f32[1,4,4,4] = matmul(%q, %kt)
  %1: f32[1,4,4,4] = mul(%0, @s)
  %3: f32[1,4,4,4] = softmax(%1)
  %4: f32[1,4,4,8] = matmul(%3, %vr)
  return %4
}""", """
graph @gqa(%q: f32[1,4,4,8], %k: f32[1,2,4,8], %v: f32[1,2,4,8]) {
  %ke: f32[1,2,1,4,8] = unsqueeze(%k) {axes=[2]}
  %kx: f32[1,2,2,4,8] = expand(%ke) {shape=[1, 2, 2, 4, 8]}
  %kr: f32[1,4,4,8] = reshape(%kx) {shape=[1, 4, 4, 8]}
  %ve: f32[1,2,1,4,8] = unsqueeze(%v) {axes=[2]}
  %vx: f32[1,2,2,4,8] = expand(%ve) {shape=[1, 2, 2, 4, 8]}
  %vr: f32[1,4,4,8] = reshape(%vx) {shape=[1, 4, 4, 8]}
  %6: f32[1,4,4,8] = scaled_dot_product_attention(%q, %kr, %vr) {scale=0.125}
  return %6
}"""),
]


@pytest.mark.parametrize("before,after", _EXPECTED_IR, ids=["eager-bert", "divided-scores", "scale-after-mask", "gqa-repeat"])
def test_fused_attention_is_exactly_this_ir(before: str, after: str) -> None:
    from graphopt.ir import assert_graph_equal

    g = check_semantics("fuse-attention,canonicalize,dce", before)
    assert_graph_equal(g, parse(after))
