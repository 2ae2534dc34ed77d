"""Op traits and dimension flow: declared for every op, and true of the kernels.

The dimension-flow check is the property structured pruning relies on: removing index k along a set of tied axes
from every input and then running the op gives the same result as zeroing those slices, running the op, and
removing index k from the tied output axes. Zeroing (rather than comparing with the unpruned output) is what makes
contractions checkable: a dropped column of x and row of w contribute nothing once zeroed.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest

from graphopt.errors import UnsupportedOpError
from graphopt.ir import (OpRef, Trait, dim_flow, get_op, op_names, ops_with, parse,
                         registered_ops)

from test_backends_per_op import _graph
from test_ops_vs_torch import CASES

# Ops with no dimension flow, each with the reason.
NO_FLOW = {
    "gather_elements": "each output element picks its own input index: no axis is tied as a whole",
    "index": "advanced indexing broadcasts index tensors together: left to a later rule",
    "scatter_elements": "scatter writes by data-dependent index",
    "scatter_nd": "scatter writes by data-dependent index",
    "index_put": "writes by data-dependent index",
    "conv_transpose": "grouped output-channel layout differs from conv's: left to a later rule",
    "arange": "no inputs",
    "shape_tensor": "no inputs",
    "topk": "k is an attribute size along the axis",
    "cumprod": "a product along the axis; kept out until a pass needs it",
    "grid_sample": "spatial axes are resampled",
    "nonzero": "data-dependent output size",
    "one_hot": "the depth axis is an attribute size",
    "bitcast": "reinterprets bytes; the last axis changes size with the element width",
    "embedding_bag": "bags are data-dependent",
}


def _builtin_ops() -> dict[str, Any]:
    return {n: op for n, op in registered_ops().items() if op.kernel.__module__.startswith("graphopt.ir.ops.")
            and op.kernel.__module__ != "graphopt.ir.ops.registry"}  # (its doctest registers an op)


def test_every_builtin_op_declares_dim_flow_or_says_why_not() -> None:
    missing = sorted(n for n, op in _builtin_ops().items() if op.dim_flow is None and n not in NO_FLOW)
    assert not missing, f"ops without a dimension-flow rule or a NO_FLOW reason: {missing}"
    stale = sorted(n for n in NO_FLOW if n in registered_ops() and registered_ops()[n].dim_flow is not None)
    assert not stale, f"NO_FLOW lists ops that now have a rule: {stale}"


def test_traits_are_declared_where_passes_need_them() -> None:
    ew = ops_with(Trait.ELEMENTWISE)
    assert {"add", "mul", "relu", "gelu", "where", "cast", "clamp"} <= ew
    assert not ew & {"matmul", "softmax", "reshape", "transpose"}
    assert {"reshape", "transpose", "concat", "split", "slice", "squeeze", "unsqueeze", "expand"} <= ops_with(
        Trait.LAYOUT)
    assert {"linear", "matmul", "conv"} <= ops_with(Trait.QUANTIZABLE)
    assert {"relu", "max_pool", "reshape", "transpose"} <= ops_with(Trait.SCALE_TRANSPARENT)
    assert not ops_with(Trait.SCALE_TRANSPARENT) & {"gelu", "sigmoid", "exp", "add", "softmax"}
    assert {"softmax", "layer_norm", "rms_norm", "reduce_sum", "reduce_mean"} <= ops_with(Trait.PRECISION_SENSITIVE)
    assert {"add", "mul", "maximum", "eq"} <= ops_with(Trait.COMMUTATIVE)
    assert "sub" not in ops_with(Trait.COMMUTATIVE)


def test_scale_transparent_ops_commute_with_a_positive_scale() -> None:
    """The trait is a claim about the kernel: f(c·x, c·y, ...) = c·f(x, y, ...) for c > 0 (every float input
    scaled), checked on every case that declares it."""
    checked = 0
    for op, inputs, attrs, _ in CASES:
        opdef = get_op(op)
        if not opdef.has(Trait.SCALE_TRANSPARENT) or inputs[0].dtype.kind != "f":
            continue
        c = np.float32(2.5)
        at = _single(op, inputs, attrs).attrs
        y = opdef.kernel(*inputs, **at)
        ys = opdef.kernel(*[a * c if a.dtype.kind == "f" else a for a in inputs], **at)
        for a, b in zip(ys if isinstance(ys, tuple) else (ys,), y if isinstance(y, tuple) else (y,)):
            np.testing.assert_allclose(a, np.asarray(b) * c, rtol=1e-5, atol=1e-5, err_msg=op)
        checked += 1
    assert checked >= 8


def test_misspelled_op_names_fail_where_they_are_written() -> None:
    with pytest.raises(UnsupportedOpError, match="did you mean 'relu'"):
        OpRef("reluu")
    with pytest.raises(UnsupportedOpError, match="layer_norm"):
        op_names("add", "layernorm")
    with pytest.raises(TypeError, match="Trait members"):
        from graphopt.ir import register_op

        register_op("bad_traits", inputs=["x"], infer=lambda t, a: t[0], traits=["elementwise"])


def test_defaults_that_depend_on_the_inputs_are_written_out_when_a_node_is_made() -> None:
    g = parse("""
    graph @g(%x: f32[1,2,5,5], %w: f32[3,2,3,3]) {
      %y: f32[1,3,3,3] = conv(%x, %w)
      %z: f32[1,3,3,3] = slice(%y) {starts=[0], ends=[1]}
      %p: f32[1,3,3,1] = max_pool(%z) {kernel=[1,3]}
      return %p
    }""")
    conv, sl, pool = list(g)
    assert conv.attrs["strides"] == (1, 1) and conv.attrs["pads"] == (0, 0, 0, 0) and conv.attrs["dilations"] == (1, 1)
    assert sl.attrs["axes"] == (0,) and sl.attrs["steps"] == (1,)
    assert pool.attrs["strides"] == (1, 1)
    # Two spellings of one conv are now one node to CSE: explicit defaults and none.
    explicit = g.add("conv", [g.inputs[0], g.inputs[1]], {"strides": [1, 1], "pads": [0, 0, 0, 0]})
    assert dict(explicit.producer.attrs) == dict(conv.attrs)


def _single(op: str, inputs: list[np.ndarray], attrs: dict[str, Any]) -> Any:
    """The one node of the per-op test graph."""
    return next(iter(_graph(op, inputs, attrs)))


class _Components:
    """Union-find over (side, index, axis) with each member's offset from its root."""

    def __init__(self) -> None:
        self.parent: dict[Any, tuple[Any, int]] = {}

    def find(self, x: Any) -> tuple[Any, int]:
        self.parent.setdefault(x, (x, 0))
        p, off = self.parent[x]
        if p == x:
            return x, 0
        root, off2 = self.find(p)
        self.parent[x] = (root, off + off2)
        return root, off + off2

    def union(self, a: Any, b: Any, offset: int) -> None:
        """element k of b is element k + offset of a."""
        ra, oa = self.find(a)
        rb, ob = self.find(b)
        if ra != rb:  # pos_root(b) = k + ob must equal pos_root(a) = k + offset + oa
            self.parent[rb] = (ra, offset + oa - ob)


