import numpy as np
import pytest

from graphopt.errors import VerificationError
from graphopt.ir import DType, Graph, TensorType, Use, parse


def _chain(n: int = 4) -> Graph:
    g = Graph("chain")
    v = g.add_input("x", TensorType(DType.F32, ("batch", 3)))
    for _ in range(n):
        v = g.add("relu", [v])
    g.set_outputs([v])
    return g


def test_use_lists_follow_input_changes() -> None:
    g = _chain(2)
    x = g.inputs[0]
    a, b = list(g)
    assert x.uses == [Use(a, 0)] and a.outputs[0].users == [b]
    b.set_input(0, x)
    assert x.users == [a, b] and a.outputs[0].num_uses == 0
    g.verify()


def test_replace_all_uses_with_moves_uses_and_outputs() -> None:
    g = _chain(2)
    a, b = list(g)
    b.output.replace_all_uses_with(a.output)
    assert g.outputs == (a.output,) and b.output.is_dead
    g.remove_node(b)
    g.verify()


def test_removing_a_used_node_is_refused_with_its_users() -> None:
    g = _chain(2)
    a = next(iter(g))
    with pytest.raises(VerificationError, match=r"cannot remove %0 = relu\(%x\): %0 is still used by %1 = relu\(%0\)"):
        g.remove_node(a)


def test_iteration_is_safe_while_erasing_and_inserting() -> None:
    g = _chain(5)
    seen = []
    for node in g:
        seen.append(node.op.name)
        if node.op.name == "relu":
            with g.inserting_after(node):
                y = g.add("neg", [node.output])
            node.output.replace_all_uses_with(y)
            y.producer.set_input(0, node.output)
    assert seen.count("relu") == 5 and seen.count("neg") == 5
    for node in g:
        if node.op.name == "neg":
            node.output.replace_all_uses_with(node.inputs[0])
            g.remove_node(node)
    assert [n.op.name for n in g] == ["relu"] * 5
    assert len(g) == 5
    g.verify()


def test_inserting_before_inherits_origin() -> None:
    g = _chain(1)
    node = next(iter(g))
    node.origin = "encoder.layer.0"
    with g.inserting_before(node):
        y = g.add("neg", [g.inputs[0]])
    assert y.producer.origin == "encoder.layer.0" and list(g)[0] is y.producer


def test_constants_are_not_copied() -> None:
    w = np.ones((256, 256), np.float32)
    g = Graph()
    c = g.add_constant(w, "w")
    assert np.shares_memory(c.const, w)
    assert not c.const.flags.writeable and w.flags.writeable
    copy = g.copy()
    assert np.shares_memory(copy.constants["w"].const, w)


def test_copy_is_structurally_equal_and_independent() -> None:
    from graphopt.ir import graph_equal

    g = _chain(3)
    h = g.copy()
    assert graph_equal(g, h, names=True)
    before = g.format()
    # mutate the copy every way a pass does: rewire, add, remove, retarget outputs
    first = next(iter(h))
    with h.inserting_before(first):
        extra = h.add("neg", [first.inputs[0]])
    first.set_input(0, extra)
    last = list(h)[-1]
    h.set_outputs([last.inputs[0]])
    h.remove_node(last)
    assert g.format() == before and len(g) == 3 and all(n.graph is g for n in g)
    assert len(h) == 3 and all(n.graph is h for n in h) and not graph_equal(g, h)
    assert all(c.const is h.constants[name].const for name, c in g.constants.items())  # weights shared, not copied


def test_multi_output_values_are_separate() -> None:
    g = Graph()
    x = g.add_input("x", TensorType(DType.F32, (2, 5)))
    vals, idx = g.add("topk", [x], {"k": 2})
    assert vals.type == TensorType(DType.F32, (2, 2)) and idx.type.dtype == DType.I64
    assert vals.producer is idx.producer and (vals.index, idx.index) == (0, 1)


def test_symbolic_dims_flow_through_inference() -> None:
    g = parse("""
graph @f(%x: f32[batch,seq,64], %m: f32[batch,1,1,seq]) {
  %0: f32[batch,seq,4,16] = reshape(%x) {shape=[batch, seq, 4, -1]}
  %1: f32[batch,4,seq,16] = transpose(%0) {perm=[0, 2, 1, 3]}
  %2: f32[batch,4,16,seq] = transpose(%1) {perm=[0, 1, 3, 2]}
  %3: f32[batch,4,seq,seq] = matmul(%1, %2)
  %4: f32[batch,4,seq,seq] = add(%3, %m)
  %5: f32[batch,seq,64] = reshape(%1) {shape=[batch, seq, -1]}
  return %4, %5
}""")
    g.verify()


def test_bad_attribute_names_suggest() -> None:
    g = _chain(1)
    with pytest.raises(TypeError, match="has no attribute 'axs'; did you mean 'axes'"):
        g.add("reduce_sum", [g.inputs[0]], {"axs": [0]})


def test_fresh_names_with_one_hint_stay_unique_and_cost_constant_probes() -> None:
    class Counting(dict):  # type: ignore[type-arg]
        probes = 0

        def __contains__(self, key: object) -> bool:
            Counting.probes += 1
            return super().__contains__(key)

    g = Graph("g")
    g._values = Counting(g._values)
    names = []
    for _ in range(2000):
        names.append(g.fresh_name("c"))
        g.add_constant(np.zeros(1, np.float32), name=names[-1])
    assert names[:3] == ["c", "c_1", "c_2"] and len(set(names)) == 2000
    # probing from c_1 on every call made 2,000 constants cost ~2 million lookups
    assert Counting.probes < 3 * 2000 * 2
    g.add_constant(np.zeros(1, np.float32), name="c_2000")  # a name taken behind fresh_name's back is still skipped
    assert g.fresh_name("c") == "c_2001"
