"""Control flow from torch.export: torch.cond compiles (both branches, selected with `where`); Python branches on
tensor values and dynamic-shape ranges the model's code contradicts end in a short graphopt error saying what to
do, not torch's 40-line guard message."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.export import Dim

import graphopt
from graphopt.errors import ModelLoadError


class Cond(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cond(x.sum() > 0, lambda x: torch.relu(x) * 2, lambda x: x.abs() - 1, (x,))


@pytest.mark.parametrize("target", ["reference", "cpu", "onnxruntime"])
def test_torch_cond_takes_the_branch_the_data_selects(target: str) -> None:
    m = Cond().eval()
    compiled = graphopt.compile(m, (torch.randn(2, 5),), target=target)
    assert "where" in {n.op.name for n in compiled.graph}
    for sign in (1.0, -1.0):
        x = torch.randn(2, 5, generator=torch.Generator().manual_seed(3)).abs() * sign
        np.testing.assert_allclose(np.asarray(compiled(x)), m(x).numpy(), rtol=1e-6)


class Branchy(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # a Python branch on data
            return x * 2
        return x - 1


def test_a_python_branch_on_data_is_one_clear_error() -> None:
    with pytest.raises(ModelLoadError, match=r"branches on tensor values at .*test_frontend_control_flow.py.*"
                                             r"if x.sum\(\) > 0.*torch.where.*torch.cond") as e:
        graphopt.compile(Branchy(), (torch.randn(2, 5),))
    assert len(str(e.value).splitlines()) == 1


class ShapeBranch(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :4] if x.shape[1] > 8 else x


def test_a_dynamic_range_the_code_contradicts_names_the_range_to_use() -> None:
    with pytest.raises(ModelLoadError, match=r"(?s)only holds for part of the range.*Dim\('n', min=9, max=64\)"):
        graphopt.compile(ShapeBranch(), (torch.randn(2, 10),), dynamic_shapes=({1: Dim("n", max=64)},))
