"""The ATen ops graphopt builds from several IR ops (frontends/aten_composite.py and friends), each through
torch.export → graphopt on the reference and cpu targets, against eager PyTorch — the ops small real models and
PyTorch's OpInfo sweep (benchmarks/opinfo.py) hit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import graphopt

g = torch.Generator().manual_seed(0)
X = torch.randn(2, 6, 5, generator=g)
Y = torch.randn(2, 6, 5, generator=g)
POS = torch.rand(2, 6, 5, generator=g) + 0.5


def _put_negatives_to_zero(x: torch.Tensor) -> torch.Tensor:
    y = x.clone()
    y[y < 0] = 0  # index_put with a boolean mask
    return y


def _put_rows(x: torch.Tensor) -> torch.Tensor:
    y = x.clone()
    y[torch.tensor([0, 1]), torch.tensor([2, 4])] = 7.0  # index_put with integer indices
    return y


CASES: list[tuple[str, Callable[..., Any], tuple[torch.Tensor, ...]]] = [
    ("asin", torch.asin, (X.clamp(-0.9, 0.9),)), ("acos", torch.acos, (X.clamp(-0.9, 0.9),)),
    ("atan", torch.atan, (X,)), ("acosh", torch.acosh, (POS + 1,)), ("atanh", torch.atanh, (X.clamp(-0.9, 0.9),)),
    ("sinh", torch.sinh, (X,)), ("cosh", torch.cosh, (X,)), ("asinh", torch.asinh, (X,)), ("tan", torch.tan, (X * 0.5,)),
    ("atan2", torch.atan2, (Y, X)),
    ("atan2-axes", torch.atan2, (torch.tensor([1.0, -1.0, 0.0, 2.0, -3.0]), torch.tensor([0.0, 0.0, 0.0, -1.0, -1.0]))),
    ("flip", lambda x: torch.flip(x, [0, 2]), (X,)),
    ("sort", lambda x: torch.sort(x, dim=1, descending=True), (X,)),
    ("sort-stable", lambda x: torch.sort(x, stable=True), (X,)),
    ("normalize", lambda x: F.normalize(x, dim=-1), (X,)),
    ("vector-norm-inf", lambda x: torch.linalg.vector_norm(x, float("inf"), dim=1), (X,)),
    ("vector-norm-3", lambda x: torch.linalg.vector_norm(x, 3, dim=(1, 2), keepdim=True), (X,)),
    ("group-norm", lambda x: F.group_norm(x, 3, torch.linspace(0.5, 2, 6), torch.linspace(-1, 1, 6)), (X,)),
    ("group-norm-4d", lambda x: F.group_norm(x.reshape(2, 6, 5, 1), 2), (X,)),
    ("index-put-mask", _put_negatives_to_zero, (X,)),
    ("index-put-ints", _put_rows, (X,)),
    ("scatter-add", lambda x: x.scatter_add(1, torch.tensor([[[0, 1, 2, 3, 4]] * 2] * 2), x[:, :2] * 3), (X,)),
    ("clamp-tensor", lambda x, y: torch.clamp(x, min=y, max=y + 1), (X, Y)),
    ("conv-transpose2d", lambda x: F.conv_transpose2d(x.reshape(1, 2, 6, 5), torch.linspace(-1, 1, 2 * 3 * 9)
                                                    .reshape(2, 3, 3, 3), stride=2, padding=1, output_padding=1),
     (X,)),
    ("selu", F.selu, (X,)), ("celu", lambda x: F.celu(x, 0.7), (X,)), ("expm1", torch.expm1, (X * 1e-3,)),
    ("log2", torch.log2, (POS,)), ("log10", torch.log10, (POS,)), ("exp2", torch.exp2, (X,)),
    ("copysign", torch.copysign, (X, Y)), ("fmax", torch.fmax, (X, Y.masked_fill(Y > 1, float("nan")))),
    ("addmv", lambda b, m: torch.addmv(b[0, :, 0], m[0], m[0, 0], beta=0.5, alpha=2.0), (X, Y)),
    ("addbmm", lambda a: torch.addbmm(a[0, :, :5], a, a.transpose(1, 2)[:, :, :5]), (X,)),
    ("cumprod", lambda x: torch.cumprod(x, 1), (X,)),
    ("index-select", lambda x: torch.index_select(x, 2, torch.tensor([4, 0, 0])), (X,)),
    ("bilinear", lambda x: F.interpolate(x.reshape(1, 2, 6, 5), size=(9, 4), mode="bilinear"), (X,)),
    ("bilinear-corners", lambda x: F.interpolate(x.reshape(1, 2, 6, 5), scale_factor=2, mode="bilinear",
                                                 align_corners=True), (X,)),
    ("nearest", lambda x: F.interpolate(x.reshape(1, 2, 6, 5), size=(12, 7), mode="nearest"), (X,)),
    ("diagonal", lambda x: torch.diagonal(x, offset=1, dim1=1, dim2=2), (X,)),
    ("trace", lambda x: torch.trace(x[0]), (X,)),
    ("unfold", lambda x: x.unfold(1, 3, 2), (X,)),
    ("slice-scatter", lambda x, y: torch.slice_scatter(x, y[:, 1:4], dim=1, start=1, end=6, step=2), (X, Y)),
    ("scatter-reduce-amax", lambda x: x.scatter_reduce(2, torch.tensor([[[0, 0, 1, 1, 4]] * 6] * 2), x * 2,
                                                       "amax"), (X,)),
    ("var-mean", lambda x: torch.var_mean(x, dim=1, correction=0), (X,)),
    ("round-decimals", lambda x: torch.round(x * 100, decimals=-1), (X,)),
    ("signbit", lambda x: torch.signbit(torch.cat([x.flatten(), torch.tensor([-0.0, 0.0])])), (X,)),
    ("hypot", torch.hypot, (X, Y)), ("erfc", torch.erfc, (X,)), ("max-all", torch.max, (X,)),
    ("narrow", lambda x: torch.narrow(x, 2, 1, 3), (X,)),
    ("avg-pool-divisor", lambda x: F.avg_pool2d(x.reshape(1, 2, 6, 5), 2, divisor_override=3), (X,)),
    ("max-pool1d-unused-indices", lambda x: F.max_pool1d(x, 2), (X,)),
    ("scatter-reduce-mean-exclusive", lambda x: x.scatter_reduce(2, torch.tensor([[[0, 0, 1, 1, 4]] * 6] * 2), x * 2,
                                                                 "mean", include_self=False), (X,)),
    ("scatter-reduce-prod-exclusive", lambda x: x.scatter_reduce(1, torch.tensor([[[1] * 5] * 6] * 2), x, "prod",
                                                                 include_self=False), (X,)),
    ("masked-select", lambda x, y: torch.masked_select(x, y[0] > 0), (X, Y)),
    ("argwhere", lambda x: torch.argwhere(x > 0.5), (X,)),
    ("kthvalue", lambda x: torch.kthvalue(x, 2, dim=1), (X,)),
    ("median", torch.median, (X,)),
    ("cdist", lambda x, y: torch.cdist(x, y[:, :4]), (X, Y)),
    ("dist", lambda x, y: torch.dist(x, y, 3), (X, Y)),
    ("ldexp", lambda x: torch.ldexp(x, torch.tensor([1, -2, 3, 0, 2])), (X,)),
    ("logcumsumexp", lambda x: torch.logcumsumexp(x * 30, 1), (X,)),
    ("bucketize", lambda x: torch.bucketize(x, torch.tensor([-1.0, 0.0, 0.5]), right=True), (X,)),
    ("instance-norm", lambda x: F.instance_norm(x), (X,)),
    ("layer-norm-stats", lambda x: torch.native_layer_norm(x, [5], None, None, 1e-5), (X,)),
    ("avg-pool3d", lambda x: F.avg_pool3d(x.reshape(1, 1, 2, 6, 5), 2), (X,)),
    ("grid-sample", lambda x, y: F.grid_sample(x.reshape(1, 2, 3, 10), y.reshape(1, 3, 10, 2).tanh(),
                                               align_corners=False), (X, Y)),
    ("pdist", lambda x: F.pdist(x[0]), (X,)),
    ("index-reduce-amax", lambda x, y: x.index_reduce(1, torch.tensor([0, 2, 2]), y[:, :3], "amax",
                                                      include_self=False), (X, Y)),
    ("diagonal-scatter", lambda x, y: torch.diagonal_scatter(x, y[:, 0, :4], offset=1, dim1=1, dim2=2), (X, Y)),
    ("frexp", lambda x: torch.frexp(torch.cat([x.flatten() * 100, torch.tensor([0.0, 1.0, 0.5, -8.0])])), (X,)),
]


class _Fn(torch.nn.Module):
    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *xs: torch.Tensor) -> Any:
        return self.fn(*xs)


@pytest.mark.parametrize("target", ["reference", "cpu"])
@pytest.mark.parametrize("name, fn, inputs", CASES, ids=[c[0] for c in CASES])
def test_composite_aten_op_matches_eager(name: str, fn: Callable[..., Any], inputs: tuple[torch.Tensor, ...],
                                         target: str) -> None:
    m = _Fn(fn).eval()
    with torch.no_grad():
        want = m(*inputs)
    got = graphopt.compile(m, inputs, target=target)(*inputs)
    wants = list(want) if isinstance(want, tuple) else [want]
    gots = list(got) if isinstance(got, (tuple, list)) else [got]
    assert len(gots) == len(wants)
    for a, b in zip(gots, wants):
        a = np.asarray(a.detach() if isinstance(a, torch.Tensor) else a)
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-4, atol=1e-5, equal_nan=True, err_msg=name)
