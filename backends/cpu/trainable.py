"""The cpu target's generated code as a trainable `nn.Module`: the graph's float constants become parameters.

Importance by gradient (Taylor pruning) and distillation both need ∂loss/∂weights of the graph being compressed.
The cpu target already turns the graph into torch code, one statement per node; generated with
`DIFFERENTIABLE` set (plain torch ops instead of oneDNN's packed weights, which have no backward) and called with
`nn.Parameter`s as its weights, autograd differentiates it like any model. So there is one meaning of the graph
(the one the target compiles) and no second executor to keep in step. `write_back` puts trained values back into
the graph's constants: the IR stays the single source of truth.

>>> import numpy as np, torch
>>> from graphopt.ir import parse
>>> g = parse('''graph @f(%x: f32[2,3]) {
...   const @w: f32[4,3] = external
...   %y: f32[2,4] = linear(%x, @w)
...   return %y
... }''', {"w": np.ones((4, 3), np.float32)})
>>> m = TrainableGraph(g)
>>> m(torch.ones(2, 3))[0].sum().backward()
>>> m.grad_of("w").tolist()[0]
[2.0, 2.0, 2.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from graphopt.ir import Graph

from .codegen import generate, load_make, weight_values
from .emit import DIFFERENTIABLE

__all__ = ["TrainableGraph"]


class TrainableGraph(torch.nn.Module):
    """`forward(*inputs) -> list of outputs`, differentiable in the graph's float constants (rank ≥ 1)."""

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        token = DIFFERENTIABLE.set(True)
        try:
            source, weights = generate(graph)
        finally:
            DIFFERENTIABLE.reset(token)
        self.graph = graph
        self.source = source
        self.names = [c.name for c in weight_values(graph)]
        self._make = load_make(source, f"<graphopt-trainable:{graph.name}>")
        self.params = torch.nn.ParameterDict()
        self._fixed: dict[str, torch.Tensor] = {}
        for name, w in zip(self.names, weights):
            t = torch.from_numpy(np.array(w))
            if t.is_floating_point() and t.dim() > 0:
                self.params[_key(name)] = torch.nn.Parameter(t)
            else:
                self._fixed[name] = t

    def forward(self, *inputs: Any) -> list[torch.Tensor]:
        # make() runs per call: whatever it derives from the weights must see this step's values
        ws = [self.params[_key(n)] if _key(n) in self.params else self._fixed[n] for n in self.names]
        return self._make(ws)(*inputs)  # type: ignore[no-any-return]

    def parameter_of(self, name: str) -> torch.nn.Parameter:
        return self.params[_key(name)]

    def grad_of(self, name: str) -> torch.Tensor:
        g = self.params[_key(name)].grad
        if g is None:
            raise KeyError(f"constant @{name} has no gradient (it does not reach the loss)")
        return g

    def trainable_names(self) -> list[str]:
        return [n for n in self.names if _key(n) in self.params]

    def write_back(self, graph: Graph | None = None) -> Graph:
        """Copy the parameters' values into `graph`'s constants (default: the graph this was built from)."""
        graph = graph if graph is not None else self.graph
        for name in self.trainable_names():
            old = graph.value(name)
            data = self.params[_key(name)].detach().numpy().astype(old.const.dtype, copy=True)  # type: ignore[union-attr]
            graph.replace_constant(old, data)
        return graph


def _key(name: str) -> str:
    # ParameterDict keys may not contain dots; constant names often do (module paths)
    return "p_" + name.encode("utf-8").hex()
