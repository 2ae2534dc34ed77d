"""Property tests over random valid graphs: round-trip, validity after each cleanup pass, O1 numerics."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from graphopt.backends.reference import random_inputs, run
from graphopt.ir import DType, Graph, TensorType, graph_equal, parse
from graphopt.passes import PassContext, PassManager, VerifyEach

UNARY = ["relu", "neg", "exp", "tanh", "sigmoid", "abs", "identity", "dropout", "gelu"]
BINARY = ["add", "sub", "mul", "maximum", "minimum"]
SHAPE = (2, 3)


@st.composite
def graphs(draw: st.DrawFn) -> Graph:
    g = Graph("random")
    values = [g.add_input(f"in{i}", TensorType(DType.F32, ("batch",) + SHAPE)) for i in range(draw(st.integers(1, 3)))]
    consts = [0.0, 1.0, 0.5, -2.0]
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["unary", "binary", "const", "transpose", "reshape", "cast"]))
        x = draw(st.sampled_from(values))
        if kind == "unary":
            v = g.add(draw(st.sampled_from(UNARY)), [x])
        elif kind == "binary":
            v = g.add(draw(st.sampled_from(BINARY)), [x, draw(st.sampled_from(values))])
        elif kind == "const":
            c = g.add_constant(np.float32(draw(st.sampled_from(consts))))
            args = [x, c] if draw(st.booleans()) else [c, x]
            v = g.add(draw(st.sampled_from(["add", "mul", "sub"])), args)
        elif kind == "transpose":
            v = g.add("transpose", [g.add("transpose", [x], {"perm": [0, 2, 1]})], {"perm": [0, 2, 1]})
        elif kind == "reshape":
            v = g.add("reshape", [g.add("reshape", [x], {"shape": ["batch", 6]})], {"shape": ["batch", 2, 3]})
        else:
            v = g.add("cast", [g.add("cast", [x], {"dtype": "f64"})], {"dtype": "f32"})
        values.append(v)
    outs = draw(st.lists(st.sampled_from(values[-5:]), min_size=1, max_size=3))
    g.set_outputs(outs)
    return g


@given(graphs())
def test_print_parse_round_trip(g: Graph) -> None:
    text = str(g)
    again = parse(text)
    assert str(again) == text
    assert graph_equal(again, g, names=True)


@given(graphs(), st.sampled_from(["dce", "cse", "fold-constants", "canonicalize", "infer-shapes", "O1", "O3"]))
def test_every_cleanup_pass_keeps_the_graph_valid_and_exact(g: Graph, pipeline: str) -> None:
    inputs = random_inputs(g, {"batch": 2})
    want = run(g, inputs)
    PassManager.parse(pipeline).run(g, PassContext(instruments=[VerifyEach()]))
    g.verify()
    for w, h in zip(want, run(g, inputs)):
        # All cleanup rewrites are exact (x + 0 may turn -0.0 into +0.0, which compares equal).
        np.testing.assert_array_equal(h, w)


@given(graphs())
def test_o1_is_idempotent(g: Graph) -> None:
    pm = PassManager.parse("O1")
    pm.run(g)
    before = str(g)
    assert not pm.run(g).changed
    assert str(g) == before
