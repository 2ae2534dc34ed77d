import json

import torch

from graphopt.bench import bench, write_outputs
from graphopt.cli import main


def _small():  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.Linear(64, 8)).eval()


def test_bench_times_every_variant_and_reports_fidelity(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = bench(_small(), (torch.randn(4, 32),), peers=("eager", "onnxruntime"), targets=("cpu", "reference"),
                   pipeline="O2", repeats=3, ablate=True, progress=False, pause_s=0.0)
    names = [v.name for v in result.variants]
    assert names[:4] == ["eager", "onnxruntime", "graphopt-cpu", "graphopt-reference"]
    assert "without fuse-linear" in names and all(len(v.times_ms) == 3 for v in result.variants)
    rows = {r["variant"]: r for r in result.rows()}
    assert rows["eager"]["speedup_vs_eager"] == 1.0
    assert rows["graphopt-cpu"]["cosine"] > 0.99999 and rows["graphopt-cpu"]["max_abs_err"] < 1e-4
    assert result.flops >= 2 * 4 * (32 * 64 + 64 * 8)  # at least the two GEMMs
    assert result.gemm_gflops and all(g > 0 for g in result.gemm_gflops.values())
    written = write_outputs(result, tmp_path / "out")
    data = json.loads((tmp_path / "out" / "result.json").read_text())
    assert {r["variant"] for r in data["rows"]} == set(names)
    assert "| graphopt-cpu |" in (tmp_path / "out" / "result.md").read_text()
    assert (tmp_path / "out" / "result.png") in written  # matplotlib is a test dependency


def test_bench_cli_needs_a_factory(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    assert main(["bench", str(model)]) == 1
    assert "needs a package.module:factory" in capsys.readouterr().err


def test_a_variant_that_cannot_be_built_is_reported_not_fatal() -> None:
    result = bench(_small(), (torch.randn(2, 32),), peers=("eager",), targets=("cpu", "tensorrt-nope"),
                   pipeline="O2", repeats=2, progress=False, pause_s=0.0)
    assert [v.name for v in result.variants] == ["eager", "graphopt-cpu"]
    assert "tensorrt-nope" in result.skipped["graphopt-tensorrt-nope"]
    assert "Not run: **graphopt-tensorrt-nope**" in result.markdown()


def test_a_failed_torch_onnx_export_is_reported_not_silently_swapped(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """New-user trial: without onnxscript the ONNX Runtime baseline silently became graphopt's own export."""
    def broken(*a, **k):  # type: ignore[no-untyped-def]
        raise ModuleNotFoundError("No module named 'onnxscript'")

    monkeypatch.setattr(torch.onnx, "export", broken)
    result = bench(_small(), (torch.randn(2, 32),), peers=("eager", "onnxruntime"), targets=(), pipeline="O2",
                   repeats=2, progress=False, pause_s=0.0)
    assert "onnxscript" in result.skipped["onnxruntime"]
    assert [v.name for v in result.variants] == ["eager", "onnxruntime (graphopt O0 export)"]
    assert "Not run: **onnxruntime** — ModuleNotFoundError" in result.markdown()


def test_openvino_peer_runs_the_torch_onnx_export_at_the_precision_it_names() -> None:
    import pytest

    ov = pytest.importorskip("openvino")  # a benchmarks dependency; CI's test extra installs it too
    assert ov is not None
    result = bench(_small(), (torch.randn(4, 32),), peers=("eager", "openvino"), targets=(), pipeline="O2",
                   repeats=2, progress=False, pause_s=0.0)
    ov_rows = [r for r in result.rows() if r["variant"].startswith("openvino")]
    assert ov_rows and ov_rows[0]["variant"].startswith("openvino f32"), result.skipped
    assert ov_rows[0]["cosine"] > 0.99999  # f32 forced: the same numbers as eager up to rounding
    for r in ov_rows[1:]:  # the default precision, shown only where it is not f32 (bf16 on CPUs with bf16 units)
        assert "openvino default (" in r["variant"] and "(f32)" not in r["variant"] and r["cosine"] > 0.99
