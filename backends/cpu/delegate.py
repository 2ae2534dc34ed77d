"""ONNX Runtime's kernels for the parts of a graph the cpu target measures faster there: recurrent layers and
convolution chains.

torch's LSTM, GRU and RNN (oneDNN's kernels behind `torch.lstm`) carry per-step overheads that dominate small
layers; ONNX Runtime's recurrent kernels ran the LSTM classifier's 64-step, 64-unit LSTM in about half the time on a
2-core AVX2 EPYC (194-232 µs against 404 µs, one process). Small convolutions are similar: each oneDNN call through
torch re-lays its input out into a blocked format and back, which at the digits CNN's 8x8 images costs as much as
the arithmetic (a conv with a quarter of the flops took 60-70% of the time), while ONNX Runtime keeps a chain of
convolutions in its blocked NCHWc layout (the digits CNN at batch 32: 390 against 502 µs on a 2-core VNNI Xeon;
pruned to half its channels, 248 against 415). Around such layers, the small ops of a small model (the embedding
lookup before an LSTM, the pooling and classifier head after a conv) cost more in per-call overhead from Python
than they compute. So from each recurrent or conv node the cpu target grows a region along single-use
producers and consumers (a chain whose inner values nothing else reads), builds it as an ONNX model with graphopt's
own exporter, races it against the torch code on random inputs of its shapes at compile time (ONNX Runtime on one
thread and on torch's count), and calls ONNX Runtime only where it wins by a clear margin — else the node alone is
raced the same way. Tensors cross as zero-copy numpy views; the session's pool threads do not spin between calls
(they would steal cores from the torch ops around it). The generated code says which nodes went where.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphopt.ir import Graph, Node, Value, parse

__all__ = ["DELEGABLE", "OrtNode", "Region", "regions", "region_graph", "torch_only"]

DELEGABLE = frozenset({"lstm", "gru", "rnn", "conv", "quantized_lstm"})
_MARGIN = 0.9  # ONNX Runtime must take at most this fraction of torch's time: noise must not flip the choice
_MAX_REGION = 32  # nodes: a bound on what one race times
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


@dataclass(frozen=True)
class Region:
    """Nodes that run as one ONNX Runtime call: a chain in graph order whose values (but the last node's outputs)
    are used only inside it, so the generated code can compute all of it where its last node stands."""

    nodes: tuple[Node, ...]
    fed: tuple[Value, ...]  # outside values it reads, in the order of its graph inputs
    constants: tuple[tuple[str, Value], ...]  # its constants' names in the region graph, and the graph's constants
    text: str  # the region graph, constants external
    threads: int  # ONNX Runtime's intra-op threads, as measured fastest


def region_graph(nodes: Sequence[Node]) -> tuple[Graph, list[Value], list[tuple[str, Value]]]:
    """`nodes` (a chain, in graph order) alone in a graph: constants named c<k>, outside values as inputs x<k>, the
    last node's outputs as outputs; also the outside values and constants in the order the graph takes them."""
    g = Graph(f"{nodes[-1].op.name}_region")
    mapped: dict[int, Value] = {}
    fed: list[Value] = []
    consts: list[tuple[str, Value]] = []
    for node in nodes:
        operands = []
        for v in node.inputs:
            if id(v) not in mapped:
                if v.const is not None:
                    name = f"c{len(consts)}"
                    mapped[id(v)] = g.add_constant(v.const, name=name)
                    consts.append((name, v))
                else:
                    mapped[id(v)] = g.add_input(f"x{len(fed)}", v.type)
                    fed.append(v)
            operands.append(mapped[id(v)])
        new = g.add_node(node.op.name, operands, dict(node.attrs))
        mapped.update({id(o): n for o, n in zip(node.outputs, new.outputs)})
    g.set_outputs([mapped[id(o)] for o in nodes[-1].outputs])
    return g, fed, consts


def regions(graph: Graph) -> dict[Node, Region]:
    """Every node of each region the cpu target runs on ONNX Runtime: grown from each delegable node along its
    single-use producers and consumers, kept where a race measures it clearly faster than torch (else the node
    alone is raced); a chain that ends at a fork (a residual block's input, read by its conv and its add) is
    first tried extended in graph order past the join, so a network of residual blocks can run as one call and
    keep ONNX Runtime's blocked layout throughout (ResNet-18 at 224x224: one call per block measured no faster
    than torch's kernels, the whole network 1.3x faster)."""
    from .emit import DIFFERENTIABLE

    if _torch_only.get() or DIFFERENTIABLE.get():  # training needs torch's kernels: ONNX Runtime has no backward
        return {}
    nodes = list(graph)
    order = {id(n): k for k, n in enumerate(nodes)}
    outputs = {id(v) for v in graph.outputs}
    out: dict[Node, Region] = {}
    lost: set[int] = set()  # nodes of spans that lost their race: a span from inside one is not raced again
    for node in nodes:
        if node.op.name not in DELEGABLE or node in out or any(v is None for v in node.inputs):
            continue
        chain = _grow(node, order, outputs, out)
        span = chain if id(node) in lost else _span(chain, nodes, order, outputs, out)
        candidates = {tuple(c): list(c) for c in (span, chain, [node])}  # largest first, each once
        for candidate in candidates.values():
            whole = len(candidate) == len(nodes) and list(candidate[-1].outputs) == list(graph.outputs)
            region = _measured(candidate, whole)
            if region is not None:
                out.update({n: region for n in region.nodes})
                break
            if candidate is candidates.get(tuple(span)) and len(span) > len(chain):
                lost.update(id(n) for n in span)
    return out


def _exportable(node: Node) -> bool:
    from graphopt.backends.onnx_export import EXPORTERS

    return node.op.name in EXPORTERS


def _inner(node: Node, chain: Sequence[Node], outputs: set[int]) -> bool:
    """Whether every output of `node` is used only by nodes of `chain` (and is not a graph output)."""
    members = {id(n) for n in chain}
    return all(id(o) not in outputs and all(id(u) in members for u in o.users) for o in node.outputs)


def _grow(seed: Node, order: dict[int, int], outputs: set[int], taken: dict[Node, Region]) -> list[Node]:
    chain = [seed]
    while len(chain) < _MAX_REGION:  # producers whose outputs only the chain reads
        producers = {id(p): p for n in chain for v in n.inputs if v is not None and (p := v.producer) is not None
                     and p not in chain and p not in taken and _exportable(p)}
        grown = [p for p in producers.values() if _inner(p, chain + [p], outputs)]
        if not grown:
            break
        chain = sorted(chain + grown, key=lambda n: order[id(n)])
    while len(chain) < _MAX_REGION:  # the one consumer of the last node's outputs
        last = chain[-1]
        users = {id(u): u for o in last.outputs for u in o.users}
        if len(users) != 1:
            break
        (c,) = users.values()
        if c in taken or not _exportable(c) or not _inner(last, chain + [c], outputs):
            break
        chain.append(c)
    return chain


def _span(chain: list[Node], nodes: Sequence[Node], order: dict[int, int], outputs: set[int],
          taken: dict[Node, Region]) -> list[Node]:
    """`chain` extended by the nodes after its last one in graph order, as far as the extension is still a region
    (every value but the last node's outputs read only inside): past a fork to where its branches join again."""
    best, trial = chain, list(chain)
    for node in nodes[order[id(chain[-1])] + 1:]:
        if len(trial) >= _MAX_REGION or node in taken or not _exportable(node) or any(v is None for v in node.inputs):
            break
        trial.append(node)
        if all(_inner(n, trial, outputs) for n in trial[:-1]):
            best = list(trial)
    return best


def _measured(nodes: Sequence[Node], whole: bool = False) -> Region | None:
    if all(v.const is None for n in nodes for v in n.inputs):  # no weights to build the session from once
        return None
    graph, fed, consts = region_graph(nodes)
    text = graph.format(max_inline=-1)
    threads = _race(text, _Weights.of(graph), whole)
    return Region(tuple(nodes), tuple(fed), tuple(consts), text, threads) if threads else None


@dataclass(frozen=True)
class _Weights:
    """A region's constants, compared by their names, shapes and dtypes only: races are cached per region text and
    shapes (speed does not depend on the values), but run on the real values, which a quantized op needs valid
    (positive scales, zero points in range)."""

    types: tuple[tuple[str, tuple[int, ...], str], ...]
    arrays: dict[str, np.ndarray] = field(compare=False, hash=False)

    @staticmethod
    def of(graph: Graph) -> _Weights:
        arrays = {name: np.asarray(c.const) for name, c in graph.constants.items()}
        return _Weights(tuple((k, tuple(a.shape), a.dtype.str) for k, a in arrays.items()), arrays)


class OrtNode:
    """A region run by ONNX Runtime: built from its graph's text and constants (what the generated code holds),
    called with torch tensors, returning torch tensors."""

    def __init__(self, text: str, constants: dict[str, Any], threads: int | None = None, quiet: bool = False) -> None:
        import torch

        from graphopt.backends.onnx_export import to_onnx
        from graphopt.backends.onnxruntime import session

        graph = parse(text, {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v) for k, v in constants.items()})
        self._session = session(to_onnx(graph, ort_contrib=True).SerializeToString(),
                                threads=threads or torch.get_num_threads(), quiet=quiet)
        self._inputs = [v.name for v in self._session.get_inputs()]  # the exporter's names, in graph order
        self._outputs = [v.name for v in self._session.get_outputs()]
        # The binding's run, when the wrapper exposes it: InferenceSession.run re-validates the feed's names on every
        # call, 3-10 µs of the LSTM classifier's ~110 µs here; the names are the session's own, checked once above.
        binding = getattr(self._session, "_sess", None)
        self._run = binding.run if binding is not None else lambda outs, feeds, _: self._session.run(outs, feeds)
        self._from_numpy = torch.from_numpy

    def __call__(self, *xs: Any) -> list[Any]:
        outs = self._run(self._outputs, {n: x.numpy() for n, x in zip(self._inputs, xs)}, None)
        return [self._from_numpy(o) for o in outs]

    def run_arrays(self, *xs: np.ndarray) -> list[np.ndarray]:
        """The same run on numpy arrays, returning ONNX Runtime's arrays: no torch conversion either way."""
        return self._run(self._outputs, dict(zip(self._inputs, xs)), None)  # type: ignore[no-any-return]


