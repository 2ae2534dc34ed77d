"""ONNX Runtime's kernel for one node, where the cpu target measures it faster than torch's: recurrent layers.

torch's LSTM, GRU and RNN (oneDNN's kernels behind `torch.lstm`) carry per-step overheads that dominate small
layers; ONNX Runtime's recurrent kernels ran the LSTM classifier's 64-step, 64-unit LSTM in about half the time on a
2-core AVX2 EPYC (194-232 µs against 404 µs, one process). So for these ops the cpu target builds the node as a
one-node ONNX model with graphopt's own exporter, races both kernels on random inputs of the node's shapes at
compile time, and calls ONNX Runtime only where it wins by a clear margin. Tensors cross as zero-copy numpy views;
the session's pool threads do not spin between calls (they would steal cores from the torch ops around it).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Iterator
from typing import Any

import numpy as np

from graphopt.ir import Graph, Node, parse

__all__ = ["DELEGABLE", "OrtNode", "one_node_graph", "ort_threads", "torch_only"]

DELEGABLE = frozenset({"lstm", "gru", "rnn"})
_MARGIN = 0.9  # ONNX Runtime must take at most this fraction of torch's time: noise must not flip the choice
_SYMBOL_SIZE = 8  # what free dims (a symbolic batch or sequence) are bound to for the race
_torch_only = contextvars.ContextVar("graphopt_cpu_torch_only", default=False)


@contextlib.contextmanager
def torch_only() -> Iterator[None]:
    """Emit torch's kernels for delegable nodes (the race's other side, and users who want no ORT in the loop)."""
    token = _torch_only.set(True)
    try:
        yield
    finally:
        _torch_only.reset(token)


def one_node_graph(node: Node) -> tuple[Graph, list[int]]:
    """`node` alone in a graph: its constant operands as constants (named c<i>), the others as inputs (x<i>); and
    the positions of the operands that are inputs, in order."""
    g = Graph(f"{node.op.name}_node")
    operands, fed = [], []
    for i, v in enumerate(node.inputs):
        if v.const is not None:
            operands.append(g.add_constant(v.const, name=f"c{i}"))
        else:
            operands.append(g.add_input(f"x{i}", v.type))
            fed.append(i)
    new = g.add_node(node.op.name, operands, dict(node.attrs))
    g.set_outputs(new.outputs)
    return g, fed


class OrtNode:
    """One node run by ONNX Runtime: built from its one-node graph's text and constants (what the generated code
    holds), called with torch tensors, returning torch tensors."""

    def __init__(self, text: str, constants: dict[str, Any], threads: int | None = None) -> None:
        import torch

        from graphopt.backends.onnx_export import to_onnx
        from graphopt.backends.onnxruntime import session

        graph = parse(text, {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v) for k, v in constants.items()})
        self._session = session(to_onnx(graph).SerializeToString(), threads=threads or torch.get_num_threads())
        self._inputs = [v.name for v in self._session.get_inputs()]  # the exporter's names, in graph order
        self._outputs = [v.name for v in self._session.get_outputs()]
        self._torch = torch

    def __call__(self, *xs: Any) -> tuple[Any, ...]:
        outs = self._session.run(self._outputs, {n: x.numpy() for n, x in zip(self._inputs, xs)})
        return tuple(self._torch.from_numpy(o) for o in outs)


def ort_threads(node: Node) -> int:
    """How many threads ONNX Runtime's kernel runs this node with where it is clearly faster than torch's here,
    or 0 to keep torch's (measured once per signature and process; 0 also when delegation is off, an operand is
    missing, or ONNX Runtime cannot build the node). A small recurrent layer often runs fastest on one thread: its
    steps are sequential and each is too small to split."""
    if _torch_only.get() or node.op.name not in DELEGABLE or any(v is None for v in node.inputs):
        return 0
    if all(v.const is None for v in node.inputs):  # no weights to build the session from once
        return 0
    graph, _ = one_node_graph(node)
    types = tuple((c.name, tuple(c.type.shape), c.type.dtype.numpy.str) for c in graph.constants.values())
    return _race(graph.format(max_inline=-1), types)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=None)
def _race(text: str, constant_types: tuple[tuple[str, tuple[int, ...], str], ...]) -> int:
    import torch

    from graphopt.backends.reference import random_inputs

    from . import CpuExecutable
    from .kernels import race

    rng = np.random.default_rng(0)  # random weights of the node's shapes: speed does not depend on the values
    consts = {name: (rng.standard_normal(shape) * 0.1).astype(dtype) for name, shape, dtype in constant_types}
    graph = parse(text, consts)
    xs = [torch.from_numpy(x) for x in random_inputs(graph, {s: _SYMBOL_SIZE for v in graph.inputs
                                                              for s in v.type.symbols}, seed=0)]
    best, best_ms = 0, float("inf")
    try:
        with torch_only():
            plain = CpuExecutable(graph)
        for threads in sorted({torch.get_num_threads(), 1}):
            ort = OrtNode(text, consts, threads)
            with torch.inference_mode():
                t_ort, t_torch = race(lambda: ort(*xs), lambda: plain(*xs))  # noqa: B023 - called right here
            if t_ort < _MARGIN * t_torch and t_ort / t_torch < best_ms:
                best, best_ms = threads, t_ort / t_torch
    except Exception:  # noqa: BLE001 - ONNX Runtime refusing the node means: keep torch's kernel
        return 0
    return best
