r"""The reference interpreter: runs a graph with the registry's numpy kernels. Slow, simple, the ground truth.

It lives in `ir/` because it *is* the IR's meaning, and passes (constant folding, numeric checks, calibration,
per-layer error) need it without depending on a backend. `observe(value, array)` sees every intermediate result
as it is computed — what calibration and per-layer error are built on — and buffers are still freed after their
last use.

>>> import numpy as np
>>> from graphopt.ir import parse
>>> from graphopt.ir.interpreter import run
>>> g = parse('graph @f(%x: f32[n]) {\n  %0: f32[n] = relu(%x)\n  %1: f32[n] = neg(%0)\n  return %1\n}')
>>> seen = {}
>>> run(g, [np.array([-1.0, 2.0], np.float32)], observe=lambda v, a: seen.setdefault(v.name, a.tolist()))
[array([-0., -2.], dtype=float32)]
>>> seen
{'0': [0.0, 2.0], '1': [-0.0, -2.0]}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from graphopt.errors import InterpreterError

from .binding import bind_arrays
from .dtypes import DType
from .graph import Graph
from .node import Node
from .symbolic import evaluate as eval_dim
from .symbolic import is_symbol
from .types import TensorType, resolve_shape
from .value import Value

__all__ = ["run", "evaluate", "bind_symbols", "resolve_attrs", "random_inputs", "Observer"]

Observer = Callable[[Value, np.ndarray], None]


def bind_symbols(graph: Graph, arrays: Sequence[np.ndarray]) -> dict[str, int]:
    """Check the arrays against the graph's input types and bind every symbolic dim to its size (InputError)."""
    return bind_arrays(graph, arrays, [v.type.dtype.numpy for v in graph.inputs])  # type: ignore[union-attr]


def resolve_attrs(node: Node, bindings: Mapping[str, int]) -> dict[str, Any]:
    """The node's attributes with symbolic dims replaced by their bound sizes; KeyError names an unbound one."""

    def size(d: Any) -> Any:
        return d if isinstance(d, int) else eval_dim(d, bindings)

    attrs = dict(node.attrs)
    for key, spec in node.op.attrs.items():
        value = attrs[key]
        if spec.kind == "dim":
            attrs[key] = size(value)
        elif spec.kind == "dims" and value is not None:
            attrs[key] = tuple(size(d) for d in value)
    return attrs


def _coerce(value: Any, t: TensorType) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=t.dtype.numpy if not isinstance(value, np.ndarray) else None)


def run(graph: Graph, inputs: Sequence[Any] | Mapping[str, Any], *, check_types: bool = True,
        observe: Observer | None = None,
        transform: Callable[[Value, np.ndarray], np.ndarray] | None = None) -> list[np.ndarray]:
    """Run `graph` on `inputs` (a list in graph-input order, or a dict by input name).

    Intermediate arrays are freed after their last use. With `check_types`, every result is checked against
    its declared type, so a wrong shape-inference rule is caught where it happens. `observe(value, array)` is
    called with every node output as it is computed (keep what you need: the array is freed after its last use).
    `transform(value, array)` returns what the later nodes see instead of each node output (the fuzzer moves every
    result by a few ulps with it, to measure how much rounding alone can change the outputs).
    """
    if isinstance(inputs, Mapping):
        missing = [v.name for v in graph.inputs if v.name not in inputs]
        if missing:
            raise InterpreterError(f"missing inputs: {', '.join('%' + m for m in missing)}")
        inputs = [inputs[v.name] for v in graph.inputs]
    arrays = [_coerce(a, v.type) for a, v in zip(inputs, graph.inputs)]  # type: ignore[arg-type]
    bindings = bind_symbols(graph, arrays)
    env: dict[int, np.ndarray] = {id(v): a for v, a in zip(graph.inputs, arrays)}
    for c in graph.constants.values():
        env[id(c)] = c.const  # type: ignore[assignment]
    last_use = _last_uses(graph)
    keep = {id(v) for v in graph.outputs} | {id(c) for c in graph.constants.values()}
    for pos, node in enumerate(graph):
        args = [env[id(v)] for v in node.inputs]
        try:
            attrs = resolve_attrs(node, bindings)
        except KeyError as e:
            raise InterpreterError(f"{node.describe()}: symbol {e} is not bound by the graph inputs") from None
        results = evaluate(node, args, attrs)
        for out, r in zip(node.outputs, results):
            if check_types and out.type is not None:
                _check_result(node, out.name, out.type, r, bindings)
            if transform is not None:
                r = transform(out, r)
            env[id(out)] = r
            if observe is not None:
                observe(out, r)
        for v in node.inputs:
            if last_use.get(id(v)) == pos and id(v) not in keep:
                env.pop(id(v), None)
    return [env[id(v)] for v in graph.outputs]


def _last_uses(graph: Graph) -> dict[int, int]:
    last: dict[int, int] = {}
    for pos, node in enumerate(graph):
        for v in node.inputs:
            last[id(v)] = pos
    return last


def evaluate(node: Node, args: list[np.ndarray], attrs: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
    """Run `node`'s kernel on `args` with `attrs` (symbols already resolved, see resolve_attrs).

    Returns one array per output; a failing kernel becomes an InterpreterError naming the node.
    """
    try:
        out = node.op.kernel(*args, **attrs)
    except Exception as e:  # noqa: BLE001 - any kernel failure becomes a located error
        shapes = ", ".join(f"{a.dtype}{list(a.shape)}" for a in args)
        raise InterpreterError(f"{node.op.name} failed at {node.describe()} on inputs ({shapes}): "
                               f"{type(e).__name__}: {e}") from e
    outs = out if isinstance(out, tuple) else (out,)
    if len(outs) != len(node.outputs):
        raise InterpreterError(f"kernel of {node.op.name} returned {len(outs)} results, expected {len(node.outputs)}")
    return tuple(np.asarray(o) for o in outs)


def _check_result(node: Node, name: str, t: TensorType, r: np.ndarray, bindings: Mapping[str, int]) -> None:
    try:
        shape = resolve_shape(t.shape, bindings)
    except KeyError:  # a symbol first seen here (data-dependent size): bind it
        for d, n in zip(t.shape, r.shape):
            if is_symbol(d):
                bindings.setdefault(d, n)  # type: ignore[attr-defined]
        shape = resolve_shape(t.shape, bindings)
    if r.shape != shape or r.dtype != t.dtype.numpy:
        raise InterpreterError(
            f"{node.describe()}: %{name} is declared {t} but the kernel gave {DType.from_numpy(r.dtype)}"
            f"{list(r.shape)}; the op's type inference and kernel disagree")


def random_inputs(graph: Graph, bindings: Mapping[str, int] | None = None, seed: int = 0) -> list[np.ndarray]:
    """Random arrays matching the graph's inputs: floats ~ N(0, 1), ints in [0, 8), bools fair coins.

    Unbound symbols default to 2.
    """
    rng = np.random.default_rng(seed)
    bindings = dict(bindings or {})
    out = []
    for v in graph.inputs:
        t = v.type
        assert t is not None
        for d in t.shape:
            if is_symbol(d):
                bindings.setdefault(str(d), 2)
        shape = resolve_shape(t.shape, bindings)
        if t.dtype.is_float:
            a = rng.standard_normal(shape).astype(t.dtype.numpy)
        elif t.dtype == DType.BOOL:
            a = rng.random(shape) < 0.5
        else:
            a = rng.integers(0, 8, shape).astype(t.dtype.numpy)
        out.append(a)
    return out