_RACES: dict[tuple[str, tuple[tuple[str, tuple[int, ...], str], ...], bool], int] = {}


def _race(text: str, weights: _Weights, whole: bool = False) -> int:
    """ONNX Runtime's best thread count for the region, cached per region text, constant shapes and `whole` (the
    cache keeps no weights alive: a long-lived process compiles many models)."""
    key = (text, weights.types, whole)
    if key not in _RACES:
        _RACES[key] = _raced(text, weights, whole)
    return _RACES[key]


_race.cache_clear = _RACES.clear  # type: ignore[attr-defined]  # what tests reset, as with functools' caches


def _raced(text: str, weights: _Weights, whole: bool) -> int:
    """ONNX Runtime's best thread count for the region if it beats torch's kernels by the margin, else 0.

    A region inside a torch program runs right after torch's ops, whose OpenMP threads are still spinning for
    work: the two sides are timed in alternation, which charges ONNX Runtime that contention (ResNet-18 whole:
    15.5 against 13.1 ms). A region that is the whole graph follows only its own previous call, so each side is
    timed in blocks of consecutive calls, as it will be served."""
    import torch

    from graphopt.backends.reference import random_inputs

    from . import CpuExecutable
    from .kernels import race, race_blocks

    graph = parse(text, weights.arrays)
    xs = [torch.from_numpy(x) for x in random_inputs(graph, {s: _SYMBOL_SIZE for v in graph.inputs
                                                              for s in v.type.symbols}, seed=0)]
    best, best_ms = 0, float("inf")
    timed = race_blocks if whole else race
    try:
        with torch_only():
            plain = CpuExecutable(graph)
        for threads in sorted({torch.get_num_threads(), 1}):
            ort = OrtNode(text, weights.arrays, threads, quiet=True)  # a refusal is an answer here, not news
            with torch.inference_mode():
                t_ort, t_torch = timed(lambda: ort(*xs), lambda: plain(*xs))  # noqa: B023 - called right here
            if t_ort < _MARGIN * t_torch and t_ort / t_torch < best_ms:
                best, best_ms = threads, t_ort / t_torch
    except Exception:  # noqa: BLE001 - ONNX Runtime refusing the node means: keep torch's kernel
        return 0
    return best
