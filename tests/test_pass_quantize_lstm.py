"""int8 LSTM: quantize rounds an lstm's weights (Q/DQ), lower-quantized turns it into a quantized_lstm whose GEMMs
run in integers, every target computes what the reference integer op computes, and the cpu target keeps f32 where
it measures int8 slower (with the reason)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import graphopt
from graphopt.backends import get_backend
from graphopt.backends.cpu import CpuExecutable
from graphopt.backends.cpu.delegate import torch_only
from graphopt.backends.reference import random_inputs
from graphopt.ir import Graph, parse
from graphopt.ir.interpreter import run
from graphopt.passes import PassContext, PassManager
from graphopt.passes.quantize import KernelAdvice


def _lstm(batch_first: bool = True, steps: int = 12, batch: int = 1, inputs: int = 16, hidden: int = 32,
          seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    bound = 1 / np.sqrt(hidden)
    w = {k: rng.uniform(-bound, bound, s).astype(np.float32) for k, s in
         (("wi", (4 * hidden, inputs)), ("wh", (4 * hidden, hidden)), ("bi", (4 * hidden,)), ("bh", (4 * hidden,)))}
    x = f"{batch},{steps},{inputs}" if batch_first else f"{steps},{batch},{inputs}"
    y = f"{batch},{steps},{hidden}" if batch_first else f"{steps},{batch},{hidden}"
    return parse(f"""graph @f(%x: f32[{x}], %h: f32[1,{batch},{hidden}], %c: f32[1,{batch},{hidden}]) {{
  const @wi: f32[{4 * hidden},{inputs}] = external
  const @wh: f32[{4 * hidden},{hidden}] = external
  const @bi: f32[{4 * hidden}] = external
  const @bh: f32[{4 * hidden}] = external
  %y: f32[{y}], %hn: f32[1,{batch},{hidden}], %cn: f32[1,{batch},{hidden}] = lstm(%x, %h, %c, @wi, @wh, @bi, @bh) {{batch_first={str(batch_first).lower()}}}
  return %y, %hn, %cn
}}""", w)


def _inputs(g: Graph, seed: int = 1) -> list[np.ndarray]:
    return random_inputs(g, {}, seed=seed)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_lstm_weights_become_int8_rows_then_one_quantized_lstm() -> None:
    g = _lstm()
    r = PassManager.parse("quantize{min-weights=0},dce").run(g)
    lstm = next(n for n in g if n.op.name == "lstm")
    for k in (3, 4):  # both weights: dequantize_linear of int8 rows, one scale per gate row
        dq = lstm.inputs[k].producer
        assert dq is not None and dq.op.name == "dequantize_linear" and dq.inputs[0].type.dtype.name == "I8"
        assert dq.inputs[1].type.shape == (128,)
    (row,) = r.records[0].tables["layers"]
    assert row["layer"] == "y" and row["shape"] == [128, 48] and row["sqnr_db"] > 35
    assert row["precision"] == "int8" and row["activations"] == "dynamic"
    PassManager.parse("lower-quantized,dce").run(g)
    assert [n.op.name for n in g] == ["quantized_lstm"]
    text = g.format()
    assert "quantized_lstm(%x, %h, %c, @wi.int8, @wi.scale, @wh.int8, @wh.scale, @bi, @bh) {batch_first=true}" in text


@pytest.mark.parametrize("batch_first", [True, False])
def test_the_integer_lstm_stays_within_two_percent_of_f32(batch_first: bool) -> None:
    g = _lstm(batch_first, batch=3)
    xs = _inputs(g)
    want = run(g, xs)
    PassManager.parse("quantize{min-weights=0},lower-quantized,dce").run(g)
    got = run(g, xs)
    for a, b in zip(got, want):
        assert a.shape == b.shape and _rel(a, b) < 0.02


@pytest.mark.parametrize("batch_first", [True, False])
def test_every_target_computes_the_reference_integer_lstm(batch_first: bool) -> None:
    g = _lstm(batch_first)
    PassManager.parse("quantize{min-weights=0},lower-quantized,dce").run(g)
    xs = _inputs(g)
    want = run(g, xs)
    # batch 1: ONNX Runtime's DynamicQuantizeLSTM quantizes as the op states (at larger batches on several threads
    # it quantizes h per chunk of rows, finer than the op: within the budget, not bit-equal)
    ort = get_backend("onnxruntime").compile(g)(*xs)
    with torch_only():
        emulated = CpuExecutable(g)(*[torch.from_numpy(x) for x in xs])
    raced = CpuExecutable(g)(*[torch.from_numpy(x) for x in xs])
    for got in (ort, [t.numpy() for t in emulated], [t.numpy() for t in raced]):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, atol=2e-5)


def test_the_onnx_export_is_onnx_runtime_s_int8_lstm() -> None:
    from graphopt.backends.onnx_export import to_onnx

    g = _lstm()
    PassManager.parse("quantize{min-weights=0},lower-quantized,dce").run(g)
    model = to_onnx(g)
    (node,) = [n for n in model.graph.node if n.op_type == "DynamicQuantizeLSTM"]
    assert node.domain == "com.microsoft" and {o.domain for o in model.opset_import} == {"", "com.microsoft"}
    inits = {t.name: t for t in model.graph.initializer}
    assert tuple(inits[node.input[1]].dims) == (1, 16, 128) and inits[node.input[1]].data_type == 3  # int8
    assert not {"wi", "wh"} & set(inits)  # the IR's [4H, in] layout is not shipped unread


def test_layers_without_an_int8_kernel_or_a_win_stay_f32_and_say_why() -> None:
    g = _lstm()
    slower = KernelAdvice(lambda *a: (True, ""), lstm=lambda *shape: (False, f"measured slower at {shape}"))
    r = PassManager.parse("quantize{min-weights=0}").run(g, PassContext().provide(slower))
    assert r.records[0].tables["kept_float"] == [{"layer": "y", "reason": "measured slower at (12, 1, 16, 32)"}]
    assert [n.op.name for n in g] == ["lstm"]
    g = _lstm()
    r = PassManager.parse("quantize{min-weights=0 mode=int8-weight-only}").run(g)
    assert "int8-dynamic and int8-static only" in r.records[0].tables["kept_float"][0]["reason"]
    gru = parse("""graph @f(%x: f32[5,1,4], %h: f32[1,1,8]) {
  const @wi: f32[24,4] = external
  const @wh: f32[24,8] = external
  const @b: f32[24] = external
  %y: f32[5,1,8], %hn: f32[1,1,8] = gru(%x, %h, @wi, @wh, @b, @b)
  return %y
}""", {"wi": np.ones((24, 4), np.float32), "wh": np.ones((24, 8), np.float32), "b": np.ones(24, np.float32)})
    r = PassManager.parse("quantize{min-weights=0}").run(gru)
    assert "no int8 GRU kernel" in r.records[0].tables["kept_float"][0]["reason"]


def test_lstm_advice_times_both_sides_and_refuses_an_int8_kernel_that_errs(monkeypatch: pytest.MonkeyPatch) -> None:
    from graphopt.backends.cpu import recurrent

    recurrent.lstm_advice.cache_clear()
    wins, why = recurrent.lstm_advice(8, 1, 16, 32)
    assert why.startswith("int8 LSTM") and " vs " in why and "8 steps x batch 1, 16->32" in why
    assert wins == ("faster here" in why)
    recurrent.lstm_advice.cache_clear()
    monkeypatch.setattr(recurrent, "_MAX_REL_ERROR", 0.0)  # any rounding at all now counts as erring
    wins, why = recurrent.lstm_advice(8, 1, 16, 32)
    assert not wins and "errs on this CPU" in why
    recurrent.lstm_advice.cache_clear()


def test_compile_in_int8_reports_the_lstm_and_saves_int8_weights(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    from graphopt import quantization
    from graphopt.backends.cpu import recurrent

    monkeypatch.setattr(recurrent, "lstm_advice", lambda *shape: (True, "forced for the test"))
    monkeypatch.setattr(quantization, "slower_than_f32", lambda *a: None)
    torch.manual_seed(0)
    net = torch.nn.LSTM(32, 128, batch_first=True).eval()
    x = torch.randn(2, 20, 32)
    q = graphopt.compile(net, (x,), quantize="int8-dynamic")
    ((layer, precision, reason),) = [(r["layer"], r["precision"], r["reason"]) for r in q.layers]
    assert (layer, precision, reason) == ("output_0", "int8", "forced for the test")
    assert [n.op.name for n in q.graph] == ["quantized_lstm"]
    with torch.inference_mode():
        want = net(x)[0].numpy()
    got = q(x)
    got = (got[0] if isinstance(got, (tuple, list)) else got).numpy()
    assert _rel(got, want) < 0.01
    q.save(tmp_path / "q")
    graphopt.compile(net, (x,)).save(tmp_path / "f")
    size = lambda d: sum(p.stat().st_size for p in d.iterdir())  # noqa: E731
    assert size(tmp_path / "q") <= 0.3 * size(tmp_path / "f")
    loaded = graphopt.load(tmp_path / "q")
    again = loaded(x)
    np.testing.assert_array_equal((again[0] if isinstance(again, (tuple, list)) else again).numpy(), got)


@pytest.mark.parametrize("target", ["reference", "cpu", "onnxruntime"])
def test_bidirectional_stacked_lstms_quantize_layer_by_layer(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    from graphopt import quantization
    from graphopt.backends.cpu import recurrent

    monkeypatch.setattr(recurrent, "lstm_advice", lambda *shape: (True, "forced for the test"))
    monkeypatch.setattr(quantization, "slower_than_f32", lambda *a: None)
    torch.manual_seed(0)
    net = torch.nn.LSTM(16, 32, num_layers=2, bidirectional=True, batch_first=True).eval()
    x = torch.randn(3, 9, 16)
    q = graphopt.compile(net, (x,), quantize="int8-dynamic", target=target)
    assert sum(n.op.name == "quantized_lstm" for n in q.graph) == 4  # two layers, two directions
    assert [r["precision"] for r in q.layers] == ["int8"] * 4
    with torch.inference_mode():
        want = net(x)[0].numpy()
    got = q(x)
    got = np.asarray(got[0] if isinstance(got, (tuple, list)) else got)
    assert _rel(got, want) < 0.02
