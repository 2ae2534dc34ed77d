r"""What a backend is: a name, the ops it supports, and `compile(graph) -> Executable`.

`check_coverage` runs before any backend compiles, so an unsupported node is reported by name and origin
instead of failing deep inside code generation:

>>> from graphopt.backends import available_backends, check_coverage, get_backend
>>> from graphopt.ir import parse
>>> g = parse('graph @f(%x: f32[2]) {\n  %0: f32[2] = relu(%x)\n  return %0\n}')
>>> check_coverage(g, get_backend("cpu"))
>>> sorted(available_backends())[:3]
['cpu', 'onnxruntime', 'reference']
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from graphopt.errors import InputError, UnsupportedOpError
from graphopt.ir import Graph
from graphopt.ir.binding import SYMBOL_BOUNDS, bind_shapes

__all__ = ["Backend", "Executable", "register_backend", "get_backend", "available_backends", "check_coverage",
           "weight_tensor"]


class Executable(Protocol):
    """A compiled graph: call it with tensors in graph-input order (or by name); get a list of outputs."""

    source: str | None

    def __call__(self, *inputs: Any, **named: Any) -> list[Any]: ...


class Backend(Protocol):
    name: str
    doc: str

    def supported_ops(self) -> frozenset[str]: ...

    def compile(self, graph: Graph, **options: Any) -> Executable: ...


_BACKENDS: dict[str, Callable[[], Backend]] = {}


def register_backend(name: str, factory: Callable[[], Backend]) -> None:
    """Make `get_backend(name)` return `factory()`; factories import their heavy dependencies lazily."""
    _BACKENDS[name] = factory


def available_backends() -> list[str]:
    return list(_BACKENDS)


def get_backend(name: str) -> Backend:
    try:
        return _BACKENDS[name]()
    except KeyError:
        raise UnsupportedOpError(f"unknown target {name!r}; targets: {', '.join(_BACKENDS)}") from None


def check_coverage(graph: Graph, backend: Backend) -> None:
    """Raise UnsupportedOpError naming every node `backend` cannot run (all at once): ops it lacks, and nodes its
    optional `supports(node) -> reason | None` refuses (a dtype or an attribute its kernels do not take)."""
    supported = backend.supported_ops()
    node_check = getattr(backend, "supports", None)
    bad: list[tuple[Any, str]] = []
    for n in graph:
        reason = None if n.op.name in supported else "no kernel for this op"
        if reason is None and node_check is not None:
            reason = node_check(n)
        if reason is not None:
            bad.append((n, reason))
    if not bad:
        return
    counts = Counter(n.op.name for n, _ in bad)
    lines = [f"  {n.describe()}: {why}" for n, why in bad[:20]]
    lines += [f"  ... and {len(bad) - 20} more"] if len(bad) > 20 else []
    raise UnsupportedOpError(
        f"target {backend.name!r} does not support {', '.join(f'{op} (x{c})' for op, c in counts.items())}:\n"
        + "\n".join(lines) + "\nUse target='reference' (runs every op) or another target.", ops=dict(counts))


def bind_inputs(names: Sequence[str], inputs: Sequence[Any], named: Mapping[str, Any]) -> list[Any]:
    """Positional and keyword inputs in graph-input order; a clear error for missing or unknown names."""
    if len(inputs) > len(names):
        raise InputError(f"the model takes {len(names)} inputs ({', '.join(names)}), got {len(inputs)}")
    unknown = set(named) - set(names)
    if unknown:
        raise InputError(f"unknown input(s) {', '.join(sorted(unknown))}; the model takes {', '.join(names)}")
    twice = [n for n in names[:len(inputs)] if n in named]
    if twice:
        raise InputError(f"input(s) {', '.join(map(repr, twice))} given both by position and by name")
    out = list(inputs)
    for n in names[len(inputs):]:
        if n not in named:
            raise InputError(f"missing input {n!r}; the model takes {', '.join(names)}")
        out.append(named[n])
    return out


def check_inputs(graph: Graph, arrays: Sequence[Any], dtypes: Sequence[Any]) -> dict[str, int]:
    """Every target's check before it runs: dtypes (as the target's array library names them), ranks, dims and
    symbol ranges (ir.bind_shapes). Returns the symbol bindings; InputError names what does not fit."""
    if len(arrays) != len(graph.inputs):
        raise InputError(f"the model takes {len(graph.inputs)} input(s) "
                         f"({', '.join(repr(v.name) for v in graph.inputs)}), got {len(arrays)}")
    for v, a, want in zip(graph.inputs, arrays, dtypes):
        if a.dtype != want:
            raise InputError(f"input {v.name!r} must be {v.type.dtype.value} ({v.type}), got {a.dtype} of shape "
                             f"{list(a.shape)}")
    return bind_shapes(graph.inputs, [tuple(a.shape) for a in arrays], graph.metadata.get(SYMBOL_BOUNDS))


def from_numpy(a: Any) -> Any:
    """numpy → torch without a copy where possible (bf16 via its bit pattern; read-only arrays are copied)."""
    import numpy as np
    import torch

    a = np.asarray(a)
    if not a.flags.writeable or not a.flags.c_contiguous:
        a = np.ascontiguousarray(a).copy()
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def weight_tensor(a: Any) -> Any:
    """numpy → torch for a graph constant, sharing its memory even though the graph's view is read-only.

    Compiling must not double a model's memory: the generated code never writes to a weight (every op it emits
    is out of place; runtime helpers clone before an in-place update), so torch's warning about non-writable
    arrays does not apply. Non-contiguous constants (folded transposes) are copied once, contiguous."""
    import warnings

    import numpy as np
    import torch

    a = np.asarray(a)
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        if a.dtype.name == "bfloat16":
            return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(a)


def to_numpy(t: Any) -> Any:
    """torch → numpy (bf16 as ml_dtypes.bfloat16)."""
    import ml_dtypes
    import torch

    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()
