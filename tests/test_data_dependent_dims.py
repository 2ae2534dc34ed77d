"""Data-dependent sizes (torch.export's unbacked symbols): nonzero's count is a fresh symbol bound when the graph
runs, and every op after it is typed with it — in IR text, from ONNX NonZero and from `x[mask]` in PyTorch — on
every target, at counts that change from call to call."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto as T
from onnx import helper as h

import graphopt
from graphopt.ir import assert_graph_equal, parse

TEXT = """
graph @f(%x: f32[n]) {
  %i: i64[1,k] = nonzero(%x) {count="k"}
  %s: i64[k] = reshape(%i) {shape=[k]}
  %v: f32[k] = gather(%x, %s) {axis=0}
  %t: f32[] = reduce_sum(%v)
  %w: f32[k] = full() {shape=[k], value=2.0}
  return %v, %t, %w
}
"""


@pytest.mark.parametrize("target", ["reference", "cpu", "onnxruntime"])
def test_a_count_bound_at_run_time_types_the_ops_after_it(target: str) -> None:
    g = parse(TEXT)
    assert_graph_equal(parse(str(g)), g)
    run = graphopt.compile(g, target=target)
    for x in (np.array([0, 1.5, 0, -2, 3], np.float32), np.array([4, 0, 0, 0, 0, 0, 0], np.float32),
              np.zeros(3, np.float32)):
        v, t, w = (np.asarray(o) for o in run(x))
        np.testing.assert_array_equal(v, x[x != 0])
        assert float(t) == pytest.approx(float(x.sum())) and w.shape == v.shape


@pytest.mark.parametrize("target", ["reference", "cpu", "onnxruntime"])
def test_onnx_nonzero(target: str) -> None:
    import onnxruntime as ort

    g = h.make_graph([h.make_node("NonZero", ["x"], ["y"])], "g", [h.make_tensor_value_info("x", T.FLOAT, [3, 4])],
                     [h.make_tensor_value_info("y", T.INT64, [2, "n"])])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    run = graphopt.compile(m, target=target)
    for seed in (0, 1):
        x = (np.random.default_rng(seed).standard_normal((3, 4)) > 0.3).astype(np.float32)
        want = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
        np.testing.assert_array_equal(np.asarray(run(x)), want)


class Masked(torch.nn.Module):
    def forward(self, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = x[m > 0]  # boolean-mask indexing: as many rows as the mask has set
        return y * 2, y.sum()


@pytest.mark.parametrize("target", ["reference", "cpu", "onnxruntime"])
def test_boolean_mask_indexing_from_torch(target: str) -> None:
    x, m = torch.randn(4, 5, 3), torch.randn(4, 5)
    compiled = graphopt.compile(Masked(), (x, m), target=target)
    for mask in (m, -m, torch.ones(4, 5)):
        got, want = compiled(x, mask), Masked()(x, mask)
        np.testing.assert_allclose(np.asarray(got[0]), want[0].numpy(), rtol=1e-6)
        assert float(got[1]) == pytest.approx(float(want[1]), rel=1e-5, abs=1e-5)


class MaskedPut(torch.nn.Module):
    """X-MOD's per-language adapters: rows picked by a mask, transformed, written back under the same mask."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3, 3)

    def forward(self, x: torch.Tensor, lang: torch.Tensor) -> torch.Tensor:
        y = torch.zeros_like(x)
        for i in range(2):
            m = lang == i
            y[m] = self.proj(x[m]) + i
        return y + x


@pytest.mark.parametrize("target", ["reference", "cpu", "onnxruntime"])
def test_masked_rows_written_back_from_torch(target: str) -> None:
    torch.manual_seed(0)
    model = MaskedPut().eval()
    x, lang = torch.randn(4, 5, 3), torch.randint(0, 2, (4, 5))
    compiled = graphopt.compile(model, (x, lang), target=target)
    for ids in (lang, 1 - lang, torch.zeros(4, 5, dtype=torch.long)):  # counts change, down to no rows at all
        np.testing.assert_allclose(np.asarray(compiled(x, ids)), model(x, ids).detach().numpy(), rtol=1e-5,
                                   atol=1e-6)
