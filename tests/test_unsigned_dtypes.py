"""u16, u32 and u64: in the IR, the reference interpreter, the cpu target (computed in int64, exact), ONNX import
and the onnxruntime target. torch has almost no kernels for them, so the cpu target is where they can go wrong."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import graphopt
from graphopt.backends import get_backend, reference
from graphopt.errors import UnsupportedOpError, VerificationError
from graphopt.ir import DType, Graph, TensorType, parse, format_graph

OPS = ["add", "sub", "mul", "bitwise_and", "bitwise_or", "bitwise_xor", "eq", "ne", "lt", "le", "gt", "ge",
       "maximum", "minimum", "remainder"]
_NP = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "bitwise_and": np.bitwise_and,
       "bitwise_or": np.bitwise_or, "bitwise_xor": np.bitwise_xor, "eq": np.equal, "ne": np.not_equal,
       "lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal, "maximum": np.maximum,
       "minimum": np.minimum, "remainder": np.remainder}


def _values(dtype: np.dtype, seed: int) -> np.ndarray:
    """Both ends of the range: values near the top (above 2^63 for u64) are where int64 would differ."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    low = rng.integers(1, 1000, 8, dtype=np.uint64).astype(dtype)
    high = (np.uint64(info.max) - rng.integers(0, 1000, 8, dtype=np.uint64)).astype(dtype)
    return np.concatenate([low, high])


def _binary(op: str, dtype: DType) -> Graph:
    g = Graph("u")
    a, b = (g.add_input(n, TensorType(dtype, (16,))) for n in "ab")
    g.set_outputs([g.add(op, [a, b])])
    return g


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.uint64])
@pytest.mark.parametrize("op", OPS)
def test_cpu_and_reference_compute_unsigned_ops_exactly(op: str, dtype: type) -> None:
    g = _binary(op, DType.from_numpy(dtype))
    a, b = _values(np.dtype(dtype), 0), _values(np.dtype(dtype), 1)[::-1].copy()
    want = _NP[op](a, b)
    got = reference.run(g, [a, b])[0]
    assert got.dtype == want.dtype and np.array_equal(got, want)
    try:
        exe = get_backend("cpu").compile(g)
    except UnsupportedOpError as e:  # u64 division and max/min: refused by name, never computed wrongly
        assert dtype is np.uint64 and op in ("maximum", "minimum", "remainder") and "2^63" in str(e)
        return
    out = np.asarray(exe(a, b)[0])
    assert out.dtype == want.dtype and np.array_equal(out, want), op


def test_unsigned_shifts_not_and_sums_on_the_cpu_target() -> None:
    g = parse('''graph @s(%x: u32[6], %k: u32[6]) {
      %0: u32[6] = shift(%x, %k) {left=true}
      %1: u32[6] = shift(%x, %k) {left=false}
      %2: u32[6] = bitwise_not(%x)
      %3: u64[] = reduce_sum(%x) {axes=[0], keepdims=false}
      return %0, %1, %2, %3
    }''')
    x = np.array([1, 7, 2**31, 2**32 - 1, 12345, 0], np.uint32)
    k = np.array([1, 3, 1, 4, 31, 0], np.uint32)
    want = reference.run(g, [x, k])
    assert np.array_equal(want[0], x << k) and np.array_equal(want[1], x >> k) and np.array_equal(want[2], ~x)
    got = get_backend("cpu").compile(g)(x, k)
    for w, o in zip(want, got):
        o = np.asarray(o)
        assert o.dtype == w.dtype and np.array_equal(o, w)


def test_unsigned_types_print_parse_and_do_not_promote_with_signed_ints() -> None:
    g = _binary("add", DType.U64)
    assert "u64[16]" in format_graph(g) and format_graph(parse(format_graph(g))) == format_graph(g)
    h = Graph("mixed")
    a = h.add_input("a", TensorType(DType.U32, (4,)))
    b = h.add_input("b", TensorType(DType.I64, (4,)))
    with pytest.raises(VerificationError, match="do not promote"):
        h.add("add", [a, b])


def test_onnx_unsigned_model_on_every_target() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.UINT32, [5])
    y = helper.make_tensor_value_info("y", TensorProto.UINT32, [5])
    z = helper.make_tensor_value_info("z", TensorProto.BOOL, [5])
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Sub", ["x", "y"], ["d"]), helper.make_node("Greater", ["d", "y"], ["z"])],
        "u", [x, y], [z]), opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    a = np.array([0, 5, 2**32 - 1, 10, 3], np.uint32)
    b = np.array([1, 2, 7, 10, 4], np.uint32)
    want = (a - b) > b  # wraps: 0 - 1 is 2^32 - 1
    for target in ("reference", "cpu", "onnxruntime"):
        got = np.asarray(graphopt.compile(model, target=target)(a, b))  # one output: the array itself
        assert np.array_equal(got, want), target
