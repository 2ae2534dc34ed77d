"""The cpu target's recurrent layers on ONNX Runtime's kernels where measured faster: the same results as torch's
and the reference, the choice measured (and forced both ways here), the artifact still plain text."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from graphopt.backends import get_backend
from graphopt.backends.cpu import delegate
from graphopt.ir import Graph, parse


def _recurrent(op: str, batch_first: bool = True, extra: str = "") -> tuple[Graph, list[np.ndarray]]:
    """One LSTM/GRU/RNN layer with constant weights and initial state (what nn.LSTM traces to), x an input."""
    rng = np.random.default_rng(0)
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[op]
    states = 2 if op == "lstm" else 1
    x_shape = "[2,7,5]" if batch_first else "[7,2,5]"
    y_shape = "[2,7,6]" if batch_first else "[7,2,6]"
    consts = {f"h{i}": rng.standard_normal((1, 2, 6)).astype(np.float32) for i in range(states)}
    consts |= {"wi": rng.standard_normal((6 * gates, 5)).astype(np.float32) * 0.4,
               "wh": rng.standard_normal((6 * gates, 6)).astype(np.float32) * 0.4,
               "bi": rng.standard_normal(6 * gates).astype(np.float32) * 0.1,
               "bh": rng.standard_normal(6 * gates).astype(np.float32) * 0.1}
    decl = "\n".join(f"  const @{k}: f32[{','.join(map(str, v.shape))}] = external" for k, v in consts.items())
    finals = ", ".join(f"%s{i}: f32[1,2,6]" for i in range(states))
    operands = ", ".join([*(f"@h{i}" for i in range(states)), "@wi", "@wh", "@bi", "@bh"])
    g = parse(f"""graph @f(%x: f32{x_shape}) {{
{decl}
  %y: f32{y_shape}, {finals} = {op}(%x, {operands}) {{batch_first={str(batch_first).lower()}{extra}}}
  return %y, %s0
}}""", consts)
    return g, [rng.standard_normal((2, 7, 5) if batch_first else (7, 2, 5)).astype(np.float32)]


CASES = [("lstm", True, ""), ("lstm", False, ""), ("gru", True, ""), ("gru", False, ", linear_before_reset=false"),
         ("rnn", False, ""), ("rnn", True, ', nonlinearity="relu"')]


@pytest.mark.parametrize("op, batch_first, extra", CASES)
def test_delegated_recurrent_layers_compute_what_torch_and_the_reference_compute(
        monkeypatch: pytest.MonkeyPatch, op: str, batch_first: bool, extra: str) -> None:
    g, xs = _recurrent(op, batch_first, extra)
    want = get_backend("reference").compile(g)(*xs)
    with delegate.torch_only():
        plain = get_backend("cpu").compile(g)
    assert "rt.OrtNode" not in plain.source
    monkeypatch.setattr(delegate, "_race", lambda *a: 1)  # forced: ONNX Runtime, one thread
    exe = get_backend("cpu").compile(g)
    assert exe.source.count("rt.OrtNode(") == 1 and "threads=1" in exe.source
    for got in (exe(*xs), plain(*xs)):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_the_race_keeps_torch_unless_onnx_runtime_is_clearly_faster(monkeypatch: pytest.MonkeyPatch) -> None:
    """The decision rule, with the kernels' times forced: ONNX Runtime must take under 90% of torch's time."""
    from graphopt.backends.cpu import kernels

    g, _ = _recurrent("lstm")
    for ort_ms, expect in ((0.95, None), (0.5, 1)):  # ties go to one thread, the first tried
        delegate._race.cache_clear()
        monkeypatch.setattr(kernels, "race", lambda a, b, pairs=9, t=ort_ms: (a(), b(), (t, 1.0))[2])
        found = delegate.regions(g)
        assert (next(iter(found.values())).threads if found else None) == expect
    delegate._race.cache_clear()


def test_the_measured_choice_on_a_real_lstm_gives_the_same_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import graphopt

    lstm = torch.nn.LSTM(16, 32, batch_first=True).eval()

    class Last(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = lstm

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lstm(x)[1][0][-1]

    model, x = Last().eval(), torch.randn(1, 20, 16)
    c = graphopt.compile(model, (x,))
    with torch.inference_mode():
        np.testing.assert_allclose(c(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)
    assert ("rt.OrtNode(" in c.source) == bool(delegate.regions(c.graph))  # measured: either way is right
    loaded = graphopt.load_model(c.save(tmp_path / "lstm"))  # no pickle: the session is rebuilt from text
    with torch.inference_mode():
        np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)


def test_nodes_without_constant_operands_and_torch_only_stay_on_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    g = parse("""graph @f(%x: f32[7,2,5], %h: f32[1,2,6], %wi: f32[6,5], %wh: f32[6,6], %bi: f32[6], %bh: f32[6]) {
  %y: f32[7,2,6], %s: f32[1,2,6] = rnn(%x, %h, %wi, %wh, %bi, %bh)
  return %y
}""")
    assert delegate.regions(g) == {}  # nothing to build a session from once
    lstm, _ = _recurrent("lstm")
    monkeypatch.setattr(delegate, "_race", lambda *a: 1)  # ONNX Runtime would win
    with delegate.torch_only():
        assert delegate.regions(lstm) == {}


def _classifier(y_out: bool) -> tuple[Graph, list[np.ndarray]]:
    """embedding → LSTM → last step → linear head (the LSTM classifier's graph); with `y_out` the LSTM's per-step
    outputs are a graph output too."""
    rng = np.random.default_rng(1)
    consts = {"table": rng.standard_normal((50, 5)).astype(np.float32),
              "h0": np.zeros((1, 1, 6), np.float32),
              "wi": rng.standard_normal((24, 5)).astype(np.float32) * 0.4,
              "wh": rng.standard_normal((24, 6)).astype(np.float32) * 0.4,
              "bi": rng.standard_normal(24).astype(np.float32) * 0.1,
              "bh": rng.standard_normal(24).astype(np.float32) * 0.1,
              "wo": rng.standard_normal((2, 6)).astype(np.float32),
              "bo": rng.standard_normal(2).astype(np.float32), "minus1": np.array(-1, np.int64)}
    decl = "\n".join(f"  const @{k}: {'i64' if v.dtype == np.int64 else 'f32'}[{','.join(map(str, v.shape))}] = "
                     "external" for k, v in consts.items())
    g = parse(f"""graph @f(%ids: i64[1,9]) {{
{decl}
  %e: f32[1,9,5] = gather(@table, %ids)
  %y: f32[1,9,6], %h: f32[1,1,6], %c: f32[1,1,6] = lstm(%e, @h0, @h0, @wi, @wh, @bi, @bh) {{batch_first=true}}
  %last: f32[1,6] = gather(%h, @minus1)
  %out: f32[1,2] = linear(%last, @wo, @bo)
  return %out{", %y" if y_out else ""}
}}""", consts)
    return g, [rng.integers(0, 50, (1, 9))]


@pytest.mark.parametrize("y_out, delegated", [(False, 4), (True, 2)])
def test_a_region_grows_along_single_use_producers_and_consumers(monkeypatch: pytest.MonkeyPatch, y_out: bool,
                                                                 delegated: int) -> None:
    """Forced to ONNX Runtime: the whole classifier is one call; when the LSTM's other output leaves the graph,
    the region stops at the LSTM (its consumers would need a value computed inside), keeping the embedding."""
    monkeypatch.setattr(delegate, "_race", lambda *a: 1)
    g, xs = _classifier(y_out)
    exe = get_backend("cpu").compile(g)
    assert exe.source.count("rt.OrtNode(") == 1 and f"({delegated} nodes on ONNX Runtime" in exe.source
    want = get_backend("reference").compile(g)(*xs)
    for got, w in zip(exe(*xs), want):
        np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("y_out", [False, True])
def test_recurrent_outputs_nothing_reads_are_not_written_by_onnx_runtime(y_out: bool) -> None:
    """An unread output of an ONNX recurrent op gets no name, so ONNX Runtime skips writing every step's output
    (the classifier reads only the last hidden state); a read one is still exported and correct."""
    from graphopt.backends.onnx_export import to_onnx

    g, xs = _classifier(y_out)
    (lstm,) = [n for n in to_onnx(g).graph.node if n.op_type == "LSTM"]
    assert (lstm.output[0] == "") is not y_out and lstm.output[2] == ""  # the final cell state is never read
    want = get_backend("reference").compile(g)(*xs)
    for got, w in zip(get_backend("onnxruntime").compile(g)(*xs), want):
        np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-5)


def test_a_graph_that_is_one_onnx_runtime_call_is_called_directly_and_still_checks_its_inputs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delegate, "_race", lambda *a: 1)
    from graphopt.errors import InputError

    for y_out, direct in ((False, True), (True, False)):  # with %y returned, the embedding runs in torch first
        g, xs = _classifier(y_out)
        exe = get_backend("cpu").compile(g)
        assert ("forward.whole_graph_session = " in exe.source) is direct
        want = get_backend("reference").compile(g)(*xs)
        got_np, got_t = exe(*xs), exe(torch.from_numpy(xs[0]))
        assert isinstance(got_np[0], np.ndarray) and isinstance(got_t[0], torch.Tensor)
        for a, b, w in zip(got_np, got_t, want):
            np.testing.assert_allclose(a, w, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(b.numpy(), w, rtol=1e-5, atol=1e-5)
        with pytest.raises(InputError, match="dim 1"):
            exe(np.zeros((1, 5), np.int64))
        with pytest.raises(InputError, match="dim 1"):
            exe(torch.zeros((1, 5), dtype=torch.int64))
        with pytest.raises(InputError, match="must be i64"):
            exe(xs[0].astype(np.int32))
        with pytest.raises(InputError, match="must be i64"):
            exe(torch.from_numpy(xs[0]).int())
        wide = np.repeat(xs[0], 2, axis=1)[:, ::2]  # a strided view: the same values, not contiguous
        np.testing.assert_allclose(exe(wide)[0], want[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(exe(**{g.inputs[0].name: xs[0]})[0], want[0], rtol=1e-5, atol=1e-5)


def test_serving_calls_of_a_whole_graph_session_skip_the_python_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Valid calls go straight to ONNX Runtime (which checks static dims and dtypes itself): no bind_arrays, no
    torch conversion for numpy inputs; only a refused call takes the checked path."""
    import graphopt.backends.cpu as cpu

    monkeypatch.setattr(delegate, "_race", lambda *a: 1)
    g, xs = _classifier(False)
    exe = get_backend("cpu").compile(g)
    checks = []
    real = cpu.bind_arrays
    monkeypatch.setattr(cpu, "bind_arrays", lambda *a: checks.append(1) or real(*a))
    converted = []
    real_from = cpu.from_numpy
    monkeypatch.setattr(cpu, "from_numpy", lambda a: converted.append(1) or real_from(a))
    for _ in range(3):
        exe(*xs)
        exe(torch.from_numpy(xs[0]))
    assert checks == []
    from graphopt.errors import InputError

    with pytest.raises(InputError, match="must be i64"):
        exe(xs[0].astype(np.float32))
    assert checks == [1]


def test_trainable_graphs_keep_torchs_recurrent_kernels_so_gradients_reach_the_weights(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Distillation and Taylor importance differentiate the generated code: ONNX Runtime has no backward, so a
    delegated LSTM would train nothing (and rebuild its session on every step)."""
    from graphopt.backends.cpu.trainable import TrainableGraph

    monkeypatch.setattr(delegate, "_race", lambda *a: 1)  # ONNX Runtime would win every race
    g, xs = _classifier(False)
    assert "rt.OrtNode(" in get_backend("cpu").compile(g).source
    m = TrainableGraph(g)
    assert "rt.OrtNode(" not in m.source
    m(torch.from_numpy(xs[0]))[0].sum().backward()
    assert float(m.grad_of("wh").abs().sum()) > 0 and float(m.grad_of("table").abs().sum()) > 0


def _cnn(batch: str = "n") -> tuple[Graph, dict[str, np.ndarray]]:
    """The digits CNN's graph after O2: fused conv+relu, a max pool, a residual conv, global average, linear head."""
    rng = np.random.default_rng(3)
    consts = {"w1": rng.standard_normal((8, 1, 3, 3)), "b1": rng.standard_normal(8),
              "w2": rng.standard_normal((8, 8, 3, 3)) * 0.3, "b2": rng.standard_normal(8),
              "w3": rng.standard_normal((16, 8, 3, 3)) * 0.3, "b3": rng.standard_normal(16),
              "wo": rng.standard_normal((10, 16)), "bo": rng.standard_normal(10)}
    consts = {k: v.astype(np.float32) for k, v in consts.items()}
    decl = "\n".join(f"  const @{k}: f32[{','.join(map(str, v.shape))}] = external" for k, v in consts.items())
    g = parse(f"""graph @f(%x: f32[{batch},1,8,8]) {{
{decl}
  %0: f32[{batch},8,8,8] = conv(%x, @w1, @b1) {{pads=[1, 1, 1, 1], activation="relu"}}
  %1: f32[{batch},8,8,8] = conv(%0, @w2, @b2, %0) {{pads=[1, 1, 1, 1], activation="relu"}}
  %2: f32[{batch},8,4,4] = max_pool(%1) {{kernel=[2, 2], strides=[2, 2]}}
  %3: f32[{batch},16,4,4] = conv(%2, @w3, @b3) {{pads=[1, 1, 1, 1], activation="relu"}}
  %4: f32[{batch},16,1,1] = reduce_mean(%3) {{axes=[-1, -2], keepdims=true}}
  %5: f32[{batch},16] = reshape(%4) {{shape=[{batch}, 16]}}
  %6: f32[{batch},10] = linear(%5, @wo, @bo)
  return %6, %2
}}""", consts)
    return g, consts


def test_a_conv_chain_runs_as_one_onnx_runtime_call_where_measured_faster(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forced to ONNX Runtime: the chain from the first conv (the residual conv reads its input twice, both inside)
    to the pooling is one call, ending where a value leaves the graph (%2 is an output); the second conv chain to
    the head is another. Results equal the reference's at every batch (the batch is symbolic)."""
    monkeypatch.setattr(delegate, "_race", lambda *a: 2)
    g, _ = _cnn()
    exe = get_backend("cpu").compile(g)
    assert exe.source.count("rt.OrtNode(") == 2 and "(3 nodes on ONNX Runtime" in exe.source
    assert "(4 nodes on ONNX Runtime" in exe.source and "threads=2" in exe.source
    rng = np.random.default_rng(4)
    for batch in (1, 5):
        x = rng.standard_normal((batch, 1, 8, 8)).astype(np.float32)
        for got, want in zip(exe(x), get_backend("reference").compile(g)(x)):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_the_measured_conv_choice_gives_the_same_results_either_way() -> None:
    """Unforced: whichever side the race picks on this machine computes what torch's kernels compute."""
    delegate._race.cache_clear()
    g, _ = _cnn("4")
    x = np.random.default_rng(5).standard_normal((4, 1, 8, 8)).astype(np.float32)
    exe = get_backend("cpu").compile(g)
    with delegate.torch_only():
        plain = get_backend("cpu").compile(g)
    assert "rt.OrtNode(" not in plain.source
    assert ("rt.OrtNode(" in exe.source) == bool(delegate.regions(g))
    for a, b in zip(exe(x), plain(x)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_a_span_that_lost_is_not_raced_again_from_inside(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three residual blocks, ONNX Runtime forced to lose: the span from the first conv (the whole network) is raced
    once; the seeds inside it race only their chains and themselves, not the tails of that span (each a new,
    slower-to-time region in a deep CNN where torch wins everywhere)."""
    rng = np.random.default_rng(9)
    consts = {f"w{i}": rng.standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.2 for i in range(6)}
    consts["bias"] = np.zeros(4, np.float32)
    decl = "\n".join(f"  const @{k}: f32[{','.join(map(str, v.shape))}] = external" for k, v in consts.items())
    body, x = [], "%x"
    for b in range(3):
        body.append(f"  %a{b}: f32[1,4,6,6] = conv({x}, @w{2 * b}) {{pads=[1,1,1,1], activation=\"relu\"}}")
        body.append(f"  %b{b}: f32[1,4,6,6] = conv(%a{b}, @w{2 * b + 1}, @bias, {x}) "
                    "{pads=[1,1,1,1], activation=\"relu\"}")
        x = f"%b{b}"
    g = parse("graph @f(%x: f32[1,4,6,6]) {\n" + decl + "\n" + "\n".join(body) + f"\n  return {x}\n}}", consts)
    raced: list[int] = []
    monkeypatch.setattr(delegate, "_race", lambda text, *a: raced.append(text.count(" = conv(")) or 0)
    spans = []
    real_span = delegate._span
    monkeypatch.setattr(delegate, "_span", lambda chain, *a: spans.append(len(chain)) or real_span(chain, *a))
    assert delegate.regions(g) == {}
    assert raced[0] == 6 and spans == [2]  # the first seed's span is the whole network; no seed inside re-spans
