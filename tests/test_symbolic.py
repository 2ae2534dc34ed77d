"""Dim expressions: canonical forms, arithmetic, inference through reshape/concat/slice, text round trip."""

import numpy as np
import pytest

from graphopt.backends import reference
from graphopt.ir import DType, Graph, TensorType, parse
from graphopt.ir.symbolic import canon, dim_add, dim_mul, divide, evaluate, free_symbols


def test_canonical_forms_compare_equal():
    assert canon("seq*batch") == canon("batch*seq") == "batch*seq"
    assert canon("2*4") == 8
    assert dim_add("seq", "seq") == "2*seq"
    assert divide("12*batch*seq", "batch") == "12*seq"
    assert divide("batch", "seq") is None
    assert free_symbols("batch*seq + 1") == {"batch", "seq"}
    assert evaluate("floor(seq/2)", {"seq": 9}) == 4


def test_rejects_non_expressions():
    with pytest.raises(TypeError, match="dim"):
        TensorType(DType.F32, ("__import__('os')",))


def test_reshape_concat_slice_infer_expressions():
    g = Graph("g")
    x = g.add_input("x", TensorType(DType.F32, ("batch", "seq", 12)))
    flat = g.add("reshape", [x], {"shape": [-1, 12]})
    assert flat.type.shape == ("batch*seq", 12)
    cat = g.add("concat", [flat, flat], {"axis": 0})
    assert cat.type.shape == ("2*batch*seq", 12)
    half = g.add("slice", [cat], {"starts": [1], "ends": [2**62], "axes": [0], "steps": [2]})
    assert half.type.shape == ("batch*seq", 12)
    g.set_outputs([half])
    g.verify()
    again = parse(g.format())
    assert again.outputs[0].type == half.type
    a = np.random.default_rng(0).standard_normal((2, 3, 12)).astype(np.float32)
    (out,) = reference.run(again, [a])
    ref = np.concatenate([a.reshape(-1, 12)] * 2)[1::2]
    np.testing.assert_array_equal(out, ref)
    assert dim_mul() == 1
