import pytest
import numpy as np
import torch

from helpers import check_pass, check_semantics
from models import cnn

import graphopt


def test_conv_and_linear_absorb_batchnorm() -> None:
    check_pass("fold-batchnorm,dce", """
graph @f(%x: f32[2,1,3,3], %y: f32[5,2]) {
  const @w: f32[2,1,1,1] = [[[[1.0]]], [[[2.0]]]]
  const @lw: f32[2,2] = [[1.0, 0.0], [0.0, 1.0]]
  const @lb: f32[2] = [1.0, 2.0]
  const @g: f32[2] = [1.0, 0.5]
  const @b: f32[2] = [0.0, 1.0]
  const @m: f32[2] = [0.0, 0.5]
  const @v: f32[2] = [1.0, 4.0]
  %0: f32[2,2,3,3] = conv(%x, @w)
  %1: f32[2,2,3,3] = batch_norm(%0, @g, @b, @m, @v) {eps=0.0}
  %2: f32[5,2] = linear(%y, @lw, @lb)
  %3: f32[5,2] = batch_norm(%2, @g, @b, @m, @v) {eps=0.0}
  return %1, %3
}""", """
graph @f(%x: f32[2,1,3,3], %y: f32[5,2]) {
  const @w2: f32[2,1,1,1] = [[[[1.0]]], [[[0.5]]]]
  const @b2: f32[2] = [0.0, 0.875]
  const @lw2: f32[2,2] = [[1.0, 0.0], [0.0, 0.25]]
  const @lb2: f32[2] = [1.0, 1.375]
  %1: f32[2,2,3,3] = conv(%x, @w2, @b2)
  %3: f32[5,2] = linear(%y, @lw2, @lb2)
  return %1, %3
}""", rtol=1e-6)


def test_statistics_from_the_graph_are_left_alone() -> None:
    unchanged = """
graph @f(%x: f32[1,2,2,2], %m: f32[2]) {
  const @w: f32[2,2,1,1] = [[[[1.0]], [[0.0]]], [[[0.0]], [[1.0]]]]
  const @one: f32[2] = [1.0, 1.0]
  const @zero: f32[2] = [0.0, 0.0]
  %0: f32[1,2,2,2] = conv(%x, @w)
  %1: f32[1,2,2,2] = batch_norm(%0, @one, @zero, %m, @one)
  return %1
}"""
    check_pass("fold-batchnorm", unchanged, unchanged)


def test_a_real_cnn_has_no_batchnorm_left_and_matches_eager() -> None:
    model, args = cnn()
    compiled = graphopt.compile(model, args, pipeline="O2")
    assert "batch_norm" not in {n.op.name for n in compiled.graph}
    with torch.no_grad():
        np.testing.assert_allclose(compiled(*args).numpy(), model(*args).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pipeline", ["O2,O2", "O3,O3", "fuse-conv,fold-batchnorm"])
def test_batchnorm_after_an_activation_epilogue_is_not_folded(pipeline: str) -> None:
    """Fuzz case: conv → relu → batch_norm; BN(relu(conv x)) is not relu(BN∘conv x)."""
    g = check_semantics(pipeline, """
graph @f(%x: f32[1,2,3,3]) {
  const @w: f32[2,2,1,1] = [[[[1.0]], [[-0.5]]], [[[0.25]], [[2.0]]]]
  const @g: f32[2] = [1.0, -2.0]
  const @b: f32[2] = [0.5, 1.0]
  const @m: f32[2] = [0.25, -0.5]
  const @v: f32[2] = [1.0, 4.0]
  %0: f32[1,2,3,3] = conv(%x, @w)
  %1: f32[1,2,3,3] = relu(%0)
  %2: f32[1,2,3,3] = batch_norm(%1, @g, @b, @m, @v) {eps=0.0}
  return %2
}""")
    assert "batch_norm" in [n.op.name for n in g]


def test_batchnorm_after_a_residual_epilogue_is_not_folded() -> None:
    check_semantics("fold-batchnorm,dce", """
graph @f(%x: f32[1,2,3,3], %r: f32[1,2,3,3]) {
  const @w: f32[2,2,1,1] = [[[[1.0]], [[-0.5]]], [[[0.25]], [[2.0]]]]
  const @b0: f32[2] = [0.0, 0.0]
  const @g: f32[2] = [1.0, -2.0]
  const @b: f32[2] = [0.5, 1.0]
  const @m: f32[2] = [0.25, -0.5]
  const @v: f32[2] = [1.0, 4.0]
  %0: f32[1,2,3,3] = conv(%x, @w, @b0, %r)
  %1: f32[1,2,3,3] = batch_norm(%0, @g, @b, @m, @v) {eps=0.0}
  return %1
}""")
