"""Every op case of test_ops_vs_torch through the cpu and onnxruntime targets, against the reference kernels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from graphopt.backends import get_backend, reference
from graphopt.ir import DType, Graph, TensorType

from test_ops_vs_torch import CASES

# Ops the onnxruntime target does not run, each with the reason (a new failure outside this list fails).
ORT_KNOWN = {
    "adaptive_avg_pool": "ONNX has only the global (output size 1) form",
    "bitwise_and": "BitwiseAnd is ONNX opset 18; graphopt exports opset 17",
    "bitwise_or": "BitwiseOr is ONNX opset 18; graphopt exports opset 17",
    "bitwise_xor": "BitwiseXor is ONNX opset 18; graphopt exports opset 17",
    "bitwise_not": "BitwiseNot is ONNX opset 18; graphopt exports opset 17",
    "shift": "ONNX BitShift takes unsigned ints only",
    "bitcast": "BitCast is not in ONNX opset 17",
    "cumprod": "CumProd is not in ONNX opset 17",
}


def _graph(op: str, inputs: list[np.ndarray], attrs: dict[str, Any]) -> Graph:
    g = Graph("case")
    vals = [g.add_input(f"in{i}", TensorType(DType.from_numpy(a.dtype), a.shape)) for i, a in enumerate(inputs)]
    g.set_outputs(g.add_node(op, vals, attrs).outputs)
    return g


def _compare(got: list[np.ndarray], want: list[np.ndarray], op: str) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        g = np.asarray(g)
        assert g.dtype == w.dtype and g.shape == w.shape, f"{op}: {g.dtype}{g.shape} vs {w.dtype}{w.shape}"
        if g.dtype.kind in "biu":
            np.testing.assert_array_equal(g, w)
        else:
            tol = 1e-2 if g.dtype in (np.float16, np.dtype("bfloat16")) else 1e-5
            np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=tol, atol=tol, equal_nan=True)


IDS = [f"{c[0]}-{i}" for i, c in enumerate(CASES)]


@pytest.mark.parametrize("op,inputs,attrs,ref", CASES, ids=IDS)
def test_cpu_target_matches_reference(op: str, inputs: list[np.ndarray], attrs: dict[str, Any], ref: Any) -> None:
    g = _graph(op, inputs, attrs)
    _compare(get_backend("cpu").compile(g)(*[a.copy() for a in inputs]), reference.run(g, inputs), op)


@pytest.mark.parametrize("op,inputs,attrs,ref", CASES, ids=IDS)
def test_onnxruntime_target_matches_reference(op: str, inputs: list[np.ndarray], attrs: dict[str, Any],
                                              ref: Any) -> None:
    if any(a.dtype.name == "bfloat16" for a in inputs) or (op == "cast" and attrs["dtype"] == DType.BF16):
        pytest.skip("onnxruntime's CPU provider has few bf16 kernels")
    g = _graph(op, inputs, attrs)
    if op in ORT_KNOWN:
        pytest.xfail(ORT_KNOWN[op])
    if op == "grid_sample" and inputs[0].ndim != 4:
        pytest.xfail("ONNX opset 17 GridSample is 2-D only")
    _compare(get_backend("onnxruntime").compile(g)(*inputs), reference.run(g, inputs), op)
