"""Calibration tables, `graphopt.calibrate`, per-layer sensitivity, accuracy-budgeted mixed precision, and
`graphopt.compile(quantize=...)` / `graphopt compile --precision` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import graphopt
from graphopt.passes.calibration import CalibrationTable
from graphopt.quantization import choose_float_layers, quantize_graph, samples_for, sensitivity


@pytest.fixture
def int8_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every layer's int8 kernel 'measured faster' from one row: tests of the search, not of this CPU's speed."""
    from graphopt import quantization
    from graphopt.backends.cpu import kernels

    monkeypatch.setattr(kernels, "int8_linear_choice", lambda *a: (1, "forced for the test"))
    monkeypatch.setattr(quantization, "slower_than_f32", lambda *a: None)  # and the model as a whole


def test_calibration_table_thresholds_and_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    t = CalibrationTable()
    for i in range(3):
        x = rng.standard_normal((64, 16)).astype(np.float32)
        x[0, 5] = 40.0 if i == 1 else 0.0  # one outlier in all
        t.observe("x", x)
    assert t["x"].seen == 3 * 64 * 16 and t["x"].channel_absmax[5] == 40.0
    amax = t.threshold("x", "minmax")
    assert amax == 40.0
    for method in ("percentile", "mse", "entropy"):
        th = t.threshold("x", method)  # type: ignore[arg-type]
        assert 1.0 < th < amax, (method, th)  # each ignores the lone outlier, none clips the bulk
    path = tmp_path / "calib.npz"
    t.save(path)
    back = CalibrationTable.load(path)
    assert back["x"].seen == t["x"].seen and back.threshold("x", "percentile") == t.threshold("x", "percentile")
    np.testing.assert_array_equal(back["x"].channel_absmax, t["x"].channel_absmax)
    with pytest.raises(FileExistsError):
        t.save(path)
    with pytest.raises(ValueError, match="changed its last dimension"):
        t.observe("x", np.ones((2, 3), np.float32))


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(128, 256), torch.nn.GELU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
                            torch.nn.Linear(256, 64)).eval()
    with torch.no_grad():  # an input channel with outliers the first layer passes on: that layer is the sensitive one
        m[0].weight[:, 7] *= 0.01
    return m


def _x(n: int = 32, seed: int = 0) -> torch.Tensor:
    x = torch.randn(n, 128, generator=torch.Generator().manual_seed(seed))
    x[:, 7] *= 200
    return x


def test_calibrate_observes_what_quantization_touches() -> None:
    g = graphopt.to_graph(_model(), (_x(),))
    graphopt.passes.PassManager.parse("O2").run(g)
    table = graphopt.calibrate(g, [(_x(32, s),) for s in range(3)])
    linear_inputs = {n.inputs[0].name for n in g if n.op.name == "linear"}
    assert set(table.values) == linear_inputs and table.samples == 3
    assert table[g.inputs[0].name].channel_absmax[7] > 50


def test_samples_for_accepts_the_shapes_users_have() -> None:
    g = graphopt.to_graph(_model(), (_x(),))
    x = _x(4).numpy()
    name = g.inputs[0].name
    for data in ([x, x], [(x,)], [{name: x}], {name: np.stack([x, x])}):
        s = samples_for(g, data)
        assert len(s) in (1, 2) and s[0][0].shape == (4, 128)
    with pytest.raises(ValueError, match="lacks input"):
        samples_for(g, [{"other": x}])


def test_sensitivity_ranks_the_layer_fed_by_outliers_first(int8_everywhere: None) -> None:
    g = graphopt.to_graph(_model(), (_x(),))
    graphopt.passes.PassManager.parse("O2").run(g)
    rows = sensitivity(g, [[_x().numpy()]])
    assert len(rows) == 3
    worst = min(rows, key=lambda r: r["output_cosine"])
    assert worst is rows[0], rows  # the first linear reads the outlier channel
    assert all({"error", "rel_error", "sqnr_db", "sparsity", "output_cosine"} <= set(r) for r in rows)


