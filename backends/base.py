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

from graphopt.arrays import from_numpy, to_numpy, weight_tensor  # noqa: F401 - re-exported for targets
from graphopt.errors import InputError, UnsupportedOpError
from graphopt.ir import Graph

__all__ = ["Backend", "Executable", "register_backend", "get_backend", "available_backends", "check_coverage",
           "bind_inputs", "from_numpy", "to_numpy", "weight_tensor"]


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
