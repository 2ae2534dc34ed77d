"""Scale (issue 11, item 13): every O3 pass linear in the graph, the pass manager linear in its entries, and peak
memory through O2 and the cpu target's compile close to the weights.

Time per node is a benchmark (`benchmarks/pass_scale.py`), not a test: this VM's speed moves by 1.6x between
phases. What a test can pin down deterministically is the work: the Python calls (function and builtin calls,
counted by `sys.setprofile`) each pass makes per node. A pass that is quadratic, or tries hundreds of pattern
variants per node (fuse-gelu once made ~2,000 calls per node, 0.4 ms), shows in the count on any machine. At the
~0.2 µs a call costs here in a quiet phase, the budget below is about the 20 µs per node the issue asks for.
"""

from __future__ import annotations

import sys
import tracemalloc
from types import FrameType
from typing import Any

import pytest
import torch

import graphopt
from graphopt.ir import Graph
from graphopt.passes import PassContext, PassManager
from graphopt.passes.context import Instrument

CALLS_PER_NODE = 130  # the most any O3 pass makes on a BERT layer today is ~80 (fuse-linear); see the docstring


class Calls:
    """A `sys.setprofile` hook counting Python function and builtin calls."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" or event == "c_call":
            self.n += 1


class CallCounter(Instrument):
    """Python calls per node of each pass, keyed `name`, `name#2` for a second run of the same pass."""

    def __init__(self) -> None:
        self.per_node: dict[str, float] = {}
        self._calls = Calls()
        self._nodes = 1

    def before_pass(self, spec, graph, ctx) -> None:  # type: ignore[no-untyped-def]
        self._calls.n, self._nodes = 0, max(len(graph), 1)
        sys.setprofile(self._calls)

    def after_pass(self, spec, graph, result, record, ctx) -> None:  # type: ignore[no-untyped-def]
        sys.setprofile(None)
        key, k = spec.name, 1
        while key in self.per_node:
            k += 1
            key = f"{spec.name}#{k}"
        self.per_node[key] = self._calls.n / self._nodes


def _bert(layers: int, hidden: int = 64) -> Graph:
    import transformers

    torch.manual_seed(0)
    cfg = transformers.BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=max(hidden // 32, 1),
                                  intermediate_size=4 * hidden, vocab_size=256, max_position_embeddings=64)
    model = transformers.BertModel(cfg).eval()
    return graphopt.import_torch(model, (torch.randint(0, 256, (1, 16)),))


@pytest.fixture(scope="module")
def o3_calls() -> dict[int, dict[str, float]]:
    out = {}
    for layers in (2, 8):
        counter = CallCounter()
        PassManager.parse("O3").run(_bert(layers), PassContext(instruments=[counter]))
        out[layers] = counter.per_node
    return out


def test_every_o3_pass_makes_a_bounded_number_of_calls_per_node(o3_calls: dict[int, dict[str, float]]) -> None:
    heavy = {name: round(c) for name, c in o3_calls[8].items() if c > CALLS_PER_NODE}
    assert not heavy, f"passes making more than {CALLS_PER_NODE} Python calls per node on an 8-layer BERT: {heavy}"


def test_every_o3_pass_is_linear_in_the_graph(o3_calls: dict[int, dict[str, float]]) -> None:
    # 4x the layers: a linear pass makes at most as many calls per node (its fixed costs spread thinner); a
    # quadratic one makes ~4x as many
    grew = {name: f"{o3_calls[2][name]:.0f} -> {c:.0f}" for name, c in o3_calls[8].items()
            if c > 1.1 * o3_calls[2][name]}
    assert not grew, f"calls per node grew with the graph (2 -> 8 layers): {grew}"


def test_the_pass_manager_is_linear_in_its_entries() -> None:
    g = graphopt.ir.parse('graph @f(%x: f32[4]) {\n  %0: f32[4] = relu(%x)\n  return %0\n}')
    calls = {}
    for entries in (8, 64):
        pm = PassManager.parse(",".join(["dce"] * entries))
        count = Calls()
        sys.setprofile(count)
        try:
            pm.run(g)
        finally:
            sys.setprofile(None)
        calls[entries] = count.n / entries
    assert calls[64] <= 1.1 * calls[8], f"calls per pipeline entry: {calls}"


def test_peak_memory_stays_near_the_weights_through_o2_and_the_cpu_compile() -> None:
    """Passes that do not change a weight must not copy it (a transposed view, a shared array); the issue measured
    2.0x the weights through O2 and 3.1x through the cpu compile."""
    g = _bert(2, hidden=512)
    weights = sum(c.const.nbytes for c in g.constants.values())
    tracemalloc.start()
    try:
        PassManager.parse("O2").run(g)
        o2 = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        graphopt.backends.get_backend("cpu").compile(g)
        cpu = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the weights are in memory before tracing starts: the peak traced is what the step added on top of them
    assert 1 + o2 / weights <= 1.3, f"O2 peaked at {1 + o2 / weights:.2f}x the weights"
    assert 1 + cpu / weights <= 1.3, f"the cpu compile peaked at {1 + cpu / weights:.2f}x the weights"