def test_budgeted_mixed_precision_keeps_the_fewest_sensitive_layers_float(int8_everywhere: None) -> None:
    g = graphopt.to_graph(_model(), (_x(),))
    graphopt.passes.PassManager.parse("O2").run(g)
    samples = [[_x().numpy()]]
    loose, _, reached_loose = choose_float_layers(g, samples, "int8-dynamic", 0.5)  # all int8 reaches ~0.62
    assert loose == [] and reached_loose >= 0.5
    strict, rows, reached = choose_float_layers(g, samples, "int8-dynamic", 0.9999)
    assert reached >= 0.9999 and 1 <= len(strict) <= 3
    assert strict[0] == min(rows, key=lambda r: r["output_cosine"])["layer"]
    q = g.copy()
    quantize_graph(q, "int8-dynamic", skip=strict)
    assert sum(n.op.name == "quantized_linear" for n in q) == 3 - len(strict)


def test_compile_int8_reports_layers_meets_the_budget_and_saves_int8_weights(int8_everywhere: None,
                                                                             tmp_path: Path) -> None:
    model, x = _model(), _x()
    q = graphopt.compile(model, (x,), quantize="int8-dynamic", budget=0.9995,
                         calibration=[(_x(32, s),) for s in range(1, 4)])
    with torch.no_grad():
        want = model(x).numpy().ravel()
    got = q(x).numpy().ravel()
    assert float(want @ got / np.linalg.norm(want) / np.linalg.norm(got)) > 0.999
    assert q.precision == "int8-dynamic" and len(q.layers) == 3
    assert {r["precision"] for r in q.layers} <= {"int8", "fp32"}
    assert "int8" in {r["precision"] for r in q.layers}
    rep = q.report(repeats=2)
    assert rep.layers == q.layers and "cosine alone" in str(rep)
    f32 = graphopt.compile(model, (x,))
    q.save(tmp_path / "q")
    f32.save(tmp_path / "f")
    size = lambda d: sum(p.stat().st_size for p in d.iterdir())  # noqa: E731
    int8_layers = [r for r in q.layers if r["precision"] == "int8"]
    if len(int8_layers) == 3:
        assert size(tmp_path / "q") <= 0.3 * size(tmp_path / "f")
    loaded = graphopt.load(tmp_path / "q")
    np.testing.assert_array_equal(loaded(x).numpy(), q(x).numpy())


def test_compile_refuses_an_unknown_precision() -> None:
    with pytest.raises(ValueError, match="unknown precision 'int3'"):
        graphopt.compile(_model(), (_x(),), quantize="int3")


def test_cli_compiles_in_int8_with_a_budget_and_writes_the_layer_chart(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from graphopt.cli import main
    from graphopt.ir.printer import format_graph

    calib = tmp_path / "calib.npz"
    gir = tmp_path / "m.gir"
    g = graphopt.to_graph(_model(), (_x(),))
    gir.write_text(format_graph(g, max_inline=0))
    np.savez(gir.with_suffix(".npz"), **{c.name: c.const for c in g.constants.values()})
    np.savez(calib, **{g.inputs[0].name: np.stack([_x(32, s).numpy() for s in range(3)])})
    out = tmp_path / "out"
    assert main(["compile", str(gir), "-o", str(out), "--precision", "int8-dynamic", "--calibration", str(calib),
                 "--budget", "cosine=0.999", "--repeats", "2"]) == 0
    assert "layers (int8-dynamic)" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["precision"] == "int8-dynamic" and len(report["layers"]) == 3
    if report["layers"]:
        assert (out / "layers.png").read_bytes()[:4] == b"\x89PNG"
    assert graphopt.load(out)(_x().numpy()).shape == (32, 64)
    assert main(["compile", str(gir), "-o", str(tmp_path / "o2"), "--precision", "int8-dynamic",
                 "--budget", "sqnr=30"]) == 1
    assert "only cosine=VALUE" in capsys.readouterr().err


def test_a_quantized_model_slower_end_to_end_is_not_shipped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-layer races can all say int8 while the model as a whole is slower (tiny models: call overheads); the
    end-to-end race then keeps the f32 graph, and every layer's row says why."""
    from graphopt import quantization

    monkeypatch.setattr(quantization, "slower_than_f32", lambda q, f, xs: "measured slower end to end (forced)")
    from graphopt.backends.cpu import kernels

    monkeypatch.setattr(kernels, "int8_linear_choice", lambda *a: (1, "forced"))
    q = graphopt.compile(_model(), (_x(),), quantize="int8-dynamic", budget=None)
    assert not any(n.op.name == "quantized_linear" for n in q.graph)
    assert {r["precision"] for r in q.layers} == {"fp32"}
    assert all("end to end" in r["reason"] for r in q.layers)
