"""ONNX import: real exporter output against eager, export→import round trip, untrusted-file handling."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import graphopt
from graphopt.backends import get_backend, reference
from graphopt.backends.onnx_export import to_onnx

from models import cnn


def _relu_model(opset: int = 17) -> onnx.ModelProto:
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def test_cnn_through_our_export_and_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model, args = cnn()
    g = graphopt.import_torch(model, args)
    path = tmp_path / "cnn.onnx"
    graphopt.export_onnx(g, path)
    back = graphopt.import_onnx(path)
    with torch.no_grad():
        want = model(*args).numpy()
    got = get_backend("cpu").compile(back)(args[0].numpy())[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_shape_arithmetic_is_folded_into_dims() -> None:
    # Shape -> Gather -> Mul -> Concat -> Reshape, as exporters write a flatten of a dynamic batch
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i0"], ["b"], axis=0),
        helper.make_node("Gather", ["s", "i1"], ["t"], axis=0),
        helper.make_node("Mul", ["b", "t"], ["bt"]),
        helper.make_node("Concat", ["bt", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    inits = [helper.make_tensor("i0", TensorProto.INT64, [1], [0]), helper.make_tensor("i1", TensorProto.INT64, [1], [1]),
             helper.make_tensor("minus1", TensorProto.INT64, [1], [-1])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["bt", 8])], initializer=inits)
    ir = graphopt.import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    assert str(ir.outputs[0].type) == 'f32["batch*seq",8]'
    x = np.random.default_rng(0).standard_normal((3, 5, 8)).astype(np.float32)
    np.testing.assert_array_equal(reference.run(ir, [x])[0], x.reshape(15, 8))


def test_round_trip_keeps_symbolic_dims() -> None:
    g = graphopt.import_onnx(_relu_model())
    again = graphopt.import_onnx(to_onnx(g))
    assert str(again.inputs[0].type) == "f32[n,4]"


def test_bad_files_get_model_load_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(graphopt.ModelLoadError, match="no such file"):
        graphopt.import_onnx(tmp_path / "missing.onnx")
    good = _relu_model().SerializeToString()
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(good[: len(good) // 2])
    with pytest.raises(graphopt.ModelLoadError):
        graphopt.import_onnx(trunc)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\xfe definitely not protobuf" * 10)
    with pytest.raises(graphopt.ModelLoadError):
        graphopt.import_onnx(junk)
    old = graphopt.import_onnx(_relu_model(opset=11))  # below 13: upgraded by onnx.version_converter
    assert [n.op.name for n in old] == ["relu"]
    g = helper.make_graph([helper.make_node("Upsample", ["x", "s"], ["y"], mode="nearest")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2]),
                           helper.make_tensor_value_info("s", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    with pytest.raises(graphopt.ModelLoadError, match="could not upgrade"):
        graphopt.import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 5)]))


def test_external_data_outside_the_folder_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4])
    w.data_location = TensorProto.EXTERNAL
    for k, v in {"location": "../../etc/passwd", "offset": "0", "length": "16"}.items():
        w.external_data.add(key=k, value=v)
    g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], initializer=[w])
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / "m.onnx"
    path.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(graphopt.ModelLoadError, match="outside the model's folder"):
        graphopt.import_onnx(path)
    assert sorted(p.name for p in folder.iterdir()) == before


def test_unsupported_onnx_ops_are_listed_together() -> None:
    g = helper.make_graph([helper.make_node("Unique", ["x"], ["y"]),
                           helper.make_node("Det", ["m"], ["d"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4]),
                           helper.make_tensor_value_info("m", TensorProto.FLOAT, [3, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"]),
                           helper.make_tensor_value_info("d", TensorProto.FLOAT, [])])
    with pytest.raises(graphopt.UnsupportedOpError) as e:
        graphopt.import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    assert set(e.value.ops) == {"Unique", "Det"}


def test_constants_specialize_shape_inputs() -> None:
    g = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6]),
                           helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b"])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(graphopt.UnsupportedOpError, match="known at compile time; it comes from graph input") as e:
        graphopt.import_onnx(model)
    assert e.value.inputs == ["shape"]  # type: ignore[attr-defined]
    graph = graphopt.import_onnx(model, constants={"shape": np.array([3, 4])})
    assert [v.name for v in graph.inputs] == ["x"] and str(graph.outputs[0].type) == "f32[3,4]"
    with pytest.raises(graphopt.ModelLoadError, match="unknown input"):
        graphopt.import_onnx(model, constants={"nope": np.array([1])})


@pytest.mark.parametrize("elem_type", [0, 999])
def test_bad_element_types_are_clean_errors(elem_type: int) -> None:
    vi = [helper.make_tensor_value_info("x", elem_type, [2])]
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", vi, [helper.make_tensor_value_info("y", elem_type, [2])])
    with pytest.raises((graphopt.ModelLoadError, graphopt.UnsupportedOpError), match="element type"):
        graphopt.import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    init = onnx.numpy_helper.from_array(np.ones(2, np.float32), "w")
    init.data_type = elem_type
    vf = [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])]
    g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", vf,
                     [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])], [init])
    with pytest.raises((graphopt.ModelLoadError, graphopt.UnsupportedOpError), match="element type|data_type"):
        graphopt.import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))


@pytest.mark.parametrize("offset, length", [("-5", "16"), ("abc", "16"), ("99999", "16"), ("0", "99999999")])
def test_bad_external_data_offsets_are_clean_errors(tmp_path, offset: str, length: str) -> None:  # type: ignore[no-untyped-def]
    init = onnx.numpy_helper.from_array(np.ones(4, np.float32), "w")
    vf = [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4])]
    g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", vf,
                     [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [4])], [init])
    onnx.save_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"),
                    save_as_external_data=True, location="w.bin", size_threshold=0)
    m = onnx.load(str(tmp_path / "m.onnx"), load_external_data=False)
    for e in m.graph.initializer[0].external_data:
        e.value = {"offset": offset, "length": length}.get(e.key, e.value)
    onnx.save_model(m, str(tmp_path / "m.onnx"))
    with pytest.raises(graphopt.ModelLoadError, match="external data"):
        graphopt.import_onnx(tmp_path / "m.onnx")


def _shape_arith_model(out_shape: list[int]) -> onnx.ModelProto:
    """Hugging Face's attention-mask index pattern: batch_index * seq + arange(seq), with seq from Shape."""
    from onnx import numpy_helper

    def c(name: str, a: object) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(a, np.int64)))

    nodes = [helper.make_node("Shape", ["x"], ["shp"]), c("one", 1),
             helper.make_node("Gather", ["shp", "one"], ["seq"], axis=0),
             c("col", [[0], [1]]), helper.make_node("Mul", ["col", "seq"], ["m"]), c("row", [list(range(16))]),
             helper.make_node("Add", ["m", "row"], ["idx"]), helper.make_node("Cast", ["idx"], ["y"], to=TensorProto.FLOAT)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("target", ["reference", "cpu", "onnxruntime"])
def test_shape_scalar_broadcast_against_a_matrix_is_not_folded_as_vectors(target: str) -> None:
    """New-user trial: folded as two 1-D shape vectors this gave (2,) = [0, 17] instead of a (2, 16) result."""
    import onnxruntime as ort

    m = _shape_arith_model([2, 16])
    x = np.zeros((2, 16), np.float32)
    want = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
    got = graphopt.compile(m, target=target)(x)
    np.testing.assert_array_equal(np.asarray(got), want)


def test_outputs_must_agree_with_their_declared_types() -> None:
    with pytest.raises(graphopt.ModelLoadError, match=r"declared with shape \[2, 3\].*f32\[2,16\]"):
        graphopt.import_onnx(_shape_arith_model([2, 3]))
    with pytest.raises(graphopt.ModelLoadError, match="declared with rank 1"):
        graphopt.import_onnx(_shape_arith_model([2]))


@pytest.mark.parametrize("target", ["reference", "cpu"])
def test_scatter_nd_over_a_symbolic_axis_with_negative_indices(target: str) -> None:
    # legacy exports of masked writes (X-MOD's adapters) scatter rows of a [batch*seq, hidden] tensor; a negative
    # index counts from the end of the symbolic axis, so its size comes from the bound symbols at run time
    import onnxruntime as ort

    g = helper.make_graph(
        [helper.make_node("ScatterND", ["x", "i", "u"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3]),
         helper.make_tensor_value_info("i", TensorProto.INT64, ["k", 1]),
         helper.make_tensor_value_info("u", TensorProto.FLOAT, ["k", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    run = graphopt.compile(m, target=target)
    sess = ort.InferenceSession(m.SerializeToString())
    rng = np.random.default_rng(0)
    for n, idx in ((5, [[0], [-1]]), (7, [[-7], [3], [-2]])):
        x = rng.standard_normal((n, 3)).astype(np.float32)
        i = np.array(idx, np.int64)
        u = rng.standard_normal((len(idx), 3)).astype(np.float32)
        np.testing.assert_array_equal(np.asarray(run(x, i, u)), sess.run(None, {"x": x, "i": i, "u": u})[0])
