"""Shared test helpers: run a pass on IR text and compare structurally and numerically."""

from __future__ import annotations

import numpy as np

from graphopt.backends.reference import random_inputs, run
from graphopt.ir import Graph, assert_graph_equal, parse
from graphopt.passes import PassContext, PassManager


def _before_and_after(pipeline: str, text: str, seed: int) -> tuple[Graph, list[np.ndarray], list[np.ndarray]]:
    """Parse and verify `text`, run it, apply `pipeline`, verify, run again: (graph, before, after)."""
    graph = parse(text)
    graph.verify()
    inputs = random_inputs(graph, seed=seed)
    want = run(graph, inputs)
    PassManager.parse(pipeline).run(graph, PassContext())
    graph.verify()
    return graph, want, run(graph, inputs)


def check_pass(pipeline: str, before: str, expected: str, *, seed: int = 0, rtol: float = 0.0) -> Graph:
    """before -> pipeline -> structurally equal to expected, verified, and numerically equal on random inputs."""
    graph, want, got = _before_and_after(pipeline, before, seed)
    assert_graph_equal(graph, parse(expected))
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=0, equal_nan=True)
    return graph


def check_semantics(pipeline: str, text: str, *, seed: int = 0, rtol: float = 1e-5, atol: float = 1e-6) -> Graph:
    """The pipeline keeps `text`'s results (within float rounding) on random inputs: the differential fuzzer's
    check, for the cases it found. Signs of zeros and infinities must match exactly."""
    graph, want, got = _before_and_after(pipeline, text, seed)
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True)
        np.testing.assert_array_equal(np.signbit(g), np.signbit(w))
    return graph
