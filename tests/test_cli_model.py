"""`graphopt compile | run | show` on a `module:factory` model, end to end through main()."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

import graphopt
from graphopt.cli import main

FACTORY = textwrap.dedent('''
    import torch
    from torch.export import Dim

    def _net():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4)).eval()

    def dynamic():
        return _net(), (torch.randn(2, 5, 8),), None, ({0: Dim("batch"), 1: Dim("seq")},)

    def static():
        return _net(), (torch.randn(2, 5, 8),)

    class _Attn(torch.nn.Module):
        def forward(self, q, k, v):
            a = torch.softmax(q @ k.transpose(-1, -2) * 0.125, -1)
            return a @ v, torch.softmax(q @ v.transpose(-1, -2), -1) @ k, a

    def attn():
        return _Attn(), tuple(torch.randn(1, 2, 4, 8) for _ in range(3))
''')


@pytest.fixture
def factory(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    (tmp_path / "my_models.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_compile_run_show_with_dynamic_shapes(factory, capsys) -> None:  # type: ignore[no-untyped-def]
    out = factory / "art"
    assert main(["compile", "my_models:dynamic", "-o", str(out), "--input-shape", "input=3x7x8", "--repeats", "2"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["fidelity"]["cosine"] > 0.99999
    again = graphopt.load(out)
    assert [str(v.type) for v in again.graph.inputs] == ["f32[batch,seq,8]"]
    y = again(np.ones((4, 9, 8), np.float32))
    assert y.shape == (4, 9, 4)
    capsys.readouterr()
    assert main(["run", str(out), "--input-shape", "input=1x3x8"]) == 0
    assert "float32[1, 3, 4]" in capsys.readouterr().out
    assert main(["show", "my_models:dynamic"]) == 0
    assert "graph @" in capsys.readouterr().out
    assert main(["compile", "my_models:dynamic", "-o", str(out)]) == 1  # never overwrites unasked
    assert "not empty" in capsys.readouterr().err


def test_input_shape_that_a_static_trace_cannot_take(factory, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["compile", "my_models:static", "-o", str(factory / "a"), "--input-shape", "input=3x7x8"]) == 1
    err = capsys.readouterr().err
    assert "does not fit input" in err and "dynamic_shapes" in err
    assert main(["compile", "my_models:static", "-o", str(factory / "b"), "--input-shape", "nope=1"]) == 1
    assert "unknown input" in capsys.readouterr().err
    assert main(["compile", "my_models:missing", "-o", str(factory / "c")]) == 1
    assert "cannot load factory" in capsys.readouterr().err


def test_explain_names_each_site_and_why_it_did_not_fuse(factory, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["explain", "my_models:attn", "--pass", "fuse-attention"]) == 0
    out = capsys.readouterr().out
    assert "fuse-attention: fused 1, rejected 1" in out
    assert "softmax" in out and "graph output" in out
    assert main(["explain", "my_models:attn", "--pass", "fuse-nothing"]) == 1
    assert "is not in pipeline 'O3'" in capsys.readouterr().err


def test_compile_twice_with_overwrite_replaces_its_own_artifact(factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The README's first command is run again on the same folder: its report.json must not block --overwrite."""
    out = tmp_path / "art"
    for _ in range(2):
        assert main(["compile", "my_models:static", "-o", str(out), "--overwrite", "--repeats", "1"]) == 0
    assert (out / "report.json").is_file()
