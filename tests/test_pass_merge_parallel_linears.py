import numpy as np
import torch

from helpers import check_pass, check_semantics

import graphopt
from graphopt.ir import parse
from graphopt.passes import PassManager


def test_qkv_projections_become_one_linear_and_a_split() -> None:
    check_pass("merge-parallel-linears,dce", """
graph @f(%x: f32[b,2]) {
  const @wq: f32[2,2] = [[1.0, 2.0], [3.0, 4.0]]
  const @bq: f32[2] = [0.5, -0.5]
  const @wk: f32[1,2] = [[-1.0, 0.25]]
  const @wv: f32[2,2] = [[0.0, 1.0], [1.0, 0.0]]
  const @bv: f32[2] = [1.0, 2.0]
  %q: f32[b,2] = linear(%x, @wq, @bq)
  %k: f32[b,1] = linear(%x, @wk)
  %v: f32[b,2] = linear(%x, @wv, @bv)
  %r: f32[b,2] = relu(%v)
  return %q, %k, %r
}""", """
graph @f(%x: f32[b,2]) {
  const @w: f32[5,2] = [[1.0, 2.0], [3.0, 4.0], [-1.0, 0.25], [0.0, 1.0], [1.0, 0.0]]
  const @bias: f32[5] = [0.5, -0.5, 0.0, 1.0, 2.0]
  %m: f32[b,5] = linear(%x, @w, @bias)
  %q: f32[b,2], %k: f32[b,1], %v: f32[b,2] = split(%m) {axis=-1, sizes=[2, 1, 2]}
  %r: f32[b,2] = relu(%v)
  return %q, %k, %r
}""", rtol=1e-6)


def test_different_activations_or_inputs_stay_apart() -> None:
    g = parse("""
graph @f(%x: f32[3,2], %y: f32[3,2]) {
  const @w: f32[2,2] = [[1.0, 2.0], [3.0, 4.0]]
  const @u: f32[2,2] = [[0.0, 1.0], [1.0, 0.0]]
  %0: f32[3,2] = linear(%x, @w) {activation="relu"}
  %1: f32[3,2] = linear(%x, @u)
  %2: f32[3,2] = linear(%y, @u)
  return %0, %1, %2
}""")
    stats = PassManager.parse("merge-parallel-linears").run(g).records[0].stats
    assert stats == {"linears-merged": 0, "groups": 0}
    assert [n.op.name for n in g] == ["linear"] * 3


def test_bert_attention_projections_merge_and_match_eager() -> None:
    import transformers as T

    torch.manual_seed(0)
    cfg = T.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                       vocab_size=100)
    model = T.BertModel(cfg).eval()
    ids = torch.randint(0, 100, (2, 9))
    compiled = graphopt.compile(model, example_kwargs={"input_ids": ids}, pipeline="O3", target="cpu")
    stats = {r.name: r.stats for r in compiled.result.records}
    assert stats["merge-parallel-linears"] == {"linears-merged": 6, "groups": 2}
    with torch.no_grad():
        want = model(input_ids=ids).last_hidden_state.numpy()
    got = compiled(input_ids=ids)[0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_scalar_biases_broadcast_when_merged() -> None:
    """Fuzz case: a linear with a scalar bias (valid per the schema) contributed 1 element instead of 4."""
    check_semantics("merge-parallel-linears,dce", """
graph @f(%x: f32[2,3]) {
  const @wq: f32[4,3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]
  const @wk: f32[2,3] = [[0.5, 0.5, 0.5], [-1.0, 0.0, 1.0]]
  const @bq: f32[] = 2.0
  const @bk: f32[2] = [1.0, -1.0]
  %q: f32[2,4] = linear(%x, @wq, @bq)
  %k: f32[2,2] = linear(%x, @wk, @bk)
  return %q, %k
}""")
