"""What ONNX Runtime's CPU provider can run, asked of ONNX Runtime itself, and a graph rewritten to fit it.

ONNX's type constraints and ORT's kernel registrations leave holes no table in our code would keep up with:
opset 17 has no bf16 Conv or Erf, ORT's CPU provider has no f64 Conv/Erf/Atan, no int8 Trilu, few bf16 kernels,
and its Python binding cannot feed a bf16 array at all. So the target asks: each node whose dtypes are not plain
f32/i64 is exported on its own and handed to an InferenceSession (cached per op, attributes and types; a few
milliseconds each). A node ORT refuses is computed in a wider dtype between casts where that is exact —
f16/bf16 in f32 (the reference rounds each op's f32 result the same way), small integers and bool in i64 or
f64 — and otherwise refused with ORT's own reason, before any session for the whole model is built.

>>> import numpy as np
>>> from graphopt.ir import parse
>>> g = parse('graph @f(%x: bf16[2]) {\\n  %0: bf16[2] = erf(%x)\\n  return %0\\n}')
>>> legal = legalize(g)
>>> [n.op.name for n in legal], [str(v.type) for v in legal.inputs]
(['cast', 'cast', 'erf', 'cast', 'cast'], ['f32[2]'])
"""

from __future__ import annotations

from typing import Any

from graphopt.errors import GraphoptError, UnsupportedOpError
from graphopt.ir import DType, Graph, Node, TensorType, Value
from graphopt.ir.node import attrs_key

__all__ = ["legalize", "ort_refuses"]

_PLAIN = frozenset({DType.F32})  # everything else is asked: ORT lacks i64 Acos as it lacks f64 Erf
_SMALL_CONST = 4096  # constants up to this size stay constants in a probe (shape-like operands); larger: inputs
_PROBES: dict[tuple[Any, ...], str | None] = {}


def _signature(node: Node) -> tuple[Any, ...]:
    ins = tuple((v.type, v.const.tobytes() if v.const is not None and v.const.size <= _SMALL_CONST else None)
                for v in node.inputs)
    return (node.op.name, attrs_key(node.attrs), ins, tuple(o.type for o in node.outputs))


def ort_refuses(node: Node) -> str | None:
    """None if ONNX Runtime's CPU provider builds a session for this node alone, else its first error line."""
    key = _signature(node)
    if key not in _PROBES:
        _PROBES[key] = _probe(node)
    return _PROBES[key]


def _probe(node: Node) -> str | None:
    from .onnx_export import to_onnx
    from .onnxruntime import session

    g = Graph("probe")
    ins: list[Value] = []
    for i, v in enumerate(node.inputs):
        if v.const is not None and v.const.size <= _SMALL_CONST:
            ins.append(g.add_constant(v.const, name=f"c{i}"))
        else:
            ins.append(g.add_input(f"in{i}", v.type))  # type: ignore[arg-type]
    bound = {d for v in ins if v.type is not None for d in v.type.shape if isinstance(d, str)}
    for sym in sorted(_attr_symbols(node) - bound):  # a dim attribute's symbols: bound by an input of that size
        g.add_input(f"dim_{sym}", TensorType(DType.F32, [sym]))
    probe = g.add_node(node.op, ins, node.attrs, types=[o.type for o in node.outputs])
    g.set_outputs(probe.outputs)
    try:
        session(to_onnx(g, ort_contrib=True).SerializeToString(), threads=1, optimization="none")
    except UnsupportedOpError as e:
        return str(e).splitlines()[0]
    except Exception as e:  # noqa: BLE001 - ORT's errors are plain RuntimeError subclasses; we want the text
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return text.split(" : ", 2)[-1] if "ONNXRuntimeError" in text else text
    return None


def _attr_symbols(node: Node) -> set[str]:
    from graphopt.ir.symbolic import free_symbols

    out: set[str] = set()
    for key, spec in node.op.attrs.items():
        value = node.attrs.get(key)
        if spec.kind == "dim" and value is not None:
            out |= free_symbols(value)
        elif spec.kind == "dims" and value is not None:
            out |= {s for d in value for s in free_symbols(d)}
    return out


def _needs_probe(node: Node) -> bool:
    return any(v.type.dtype not in _PLAIN for v in (*node.inputs, *node.outputs))