def _sizes_agree(node: Any) -> None:
    shape = lambda r: (node.inputs if r.side == "in" else node.outputs)[r.index].type.shape[r.axis]  # noqa: E731
    for t in dim_flow(node) or []:
        da, db = [shape(r) for r in t.a], [shape(r) for r in t.b]
        if all(isinstance(d, int) for d in da + db):
            if t.offset:
                assert np.prod(db) + t.offset <= np.prod(da), f"{node.op.name}: {t} sizes {da} {db}"
            elif t.blocks:
                assert da[0] % t.blocks == 0 and db[0] % t.blocks == 0, f"{node.op.name}: {t} sizes {da} {db}"
            elif len(t.a) == len(t.b) == 1 and node.op.name not in ("concat", "split", *STACKED):
                assert da == db, f"{node.op.name}: {t} sizes {da} vs {db}"
            else:
                assert np.prod(da) == np.prod(db) or t.offset or node.op.name in ("concat", "split", "slice", *STACKED), (
                    f"{node.op.name}: {t} sizes {da} vs {db}")


MUST_CHECK = {"linear", "matmul", "conv", "batch_norm", "add", "mul", "relu", "transpose", "concat", "gather",
              "layer_norm", "rms_norm", "reduce_sum", "reduce_mean", "softmax", "einsum", "max_pool", "avg_pool",
              "scaled_dot_product_attention", "squeeze", "unsqueeze", "where", "slice"}
