"""Model files are untrusted: nothing in a .gir, an artifact or an .onnx file may run code or hang the parser.

The payloads set an attribute on the `builtins` module; every test asserts it was never set.
"""

from __future__ import annotations

import builtins
import io
import time
import tokenize
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import graphopt
from graphopt.backends import get_backend
from graphopt.errors import GraphoptError, ModelLoadError
from graphopt.ir import DType, Graph, TensorType, parse
from graphopt.ir.dimexpr import DimSyntaxError, parse_dim

MARK = "graphopt_test_pwned"
RUN = f"__import__('builtins').__setattr__('{MARK}', 1)"
# text that ends a comment or a string literal and starts a statement, in each spelling of a line break
HOSTILE = [f"a\n{RUN}\n#", f"a\r{RUN}\r#", f"a'\"\\\n{RUN}", f"x\u2028{RUN}", f"{RUN}"]


@pytest.fixture(autouse=True)
def _never_pwned():
    if hasattr(builtins, MARK):
        delattr(builtins, MARK)
    yield
    assert not hasattr(builtins, MARK), "a model file ran code"


EVAL_DIMS = [
    "Max(*(__import__('builtins').__setattr__('graphopt_test_pwned', 1) for a in (1,)))",
    "Max(*(getattr(a, chr(95)) for a in (1,)))",
    "__import__",
    "batch.__class__",
    "lambda: 1",
    "batch if 1 else 2",
    "[batch]",
]


@pytest.mark.parametrize("dim", EVAL_DIMS)
def test_dim_expressions_are_never_evaluated(dim: str) -> None:
    with pytest.raises(DimSyntaxError):
        parse_dim(dim)
    with pytest.raises(TypeError, match="dim"):
        TensorType(DType.F32, (dim,))
    text = f'graph @g(%x: f32[{json_str(dim)}]) {{\n  %0: f32[{json_str(dim)}] = relu(%x)\n  return %0\n}}'
    with pytest.raises(GraphoptError):
        parse(text)


def json_str(s: str) -> str:
    import json

    return json.dumps(s)


@pytest.mark.parametrize("dim", ["9**9**9**9", "9" * 5000, "(" * 500 + "1" + ")" * 500, "batch**99",
                                 "2**62*4", "-" * 400 + "1"])
def test_huge_dims_fail_fast(dim: str) -> None:
    start = time.perf_counter()
    with pytest.raises(DimSyntaxError):
        parse_dim(dim)
    assert time.perf_counter() - start < 1.0


def test_grammar_reads_what_sympy_prints() -> None:
    from graphopt.ir.symbolic import canon, evaluate

    for text in ["floor(batch/2)", "Max(batch,seq)", "Mod(seq,4)", "ceiling(seq/3)", "seq**2", "-batch+seq",
                 "2*batch*seq+1", "floor((seq-1)/2)+1", "seq // 2"]:
        d = canon(text)
        assert canon(str(d)) == d
    assert evaluate("floor((seq-1)/2)+1", {"seq": 9}) == 5
    assert evaluate("seq // 2 + Mod(seq, 4)", {"seq": 7}) == 6
    assert evaluate("Max(batch, 2*seq) - Min(batch, seq)", {"batch": 3, "seq": 5}) == 7


def _hostile_graph(payload: str) -> Graph:
    """A graph whose name, input, constant, value names and every origin hold `payload`."""
    g = Graph(payload)
    x = g.add_input(payload, TensorType(DType.F32, ("batch", 4)))
    w = g.add_constant(np.arange(4, dtype=np.float32), name=payload + "w")
    y = g.add("mul", [x, w], names=[payload + "y"], origin=payload)
    z = g.add("relu", [y], names=[payload + "z"], origin=payload + "2")
    g.set_outputs([z])
    return g


@pytest.mark.parametrize("target", ["reference", "cpu", "onnxruntime"])
@pytest.mark.parametrize("payload", HOSTILE)
def test_names_and_origins_never_reach_code(target: str, payload: str, tmp_path: Path) -> None:
    g = _hostile_graph(payload)
    g.verify()
    x = np.array([[-1.0, 2.0, 3.0, -4.0]], np.float32)
    want = np.maximum(x * np.arange(4, dtype=np.float32), 0)
    model = graphopt.compile(g, target=target, pipeline="O0")
    np.testing.assert_array_equal(_first(model(x)), want)
    again = parse(g.format())  # the text form quotes every name: it round-trips and stays inert
    assert again.name == payload and again.inputs[0].name == payload
    model.save(tmp_path / "art")
    loaded = graphopt.load(tmp_path / "art")
    np.testing.assert_array_equal(_first(loaded(x)), want)


def _first(out: object) -> np.ndarray:
    return np.asarray(out[0] if isinstance(out, (list, tuple)) else out)


def test_cpu_source_keeps_hostile_text_inside_comments() -> None:
    for payload in HOSTILE:
        exe = get_backend("cpu").compile(_hostile_graph(payload))
        tokens = tokenize.generate_tokens(io.StringIO(exe.source).readline)
        names = {t.string for t in tokens if t.type == tokenize.NAME}
        assert not names & {"__import__", "__setattr__", "builtins"}


@pytest.mark.parametrize("payload", HOSTILE)
def test_onnx_node_and_graph_names_never_reach_code(payload: str) -> None:
    nodes = [helper.make_node("Relu", ["x"], ["h"], name=payload),
             helper.make_node("Neg", ["h"], ["y"], name=payload + "2")]
    graph = helper.make_graph(nodes, payload, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    for target in ("cpu", "onnxruntime", "reference"):
        compiled = graphopt.compile(model, target=target)
        x = np.array([[1.0, -2.0, 3.0]], np.float32)
        np.testing.assert_array_equal(_first(compiled(x)), -np.maximum(x, 0))


def test_tampered_artifact_dim_cannot_run_code(tmp_path: Path) -> None:
    """The manifest's sums are not a signature: a tampered model.gir with a recomputed sum loads, but all it can
    change is numbers — a dim expression that would run code is rejected by the parser."""
    import hashlib
    import json

    g = parse('graph @f(%x: f32[n]) {\n  %0: f32[n] = relu(%x)\n  return %0\n}')
    graphopt.compile(g, target="cpu").save(tmp_path / "a")
    gir = tmp_path / "a" / "model.gir"
    gir.write_text(gir.read_text().replace("f32[n]", f"f32[{json_str(EVAL_DIMS[0])}]"))
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    manifest["sha256"]["model.gir"] = hashlib.sha256(gir.read_bytes()).hexdigest()
    (tmp_path / "a" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="dim"):
        graphopt.load(tmp_path / "a")
