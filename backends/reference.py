r"""The `reference` target: the IR's interpreter (`graphopt.ir.interpreter`) behind the backend interface.

>>> import numpy as np
>>> from graphopt.ir import parse
>>> from graphopt.backends.reference import run
>>> g = parse('graph @f(%x: f32[n]) {\n  %0: f32[n] = relu(%x)\n  return %0\n}')
>>> run(g, [np.array([-1.0, 2.0], np.float32)])
[array([0., 2.], dtype=float32)]
"""

from __future__ import annotations

from typing import Any

from graphopt.ir import Graph
from graphopt.ir.interpreter import bind_symbols, evaluate, random_inputs, resolve_attrs, run

__all__ = ["run", "evaluate", "bind_symbols", "resolve_attrs", "random_inputs", "ReferenceExecutable",
           "ReferenceBackend"]


class ReferenceExecutable:
    """`run` behind the Executable interface: torch tensors in give tensors out, numpy gives numpy."""

    source = None

    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    def __call__(self, *inputs: Any, **named: Any) -> list[Any]:
        from .base import bind_inputs

        args = bind_inputs([v.name for v in self.graph.inputs], inputs, named)
        outs = run(self.graph, args)
        if args and hasattr(args[0], "detach"):
            from .base import from_numpy

            return [from_numpy(o) for o in outs]
        return outs


class ReferenceBackend:
    name = "reference"
    doc = "The numpy interpreter: every registered op, slow, the ground truth."

    def supported_ops(self) -> frozenset[str]:
        from graphopt.ir import registered_ops

        return frozenset(registered_ops())

    def compile(self, graph: Graph, **options: Any) -> ReferenceExecutable:
        return ReferenceExecutable(graph)
