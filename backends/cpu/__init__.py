r"""The `cpu` target: the graph becomes readable Python calling PyTorch CPU kernels (see codegen.py).

>>> import numpy as np
>>> from graphopt.ir import parse
>>> from graphopt.backends import get_backend
>>> g = parse('graph @f(%x: f32[n]) {\n  %0: f32[n] = relu(%x)\n  return %0\n}')
>>> exe = get_backend("cpu").compile(g)
>>> exe(np.array([-1.0, 2.0], np.float32))
[array([0., 2.], dtype=float32)]
>>> print(exe.source.split("def forward")[1].splitlines()[2].strip())
v0 = torch.relu(x)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphopt.ir import Graph, Node
from graphopt.ir.binding import bind_arrays
from graphopt.ir.symbolic import free_symbols, is_symbol

from ..base import bind_inputs, check_coverage, from_numpy, to_numpy, weight_tensor
from .codegen import channels_last_inputs, compile_source, generate
from .emit import EMITTERS

__all__ = ["CpuBackend", "CpuExecutable"]


class CpuExecutable:
    """A compiled graph. Call it with torch tensors (get tensors back) or numpy arrays (get arrays back)."""

    def __init__(self, graph: Graph, source: str | None = None, weights: list[Any] | None = None) -> None:
        import torch

        self.graph = graph
        if source is None or weights is None:
            source, weights = _generate_fastest(graph)
        self.source: str | None = source
        self.weights = [_tensor(w) for w in weights]
        self.input_names = [v.name for v in graph.inputs]
        self._dtypes = [v.type.dtype.torch for v in graph.inputs]
        self._fn = compile_source(source, self.weights, f"<graphopt-cpu:{graph.name}>")
        self._session = getattr(self._fn, "whole_graph_session", None)  # see codegen: the graph is one ORT call
        # A graph that is one ORT call on static shapes: ONNX Runtime checks each input's dtype and exact dims itself,
        # which for static shapes is all bind_arrays checks; serving calls go straight to the session (numpy arrays
        # without any torch conversion), and a call it refuses takes the checked path below, which raises graphopt's
        # InputError. Measured on the LSTM classifier (one call after a pause, as the benchmarks time): the checked
        # path's Python costs ~25 µs of ~160, and torch<->numpy conversion another ~30.
        static = all(isinstance(d, int) for v in graph.inputs for d in v.type.shape)
        self._direct = self._session if self._session is not None and static else None
        self._tensor_type = torch.Tensor
        self._torch = torch
        self._checked: tuple[Any, ...] | None = None  # the (shape, dtype)s the last call passed the checks with

    def __call__(self, *inputs: Any, **named: Any) -> list[Any]:
        direct = self._direct
        if direct is not None and not named and len(inputs) == len(self.input_names):
            kind = type(inputs[0])
            try:
                if kind is self._tensor_type and all(type(x) is kind for x in inputs):
                    return direct(*inputs)  # type: ignore[no-any-return]
                if kind is np.ndarray and all(type(x) is kind for x in inputs):
                    return direct.run_arrays(*inputs)  # type: ignore[no-any-return]
            except Exception:  # noqa: BLE001, S110 - refused: the checked path names what does not fit
                pass
        torch = self._torch
        # all inputs by position is the serving call: its binding is the tuple itself (bind_inputs checks the rest)
        args = inputs if not named and len(inputs) == len(self.input_names) else bind_inputs(self.input_names, inputs,
                                                                                            named)
        as_numpy = not isinstance(args[0], torch.Tensor) if args else False
        xs = [a if isinstance(a, torch.Tensor) else from_numpy(a) for a in args]
        # Serving calls repeat one shape: the full check (dims, symbols, bounds) runs when the shapes or dtypes
        # differ from the last call's, which halves the per-call overhead of a small model.
        key = tuple((x.shape, x.dtype) for x in xs)
        if key != self._checked:
            bind_arrays(self.graph, xs, self._dtypes)
            self._checked = key
        if self._session is not None:
            outs = self._session(*xs)
            return [to_numpy(o) for o in outs] if as_numpy else outs
        with torch._C._InferenceMode(True):  # what torch.inference_mode() enters, without its ~2 µs of wrapping
            outs = self._fn(*xs)
        return [to_numpy(o) for o in outs] if as_numpy else outs


class CpuBackend:
    name = "cpu"
    doc = "Python source calling PyTorch CPU kernels, one statement per node; dynamic dims without recompiling."

    def supported_ops(self) -> frozenset[str]:
        return frozenset(EMITTERS)

    def supports(self, node: Node) -> str | None:
        """Why the generated code cannot run `node` (None: it can): dims no graph input binds, u64 arithmetic
        that int64 does not compute exactly."""
        from .emit import unsigned_reason

        reason = unsigned_reason(node)
        if reason is not None:
            return reason
        graph = node.graph
        bound = {d for v in graph.inputs for d in v.type.shape if is_symbol(d)} if graph is not None else set()
        for key, spec in node.op.attrs.items():
            value = node.attrs[key]
            dims = [value] if spec.kind == "dim" else list(value or ()) if spec.kind == "dims" else []
            missing = set().union(*(free_symbols(d) for d in dims if isinstance(d, str))) - bound
            if missing and graph is not None:  # data-dependent sizes (nonzero's count): bound by an earlier node
                missing -= _bound_before(graph, node)
            if missing:
                return f"attribute {key} uses {', '.join(sorted(missing))}, which no graph input binds"
        return None

    def compile(self, graph: Graph, **options: Any) -> CpuExecutable:
        check_coverage(graph, self)
        return CpuExecutable(graph)


def _bound_before(graph: Graph, node: Node) -> set[str]:
    """Symbols that outputs of the nodes before `node` bind (the generated code reads them from those tensors)."""
    out: set[str] = set()
    for n in graph:
        if n is node:
            break
        out |= {d for o in n.outputs for d in o.type.shape if is_symbol(d)}  # type: ignore[union-attr]
    return out


def _generate_fastest(graph: Graph) -> tuple[str, list[Any]]:
    """The generated module; for CNNs with static shapes, NCHW or channels-last, whichever runs faster here.

    Which layout wins depends on the CPU and the net (pooling in NCHW can be 10x slower than in NHWC; small convs
    may prefer NCHW), so both are timed on random inputs, once, at compile time.
    """
    plain = generate(graph)
    if not channels_last_inputs(graph) or not all(isinstance(d, int) for v in graph.inputs for d in v.type.shape):
        return plain
    import torch

    from graphopt.backends.reference import random_inputs

    from .kernels import race

    nhwc = generate(graph, channels_last=True)
    xs = [from_numpy(x) for x in random_inputs(graph, seed=0)]
    nchw_fn, nhwc_fn = (compile_source(src, [_tensor(w) for w in ws], f"<graphopt-cpu-probe:{graph.name}>")
                        for src, ws in (plain, nhwc))
    with torch.inference_mode():
        t_plain, t_nhwc = race(lambda: nchw_fn(*xs), lambda: nhwc_fn(*xs), pairs=5)
    return nhwc if t_nhwc < 0.95 * t_plain else plain


def _tensor(w: Any) -> Any:
    import torch

    return w if isinstance(w, torch.Tensor) else weight_tensor(w)
