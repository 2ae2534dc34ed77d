"""Binding a graph's symbolic dims to the sizes of the arrays it is called with — and refusing what does not fit.

Every target calls this before it runs anything, so a wrong batch, a mask longer than the ids it goes with, or a
length above a declared `Dim(max=...)` is one clear error naming the input, the dim and what was expected, never
a silently truncated result or a raw error from inside generated code.

>>> from graphopt.ir import parse
>>> g = parse('graph @f(%ids: i64[batch,seq], %mask: i64[batch,seq]) {\\n  return %ids\\n}')
>>> bind_shapes(g.inputs, [(2, 12), (2, 12)])
{'batch': 2, 'seq': 12}
>>> bind_shapes(g.inputs, [(2, 12), (2, 16)])
Traceback (most recent call last):
...
graphopt.errors.InputError: input 'mask' dim 1 is 16, but seq is 12 (from input 'ids' dim 1); both are declared seq
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from graphopt.errors import InputError

from .symbolic import evaluate, free_symbols, is_symbol
from .value import Value

__all__ = ["bind_shapes", "bind_arrays", "SYMBOL_BOUNDS"]

SYMBOL_BOUNDS = "symbol_bounds"  # Graph.metadata key: {symbol: [min, max or None]} (torch.export's Dim ranges)


def bind_shapes(inputs: Sequence[Value], shapes: Sequence[Sequence[int]],
                bounds: Mapping[str, Sequence[Any]] | None = None) -> dict[str, int]:
    """Check each input's rank and dims against its type and bind the symbols. InputError otherwise. O(dims)."""
    if len(shapes) != len(inputs):
        names = ", ".join(repr(v.name) for v in inputs)
        raise InputError(f"the model takes {len(inputs)} input(s) ({names}), got {len(shapes)}")
    bindings: dict[str, int] = {}
    where: dict[str, tuple[str, int]] = {}
    for v, shape in zip(inputs, shapes):
        t = v.type
        assert t is not None
        if len(shape) != t.rank:
            raise InputError(f"input {v.name!r} must have rank {t.rank} ({t}), got shape {list(shape)}")
        for axis, (d, n) in enumerate(zip(t.shape, shape)):
            if isinstance(d, int):
                if d != n:
                    raise InputError(f"input {v.name!r} dim {axis} is {n}, expected {d} (the model was compiled "
                                     f"for {t}; compile with dynamic shapes to vary it)")
            elif is_symbol(d):
                if d in bindings and bindings[d] != n:
                    src, src_axis = where[d]
                    raise InputError(f"input {v.name!r} dim {axis} is {n}, but {d} is {bindings[d]} (from input "
                                     f"{src!r} dim {src_axis}); both are declared {d}")
                bindings.setdefault(d, n)
                where.setdefault(d, (v.name, axis))
    for v, shape in zip(inputs, shapes):  # expression dims (`2*seq`), once every plain symbol is bound
        for axis, (d, n) in enumerate(zip(v.type.shape, shape)):  # type: ignore[union-attr]
            if isinstance(d, str) and not is_symbol(d) and free_symbols(d) <= bindings.keys():
                want = evaluate(d, bindings)
                if want != n:
                    raise InputError(f"input {v.name!r} dim {axis} is {n}, expected {d} = {want}")
    for sym, (lo, hi) in (bounds or {}).items():
        size = bindings.get(sym)
        if size is None:
            continue
        if (lo is not None and size < lo) or (hi is not None and size > hi):
            src, axis = where[sym]
            rng = " and ".join(t for t in (f"{sym} >= {lo}" if lo is not None else "",
                                           f"{sym} <= {hi}" if hi is not None else "") if t)
            raise InputError(f"input {src!r} dim {axis} ({sym}) is {size}, outside the range the model was compiled "
                             f"for: {rng}")
    return bindings


def bind_arrays(graph: Any, arrays: Sequence[Any], dtypes: Sequence[Any]) -> dict[str, int]:
    """Every target's check before it runs: the count, dtypes (as the target's array library names them), ranks,
    dims and symbol ranges. Returns the symbol bindings; InputError names what does not fit."""
    if len(arrays) != len(graph.inputs):
        raise InputError(f"the model takes {len(graph.inputs)} input(s) "
                         f"({', '.join(repr(v.name) for v in graph.inputs)}), got {len(arrays)}")
    for v, a, want in zip(graph.inputs, arrays, dtypes):
        if a.dtype != want:
            raise InputError(f"input {v.name!r} must be {v.type.dtype.value} ({v.type}), got {a.dtype} of shape "
                             f"{list(a.shape)}")
    return bind_shapes(graph.inputs, [tuple(a.shape) for a in arrays], graph.metadata.get(SYMBOL_BOUNDS))
