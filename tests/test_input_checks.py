"""Every target binds symbols consistently and checks every input before running (new-user trial, silent results)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.export import Dim

import graphopt
from graphopt.errors import InputError

TARGETS = ["reference", "cpu", "onnxruntime"]


class _Masked(torch.nn.Module):
    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (ids.float() * mask.float()).sum(-1)


@pytest.fixture(scope="module")
def dynamic() -> dict[str, graphopt.CompiledModel]:
    ids = torch.ones(2, 12, dtype=torch.long)
    batch, seq = Dim("batch"), Dim("seq", max=64)
    shapes = {"ids": {0: batch, 1: seq}, "mask": {0: batch, 1: seq}}
    return {t: graphopt.compile(_Masked(), (ids, ids), dynamic_shapes=shapes, target=t) for t in TARGETS}


@pytest.mark.parametrize("target", TARGETS)
def test_a_mask_longer_than_the_ids_is_refused(dynamic, target: str) -> None:  # type: ignore[no-untyped-def]
    """Was: cpu and onnxruntime silently returned the result for mask[:, :12]."""
    ids, mask = torch.ones(2, 12, dtype=torch.long), torch.ones(2, 16, dtype=torch.long)
    with pytest.raises(InputError, match=r"input 'mask' dim 1 is 16, but seq is 12 \(from input 'ids' dim 1\)"):
        dynamic[target](ids, mask)


@pytest.mark.parametrize("target", TARGETS)
def test_declared_dim_ranges_are_enforced_and_survive_save(dynamic, target: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    long = torch.ones(2, 100, dtype=torch.long)
    with pytest.raises(InputError, match=r"dim 1 \(seq\) is 100, outside the range .*: seq <= 64"):
        dynamic[target](long, long)
    ok = torch.ones(1, 64, dtype=torch.long)
    assert dynamic[target](ok, ok).shape == (1,)
    dynamic[target].save(tmp_path / "a")
    with pytest.raises(InputError, match="seq <= 64"):
        graphopt.load(tmp_path / "a")(long, long)


@pytest.mark.parametrize("target", TARGETS)
def test_static_models_name_the_wrong_dim(target: str) -> None:
    """Was: `RuntimeError: shape '[32, 32]' is invalid for input of size 1536` from inside the generated code."""
    model = torch.nn.Sequential(torch.nn.Flatten(0), torch.nn.Unflatten(0, (32, 32)))
    c = graphopt.compile(model, (torch.randn(32, 32),), target=target)
    with pytest.raises(InputError, match=r"input 'input' dim 0 is 48, expected 32 \(the model was compiled for "
                                         r"f32\[32,32\]"):
        c(torch.randn(48, 32))
    with pytest.raises(InputError, match="must have rank 2"):
        c(torch.randn(32, 32, 1))
    with pytest.raises(InputError, match="must be f32"):
        c(torch.randn(32, 32, dtype=torch.float64))


@pytest.mark.parametrize("target", TARGETS)
def test_positional_and_keyword_for_the_same_input_is_refused(dynamic, target: str) -> None:  # type: ignore[no-untyped-def]
    ids = torch.ones(2, 12, dtype=torch.long)
    with pytest.raises(InputError, match="'ids' given both by position and by name"):
        dynamic[target](ids, ids=ids, mask=ids)
    np.testing.assert_array_equal(np.asarray(dynamic[target](ids, mask=ids)), np.full(2, 12.0))