# Axes whose size an attribute spells out: removing an index there needs the attribute rewritten too.
SIZED_AXES = {"split": lambda a: (a["axis"] % 8,), "topk": lambda a: (a["axis"],)}
# Ops whose weights stack several windows onto one axis (an LSTM's four gates: one hidden unit is four rows): the
# union-find below holds one offset per axis, so these are checked by pruning whole units instead
# (tests/test_prune_structured.py: test_lstm_hidden_units_prune_across_gates_states_and_head).
STACKED = {"lstm", "gru", "rnn", "quantized_lstm"}  # gate g of unit j is row g·H + j: a window per gate


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_dimension_flow_is_what_pruning_sees(case: int) -> None:
    op, inputs, attrs, _ = CASES[case]
    if get_op(op).dim_flow is None:
        pytest.skip(f"{op}: {NO_FLOW.get(op, 'no rule')}")
    node = _single(op, inputs, attrs)
    _sizes_agree(node)
    if op in STACKED:
        pytest.skip(f"{op}: gate-stacked windows, checked by pruning whole units in test_prune_structured.py")
    ties = dim_flow(node)
    comps = _Components()
    lossy = set()
    for t in ties:
        if len(t.a) != 1 or len(t.b) != 1 or t.blocks:
            continue  # block ties (reshape's heads, grouped conv's groups) are checked by their own tests
        comps.union(t.a[0], t.b[0], t.offset)
        if not t.exact:
            lossy.add(t.a[0])
    groups: dict[Any, list[tuple[Any, int]]] = {}
    for ref in list(comps.parent):
        root, off = comps.find(ref)
        groups.setdefault(root, []).append((ref, off))
    lossy_roots = {comps.find(r)[0] for r in lossy}
    checked = 0
    opdef = node.op
    run = lambda xs: [np.asarray(y) for y in  # noqa: E731
                      (lambda r: r if isinstance(r, tuple) else (r,))(opdef.kernel(*xs, **node.attrs))]
    for root, members in groups.items():
        if root in lossy_roots or not any(r.side == "in" for r, _ in members):
            continue
        size = lambda r: (inputs[r.index] if r.side == "in" else run(inputs)[r.index]).shape[r.axis]  # noqa: E731
        # drop the root-coordinate index that lands inside the most members
        positions = Counter(k + off for r, off in members for k in range(size(r)))
        drop = max(positions, key=lambda p: (positions[p], -p))
        pruned, zeroed = [a.copy() for a in inputs], [a.copy() for a in inputs]
        if any(r.side == "in" and r.axis in SIZED_AXES.get(op, lambda a: ())(node.attrs) for r, _ in members):
            continue  # the pruning pass rewrites the attribute that spells this axis's size
        for r, off in members:
            k = drop - off
            if r.side == "in" and 0 <= k < inputs[r.index].shape[r.axis]:
                pruned[r.index] = np.delete(pruned[r.index], k, axis=r.axis)
                index = [slice(None)] * inputs[r.index].ndim
                index[r.axis] = k
                zeroed[r.index][tuple(index)] = 0
        try:
            got = run(pruned)
            want = run(zeroed)
        except (ValueError, IndexError, TypeError):
            continue  # a size is also an attribute (reshape target, split sizes): the pruning pass rewrites those
        except ArithmeticError:
            continue  # a zeroed integer divisor
        for r, off in members:
            k = drop - off
            if r.side == "out" and 0 <= k < want[r.index].shape[r.axis]:
                want[r.index] = np.delete(want[r.index], k, axis=r.axis)
        for i, (g, w) in enumerate(zip(got, want)):
            assert g.shape == w.shape, f"{op}: output {i} after pruning {members}: {g.shape} vs {w.shape}"
            if g.dtype.kind in "biu":
                np.testing.assert_array_equal(g, w, err_msg=f"{op}: {members}")
            else:
                np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=1e-4, atol=1e-4,
                                           equal_nan=True, err_msg=f"{op}: {members}")
        checked += 1
    # a rule that ties nothing checkable here would pass vacuously: the ops pruning walks through must be checked
    if op in MUST_CHECK and ties:
        assert checked, f"{op}: no tied axes could be checked on this case"


def test_reshape_ties_heads_as_a_block() -> None:
    g = parse("""
    graph @g(%x: f32[batch,7,768]) {
      %y: f32[batch,7,12,64] = reshape(%x) {shape=[batch,7,12,64]}
      return %y
    }""")
    assert [str(t) for t in dim_flow(next(iter(g)))] == ["out0[0] = in0[0]", "out0[1] = in0[1]",
                                                        "(out0[2], out0[3]) = in0[2]"]


def test_lossy_ties_are_marked() -> None:
    g = parse("""
    graph @g(%x: f32[2,5,8], %g: f32[8]) {
      %y: f32[2,5,8] = layer_norm(%x, %g)
      %s: f32[2,5,8] = softmax(%y)
      return %s
    }""")
    ln, sm = list(g)
    assert [(str(t), t.exact) for t in dim_flow(sm)][-1] == ("out0[2] = in0[2]  (lossy)", False)
    assert {str(t) for t in dim_flow(ln) if not t.exact} == {"out0[2] = in0[2]  (lossy)"}
    assert "out0[2] = in1[0]" in {str(t) for t in dim_flow(ln)}
