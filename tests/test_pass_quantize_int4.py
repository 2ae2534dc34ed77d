"""int4 weight-only quantization: group-wise codes as blocked dequantize_linear, lowered to quantized_linear with a
group size, run by the cpu target's packed int4 kernel where it measures faster, exported to ONNX Runtime."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from graphopt.backends import get_backend
from graphopt.errors import VerificationError
from graphopt.ir import parse
from graphopt.ir.interpreter import run
from graphopt.ir.verifier import verify
from graphopt.passes import PassManager
from graphopt.passes.quantize import quantize_weight_groups, weight_error

from test_pass_quantize import _cosine, _inputs, _mlp


def _linear(out_f: int = 40, in_f: int = 128, seed: int = 0) -> tuple[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    text = f"""graph @f(%x: f32[n,{in_f}]) {{
  const @w: f32[{out_f},{in_f}] = external
  const @b: f32[{out_f}] = external
  %0: f32[n,{out_f}] = linear(%x, @w, @b)
  return %0
}}"""
    return text, {"w": rng.standard_normal((out_f, in_f)).astype(np.float32),
                  "b": rng.standard_normal(out_f).astype(np.float32)}


def test_group_codes_are_symmetric_4_bit_with_the_least_error_range_per_row_and_group() -> None:
    w = np.array([[7.0, -3.0, 0.0, 1.0, 14.0, 2.0, -7.0, 0.5]], np.float32)
    q, s = quantize_weight_groups(w, 4)
    # group 1 sits on the grid of max/7 = 1: exact, no clipping chosen
    assert s[0, 0] == 1.0 and q[0, :4].tolist() == [7, -3, 0, 1]
    assert q.dtype == np.int8 and s.shape == (1, 2) and q.min() >= -8 and q.max() <= 7
    # group 2: the chosen range errs no more than max scaling (s = 2: codes 7, 1, -4 (half to even), 0)
    err = lambda q_, s_: float(np.sum((w[0, 4:] - q_ * s_) ** 2))  # noqa: E731
    assert err(q[0, 4:], s[0, 1]) <= err(np.array([7, 1, -4, 0]), 2.0) == pytest.approx(1.0**2 + 0.5**2)
    row = weight_error(w, q, s)
    assert row["error"] == pytest.approx(err(q[0, 4:], s[0, 1]), rel=1e-5)
    # on Gaussian weights the clip search gains about 1 dB over max scaling
    g = np.random.default_rng(0).standard_normal((256, 512)).astype(np.float32)
    q, s = quantize_weight_groups(g, 128)
    amax = np.abs(g.reshape(256, 4, 128)).max(axis=2) / 7
    q_max = np.clip(np.rint(g.reshape(256, 4, 128) / amax[..., None]), -8, 7).reshape(256, 512)
    assert weight_error(g, q, s)["sqnr_db"] > weight_error(g, q_max, amax)["sqnr_db"] + 0.5


def test_int4_writes_blocked_dequantize_then_lowers_to_a_grouped_quantized_linear() -> None:
    text, consts = _linear(40, 128)
    g = parse(text, consts)
    PassManager.parse("quantize{mode=int4-weight-only group-size=32 min-weights=0},dce").run(g)
    (dq, lin) = list(g)
    assert dq.op.name == "dequantize_linear" and dq.attrs["block_size"] == 32 and dq.attrs["axis"] == 1
    codes, scale, zero = dq.inputs
    assert str(codes.type) == "i8[40,128]" and str(scale.type) == "f32[40,4]" and not np.any(zero.const)
    assert lin.op.name == "linear" and lin.inputs[0] is g.inputs[0]  # activations untouched
    q_graph = g.copy()
    PassManager.parse("lower-quantized,dce").run(g)
    (node,) = list(g)
    assert node.op.name == "quantized_linear" and node.attrs["group_size"] == 32
    assert node.attrs["act_quant"] == "none" and node.inputs[1] is codes and node.inputs[2] is scale
    x = _inputs(5)[0]
    np.testing.assert_allclose(run(g, [x])[0], run(q_graph, [x])[0], rtol=1e-5, atol=1e-4)


def test_layers_whose_inputs_do_not_split_into_groups_stay_float_and_say_why() -> None:
    text, consts = _linear(40, 96)
    g = parse(text, consts)
    r = PassManager.parse("quantize{mode=int4-weight-only group-size=64 min-weights=0}").run(g)
    kept = r.records[0].tables["kept_float"]
    assert kept == [{"layer": "0", "reason": "in_features 96 is not a multiple of group_size=64"}]
    assert [n.op.name for n in g] == ["linear"]


def test_grouped_ops_refuse_inconsistent_types() -> None:
    with pytest.raises(VerificationError, match="weight-only"):
        verify(parse("""graph @f(%x: f32[2,64], %q: i8[8,64], %s: f32[8,2]) {
  %0: f32[2,8] = quantized_linear(%x, %q, %s) {group_size=32, act_quant="dynamic"}
  return %0
}"""))
    with pytest.raises(VerificationError, match=r"f32\[8,2\]"):
        verify(parse("""graph @f(%x: f32[2,64], %q: i8[8,64], %s: f32[8,4]) {
  %0: f32[2,8] = quantized_linear(%x, %q, %s) {group_size=32, act_quant="none"}
  return %0
}"""))
    with pytest.raises(VerificationError, match=r"shape \[8, 3\]"):  # ceil(70 / 32) blocks
        verify(parse("""graph @f(%q: i8[8,70], %s: f32[8,2], %z: i8[8,2]) {
  %0: f32[8,70] = dequantize_linear(%q, %s, %z) {axis=1, block_size=32}
  return %0
}"""))


def test_blocked_dequantize_covers_a_last_partial_block_on_every_target() -> None:
    rng = np.random.default_rng(0)
    q = rng.integers(-8, 8, (8, 70)).astype(np.int8)
    s = rng.uniform(0.5, 2, (8, 3)).astype(np.float32)
    z = rng.integers(-2, 3, (8, 3)).astype(np.int8)
    g = parse("""graph @f(%q: i8[8,70], %s: f32[8,3], %z: i8[8,3]) {
  %0: f32[8,70] = dequantize_linear(%q, %s, %z) {axis=1, block_size=32}
  return %0
}""")
    want = (q.astype(np.float32) - np.repeat(z, 32, axis=1)[:, :70]) * np.repeat(s, 32, axis=1)[:, :70]
    for target in ("reference", "cpu", "onnxruntime"):
        np.testing.assert_allclose(get_backend(target).compile(g)(q, s, z)[0], want, rtol=1e-6, err_msg=target)


@pytest.mark.parametrize("target", ["reference", "cpu"])
def test_int4_model_stays_within_the_declared_budget(target: str) -> None:
    g, xs = _mlp(), _inputs()
    want = get_backend("reference").compile(g)(*xs)[0]
    r = PassManager.parse("quantize{mode=int4-weight-only},lower-quantized,dce").run(g)
    assert {n.op.name for n in g} == {"quantized_linear"}
    assert _cosine(get_backend(target).compile(g)(*xs)[0], want) >= 0.99  # the pass's declared budget
    layers = r.records[0].tables["layers"]
    assert all(15 < row["sqnr_db"] < 30 for row in layers)  # ~4 bits of signal: far below int8's 40+ dB


@pytest.mark.parametrize("rows_until, expect", [(None, "F.linear("), (256, "rt.int4_linear_weight_only("),
                                                (16, "rt.by_rows(")])
def test_cpu_int4_kernel_computes_the_reference_and_switches_at_the_measured_row_count(
        monkeypatch: pytest.MonkeyPatch, rows_until: int | None, expect: str) -> None:
    """The packed int4 kernel (forced) against the reference's f32 arithmetic on the same codes: equal up to the
    kernel's bf16 activations. 40 output features also exercise the padding to the kernel's 16-wide blocks."""
    from graphopt.backends.cpu import kernels

    monkeypatch.setattr(kernels, "int4_linear_choice", lambda *a, r=rows_until: (r, "forced"))
    text, consts = _linear(40, 128)
    g = parse(text, consts)
    PassManager.parse("quantize{mode=int4-weight-only group-size=64 min-weights=0},lower-quantized,dce").run(g)
    exe = get_backend("cpu").compile(g)
    assert expect in exe.source
    for rows in (3, 100):  # both sides of a by_rows switch
        xs = _inputs(rows)
        ref = get_backend("reference").compile(g)(*xs)[0]
        got = exe(*xs)[0]
        assert got.shape == ref.shape and _cosine(got, ref) > 0.9999
        np.testing.assert_allclose(got, ref, atol=0.02 * np.abs(ref).max())


def test_weight_only_kernel_choice_keeps_f32_from_the_first_row_count_it_loses() -> None:
    """faster_until, forced: a kernel slower everywhere is never chosen; one slower only past 16 rows runs up to
    16 rows; the times back the choice."""
    from graphopt.backends.cpu.kernels import faster_until

    w = torch.randn(64, 32)
    base = lambda x: F.linear(x, w)  # noqa: E731
    slow = lambda x: (time.sleep(0.005), base(x))[1]  # noqa: E731
    rows, times = faster_until(slow, base, 32)
    assert rows is None and len(times) == 1 and times[0][0] == 1
    slow_past_16 = lambda x: (time.sleep(0.008 if x.shape[0] > 16 else 0), base(x))[1]  # noqa: E731
    padded = lambda x: (time.sleep(0.003), base(x))[1]  # noqa: E731
    rows, times = faster_until(slow_past_16, padded, 32)
    assert rows == 16 and [r for r, _, _ in times] == [1, 16, 64]


def test_onnxruntime_runs_int4_graphs_before_and_after_lowering() -> None:
    text, consts = _linear(40, 128)
    g = parse(text, consts)
    PassManager.parse("quantize{mode=int4-weight-only group-size=32 min-weights=0}").run(g)
    lowered = g.copy()
    PassManager.parse("lower-quantized,dce").run(lowered)
    xs = _inputs(7)
    for graph in (g, lowered):
        want = get_backend("reference").compile(graph)(*xs)[0]
        np.testing.assert_allclose(get_backend("onnxruntime").compile(graph)(*xs)[0], want, rtol=1e-4, atol=1e-4)


def test_compile_reports_each_layer_in_int4_or_f32_with_the_measured_reason() -> None:
    import graphopt

    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256)).eval()
    x = torch.randn(1, 256)
    c = graphopt.compile(model, (x,), quantize="int4-weight-only")
    assert [r["precision"] in ("int4", "fp32") for r in c.layers] == [True, True]
    assert all("int4 weight-only" in r["reason"] for r in c.layers)
    with torch.inference_mode():
        assert _cosine(c(x).numpy(), model(x).numpy()) > 0.99


def test_each_layer_row_names_its_own_precision_embeddings_staying_int8_rows() -> None:
    rng = np.random.default_rng(0)
    g = parse("""graph @f(%ids: i64[4]) {
  const @table: f32[100,64] = external
  const @w: f32[32,64] = external
  %0: f32[4,64] = gather(@table, %ids) {axis=0}
  %1: f32[4,32] = linear(%0, @w)
  return %1
}""", {"table": rng.standard_normal((100, 64)).astype(np.float32),
       "w": rng.standard_normal((32, 64)).astype(np.float32)})
    r = PassManager.parse("quantize{mode=int4-weight-only group-size=32 min-weights=0 min-embedding=0}").run(g)
    assert [(row["layer"], row["precision"]) for row in r.records[0].tables["layers"]] == [("1", "int4"),
                                                                                          ("0", "int8")]


def test_int4_artifacts_store_two_codes_per_byte_and_load_back_exactly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import graphopt
    from graphopt.artifact import _nibble_form, _unpacked

    odd = np.random.default_rng(0).integers(-8, 8, (63, 67)).astype(np.int8)  # an odd number of codes
    packed, names = _nibble_form({"q": odd, "wide": np.full(5000, 9, np.int8)})
    assert names == ["q"] and packed["q/int4"].nbytes == (odd.size + 1) // 2 and "wide" in packed
    back = _unpacked(dict(packed), {"int4": names, "shapes": {"q": [63, 67]}})
    np.testing.assert_array_equal(back["q"], odd)

    model = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512)).eval()
    x = torch.randn(1, 512)
    f32 = graphopt.compile(model, (x,))
    q = graphopt.compile(model, (x,), quantize="int4-weight-only", kernel_choice="always")
    assert {r["precision"] for r in q.layers} == {"int4"}
    sizes = {}
    for name, m in (("f32", f32), ("int4", q)):
        folder = m.save(tmp_path / name)
        sizes[name] = (folder / "weights.safetensors").stat().st_size
    assert sizes["int4"] < 0.16 * sizes["f32"]  # 4 bits + a f32 scale per 128 weights + the f32 biases
    loaded = graphopt.load_model(tmp_path / "int4")
    for name, v in q.graph.constants.items():
        np.testing.assert_array_equal(loaded.graph.constants[name].const, v.const)
    with torch.inference_mode():
        np.testing.assert_allclose(loaded(x).numpy(), q(x).numpy(), rtol=1e-6, atol=1e-6)
