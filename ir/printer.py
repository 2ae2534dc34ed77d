"""The text form of a graph. `parse(format_graph(g))` rebuilds `g` exactly (see `parser`).

    graph @name(%x: f32[batch,128]) {
      const @w: f32[2] = [1.0, 2.0]
      const @big: f32[768,768] = external
      %0: f32[batch,128] = gelu(%x) {approximate="tanh"}  loc("encoder.layer.0.mlp")
      return %0
    }

Attributes equal to their schema default are not printed. Constants with more than `max_inline` elements
print as `external`: their data travels beside the text (`parse(text, constants=...)`).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from .dtypes import DType
from .ops.registry import OpDef
from .types import format_dim

if TYPE_CHECKING:
    from .graph import Graph
    from .value import Value

__all__ = ["format_graph", "format_attr", "format_name", "format_literal"]

_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.]+\Z")


def format_name(value: Value) -> str:
    sigil = "@" if value.is_constant else "%"
    name = value.name
    return sigil + (name if _PLAIN_NAME.match(name) else json.dumps(name))


def _format_scalar(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, DType):
        return v.value
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, float):
        text = repr(v)
        return text if any(c in text for c in ".eni") else text + ".0"
    return str(v)


def format_attr(value: Any, kind: str) -> str:
    """An attribute value in text form; symbols in `dim`/`dims` print bare, strings quoted."""
    if value is None:
        return "none"
    if kind in ("dim", "dims"):
        items = value if kind == "dims" else [value]
        text = [format_dim(d) for d in items]
        return f"[{', '.join(text)}]" if kind == "dims" else text[0]
    if isinstance(value, tuple):
        return "[" + ", ".join(_format_scalar(v) for v in value) + "]"
    return _format_scalar(value)


def _format_element(x: Any) -> str:
    if isinstance(x, (bool, np.bool_)):
        return "true" if x else "false"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    text = str(x)  # numpy prints the shortest string that round-trips in the element's own precision
    return text if any(c in text for c in ".eni") else text + ".0"


def format_literal(array: np.ndarray) -> str:
    """Nested-list literal of a small array, exact for every dtype."""
    if array.ndim == 0:
        return _format_element(array[()])

    def rec(a: np.ndarray) -> str:
        if a.ndim == 1:
            return "[" + ", ".join(_format_element(x) for x in a) + "]"
        return "[" + ", ".join(rec(sub) for sub in a) + "]"

    return rec(array)


def _format_attrs(op: OpDef, attrs: Any) -> str:
    parts = []
    for key, spec in op.attrs.items():
        value = attrs[key]
        if value == spec.default and type(value) is type(spec.default):
            continue
        parts.append(f"{key}={format_attr(value, spec.kind)}")
    return " {" + ", ".join(parts) + "}" if parts else ""


def format_graph(graph: Graph, *, max_inline: int = 64, show_uses: bool = False) -> str:
    """The graph's text form (see the module docstring)."""
    ins = ", ".join(f"{format_name(v)}: {v.type}" for v in graph.inputs)
    name = graph.name if _PLAIN_NAME.match(graph.name) else json.dumps(graph.name)
    lines = [f"graph @{name}({ins}) {{"]
    for c in graph.constants.values():
        assert c.const is not None
        body = format_literal(c.const) if c.const.size <= max_inline else "external"
        lines.append(f"  const {format_name(c)}: {c.type} = {body}")
    for node in graph:
        outs = ", ".join(f"{format_name(v)}: {v.type if v.type is not None else '?'}" for v in node.outputs)
        args = ", ".join(format_name(v) for v in node.inputs)
        line = f"  {outs} = {node.op.name}({args}){_format_attrs(node.op, node.attrs)}"
        if node.origin:
            line += f"  loc({json.dumps(node.origin)})"
        if show_uses:
            line += "  # uses: " + ", ".join(str(v.num_uses) for v in node.outputs)
        lines.append(line)
    outs = ", ".join(format_name(v) for v in graph.outputs)
    lines.append(f"  return {outs}" if outs else "  return")
    lines.append("}")
    return "\n".join(lines)