def _troubled(node: Node) -> DType:
    """The dtype to widen: an input's non-plain dtype (data before bool conditions), else the output's."""
    dtypes = [v.type.dtype for v in node.inputs if v.type.dtype not in _PLAIN]
    data = [d for d in dtypes if d != DType.BOOL]
    return (data or dtypes or [node.outputs[0].type.dtype])[0]


def _wider(dtype: DType, out: DType) -> list[DType]:
    """Dtypes in which a node of `dtype` computes exactly what the reference computes, widest last."""
    if dtype in (DType.F16, DType.BF16):
        return [DType.F32]
    if dtype == DType.F64:
        return []  # f32 would lose precision: refuse
    # small ints and bool: f64 holds every value exactly and computes what the reference computes for ops that
    # average (var of ints is not an integer division); i64 where ORT has no f64 kernel either
    wider = [out] if out.is_float and out != dtype else []
    return wider + [d for d in (DType.F64, DType.I64) if d != dtype]


def legalize(graph: Graph) -> Graph:
    """A copy of `graph` that ONNX Runtime's CPU provider runs: bf16 at the boundary exchanged as f32, nodes ORT
    refuses computed in a wider dtype between casts. UnsupportedOpError names every node that cannot be."""
    g = graph.copy()
    _bf16_boundary(g)
    refused: list[str] = []
    for node in list(g):
        if not _needs_probe(node):
            continue
        reason = ort_refuses(node)
        if reason is None:
            continue
        troubled = _troubled(node)
        for wide in _wider(troubled, node.outputs[0].type.dtype):
            if _recompute(g, node, troubled, wide):
                break
        else:
            refused.append(f"  {node.describe()}: {reason}")
    if refused:
        raise UnsupportedOpError(
            f"ONNX Runtime's CPU provider cannot run {len(refused)} node(s), not even in a wider dtype:\n"
            + "\n".join(refused[:20]) + "\nUse target='cpu' or 'reference', or change the dtype.",
            ops={"onnxruntime": len(refused)})
    return g


def _recompute(g: Graph, node: Node, troubled: DType, wide: DType) -> bool:
    """Replace `node` by casts to `wide`, the op, casts back — if ORT runs that. True when replaced."""
    with g.inserting_before(node):
        created: list[Node] = []
        args = []
        for v in node.inputs:
            if v.type.dtype == troubled:
                created.append(g.add_node("cast", [v], {"dtype": wide}))
                args.append(created[-1].outputs[0])
            else:
                args.append(v)
        try:
            wide_node = g.add_node(node.op, args, node.attrs)
        except (GraphoptError, TypeError):  # the IR types the op differently (or not at all) in `wide`
            g.remove_nodes(reversed(created))
            return False
        created.append(wide_node)
        outs = []
        for o, w in zip(node.outputs, wide_node.outputs):
            if w.type == o.type:
                outs.append(w)
            else:
                created.append(g.add_node("cast", [w], {"dtype": o.type.dtype}))
                outs.append(created[-1].outputs[0])
    if ort_refuses(wide_node) is not None or any(o.type != n.type for o, n in zip(node.outputs, outs)):
        g.remove_nodes(reversed(created))
        return False
    for o, n in zip(node.outputs, outs):
        o.replace_all_uses_with(n)
    g.remove_node(node)
    return True


def _bf16_boundary(g: Graph) -> None:
    """bf16 graph inputs and outputs become f32 (exact both ways); ORT's Python binding cannot feed bf16."""
    first = next(iter(g), None)
    for v in g.inputs:
        if v.type.dtype != DType.BF16:
            continue
        uses = v.uses
        v.type = TensorType(DType.F32, v.type.shape)
        if first is None:
            continue
        with g.inserting_before(first):
            cast = g.add_node("cast", [v], {"dtype": DType.BF16})
        for u in uses:
            u.node.set_input(u.index, cast.outputs[0])
        if v.output_refs:
            g._replace_output(v, cast.outputs[0])
    outs = []
    for v in g.outputs:
        if v.type.dtype == DType.BF16:
            with g.inserting_at_end():
                v = g.add("cast", [v], {"dtype": DType.F32})
        outs.append(v)
    g.set_outputs(outs)
