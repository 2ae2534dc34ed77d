"""Models whose shape-like arguments arrive as inputs: compiled once per distinct value of those inputs.

An ONNX file may feed a Reshape target, Resize scales, reduction axes or TopK's k as graph inputs. graphopt
compiles static shape arithmetic, so such a model is specialized on those values — when it is called, as
torch.compile specializes on Python ints — and each specialization is cached under a guard on the exact values
(dtype, shape and bytes): a call with other values compiles again, never reuses a graph built for different ones.

>>> import numpy as np, onnx, graphopt
>>> from onnx import helper as h, TensorProto as T
>>> g = h.make_graph([h.make_node("Reshape", ["x", "shape"], ["y"])], "g",
...                  [h.make_tensor_value_info("x", T.FLOAT, [2, 6]), h.make_tensor_value_info("shape", T.INT64, [2])],
...                  [h.make_tensor_value_info("y", T.FLOAT, ["a", "b"])])
>>> m = graphopt.compile(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), target="reference")
>>> m.needed, m(np.ones((2, 6), np.float32), np.array([3, 4])).shape, m(np.ones((2, 6), np.float32), np.array([4, 3])).shape
(['shape'], (3, 4), (4, 3))
>>> len(m.specializations)
2
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from graphopt.errors import GraphoptError, InputError, ShapeInputsNeeded

__all__ = ["SpecializingModel"]


def _array(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


class SpecializingModel:
    """Callable like a CompiledModel; `needed` are the inputs it specializes on, `specializations` the cache (the
    most recent last). `graph`, `report()` and `save()` refer to the most recent specialization."""

    def __init__(self, needed: Sequence[str], input_names: Sequence[str],
                 compile_with: Callable[[dict[str, np.ndarray]], Any], *, max_cached: int = 8) -> None:
        self.needed = sorted(needed)
        self.input_names = list(input_names)
        self._compile_with = compile_with
        self.max_cached = max_cached
        self.specializations: OrderedDict[tuple[Any, ...], Any] = OrderedDict()

    def _bind(self, inputs: Sequence[Any], named: Mapping[str, Any]) -> dict[str, Any]:
        if len(inputs) == 1 and isinstance(inputs[0], Mapping) and not named:
            inputs, named = (), dict(inputs[0])
        if len(inputs) > len(self.input_names):
            raise InputError(f"the model takes {len(self.input_names)} input(s) ({', '.join(self.input_names)}), "
                             f"got {len(inputs)}")
        values = dict(zip(self.input_names, inputs))
        for k, v in named.items():
            if k not in self.input_names or k in values:
                raise InputError(f"unexpected or repeated input {k!r}; the model takes {', '.join(self.input_names)}")
            values[k] = v
        missing = [n for n in self.input_names if n not in values]
        if missing:
            raise InputError(f"missing input(s) {', '.join(missing)}")
        return values

    def _specialize(self, values: Mapping[str, Any]) -> Any:
        while True:
            constants = {n: _array(values[n]) for n in self.needed}
            try:
                return self._compile_with(constants)
            except ShapeInputsNeeded as e:  # a further shape argument, reached once the first ones are known
                more = sorted(set(e.inputs) - set(self.needed))
                if not more:
                    raise
                self.needed = sorted({*self.needed, *more})

    def _key(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        arrays = {n: _array(values[n]) for n in self.needed}
        return tuple((n, a.dtype.str, a.shape, a.tobytes()) for n, a in arrays.items())

    def __call__(self, *inputs: Any, **named: Any) -> Any:
        values = self._bind(inputs, named)
        key = self._key(values)
        compiled = self.specializations.get(key)
        if compiled is None:
            compiled = self._specialize(values)
            key = self._key(values)  # `needed` may have grown while specializing
            self.specializations[key] = compiled
            if len(self.specializations) > self.max_cached:
                self.specializations.popitem(last=False)
        self.specializations.move_to_end(key)
        return compiled(*[values[n] for n in self.input_names if n not in self.needed])

    @property
    def latest(self) -> Any:
        if not self.specializations:
            raise GraphoptError(f"this model specializes on the values of {', '.join(self.needed)}; call it once "
                                "(or compile with constants={...}) before asking for its graph, report or artifact")
        return next(reversed(self.specializations.values()))

    @property
    def graph(self) -> Any:
        return self.latest.graph

    def report(self, **kwargs: Any) -> Any:
        return self.latest.report(**kwargs)

    def save(self, path: Any, **kwargs: Any) -> Any:
        """The most recent specialization's artifact (its inputs no longer include the specialized ones)."""
        return self.latest.save(path, **kwargs)

    def __repr__(self) -> str:
        return f"SpecializingModel(on {', '.join(self.needed)}; {len(self.specializations)} specialization(s))"
