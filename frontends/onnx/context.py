"""The conversion context converters work in: the graph being built, the environment of converted values, small
shape vectors known at import time (`Known`, entries may be symbolic dims), and the converter table.

Converters are `fn(cx, node, args) -> value(s)`, registered with `@converter("OpType")`; `cx.add` adds an IR node
and folds small all-constant results (shape arithmetic) on the spot."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from graphopt.errors import ModelLoadError, ShapeInputsNeeded, UnsupportedOpError
from graphopt.ir import Builder, DType, Graph, TensorType, Value

from .loading import dtype_of

__all__ = ["ConversionContext", "Known", "CONVERTERS", "Converter", "converter", "attrs_of", "need", "ident",
           "check_declared", "FOLD_LIMIT", "upstream_inputs", "Unprovable", "known_array", "from_known",
           "fold_known"]

FOLD_LIMIT = 4096  # elements: shape-sized results are folded while importing, weights are left to the passes
Converter = Callable[["ConversionContext", Any, list[Any]], Any]
CONVERTERS: dict[str, Converter] = {}


def converter(*ops: str) -> Callable[[Converter], Converter]:
    """Register the decorated function as the converter of ONNX `ops`."""

    def deco(fn: Converter) -> Converter:
        for op in ops:
            CONVERTERS[op] = fn
        return fn

    return deco


class ConversionContext(Builder):
    """Converts one ONNX graph; converters build with `cx.op(...)` (the IR's one `Builder` API, folding small
    all-constant results as it goes) and read operands through `cx.tensor` / `cx.known`."""

    def __init__(self, proto: Any, external: dict[str, np.ndarray], name: str, constants: dict[str, Any]) -> None:
        super().__init__(Graph(ident(name)))
        self.proto = proto
        self.external = external
        self.constants = constants
        self.env: dict[str, Any] = {"": None}
        self.input_names: dict[str, str] = {}  # IR input name -> the model file's name (for constants=)
        self._fresh = 0  # fresh_symbol's counter

    def run(self) -> Graph:
        from onnx import helper, numpy_helper

        g = self.proto.graph
        inits = {t.name for t in g.initializer}
        for t in g.initializer:
            dtype_of(t.data_type, t.name)  # before numpy_helper sees an element type it does not know
            data = self.external[t.name] if t.name in self.external else numpy_helper.to_array(t)
            self.env[t.name] = self.graph.add_constant(data, name=ident(t.name))
        for vi in g.input:
            if vi.name in inits:
                continue
            tt = vi.type.tensor_type
            if vi.name in self.constants:
                data = np.asarray(self.constants[vi.name], dtype=helper.tensor_dtype_to_np_dtype(tt.elem_type))
                self.env[vi.name] = self.graph.add_constant(data, name=ident(vi.name))
                continue
            dims = [d.dim_value if d.HasField("dim_value") else ident(d.dim_param or f"{vi.name}_{i}")
                    for i, d in enumerate(tt.shape.dim)]
            self.env[vi.name] = self.graph.add_input(ident(vi.name), TensorType(dtype_of(tt.elem_type, vi.name), dims))
            self.input_names[ident(vi.name)] = vi.name
        self.convert_nodes(g.node)
        self.graph.set_outputs([self.tensor(self.env[o.name]) for o in g.output])
        for v, o in zip(self.graph.outputs, g.output):
            check_declared(v, o)
        for v, o in zip(self.graph.outputs, g.output):
            if v.producer is not None and v.name != ident(o.name) and ident(o.name) not in self.graph._values:
                self.graph.rename(v, ident(o.name))
        return self.graph

    def fresh_symbol(self, hint: str) -> str:
        """A dim symbol no input uses, for a data-dependent size (NonZero's count)."""
        taken = {d for v in self.graph.inputs for d in v.type.shape if isinstance(d, str)}  # type: ignore[union-attr]
        while True:
            self._fresh += 1
            name = f"{hint}{self._fresh}"
            if name not in taken:
                return name

    def convert_nodes(self, nodes: Sequence[Any]) -> None:
        """Convert ONNX nodes in order into the graph, binding their outputs by name (also for If branches,
        whose nodes read the enclosing graph's values by name)."""
        for i, node in enumerate(nodes):
            if node.op_type not in CONVERTERS or node.domain not in ("", "ai.onnx"):
                raise UnsupportedOpError(f"ONNX op {node.op_type} (node {node.name or i!r}) has no graphopt "
                                         "converter", ops={node.op_type: 1})
            args = [self.env[x] for x in node.input]
            with self.graph.inserting_at_end(origin=node.name or f"{node.op_type}_{i}"):
                try:
                    out = CONVERTERS[node.op_type](self, node, args)
                except (UnsupportedOpError, ModelLoadError):
                    raise
                except Exception as e:  # noqa: BLE001 - name the ONNX node that failed
                    raise UnsupportedOpError(f"cannot convert {node.op_type} node {node.name or i!r}: "
                                             f"{type(e).__name__}: {e}", ops={node.op_type: 1}) from e
            outs = out if isinstance(out, (list, tuple)) else [out]
            for name, v in zip(node.output, outs):
                if name:
                    self.env[name] = v

    # -- values: IR Values, or known shape vectors (lists of dims) ----------------------------------------
    def tensor(self, x: Any) -> Value:
        if isinstance(x, Value):
            return x
        if isinstance(x, Known):  # shape arithmetic used as data: the dims are read from the bound symbols
            return self.op("shape_tensor", [], values=x.dims, shape=x.shape, dtype=x.dtype)
        raise TypeError(f"not a tensor: {x!r}")

    def known(self, x: Any) -> list[Any] | None:
        """The value as a flat list of python dims when it is known at import time, else None."""
        if isinstance(x, Known):
            return list(x.dims)
        if isinstance(x, Value) and x.const is not None:
            return [int(v) if np.issubdtype(x.const.dtype, np.integer) else float(v) for v in x.const.ravel()]
        return None

    def op(self, op: str, inputs: Sequence[Any], **attrs: Any) -> Any:
        """Add an IR node; small all-constant results (shape arithmetic) are evaluated right away."""
        from graphopt.ir.interpreter import evaluate, resolve_attrs

        node = self.graph.add_node(op, [self.tensor(x) for x in inputs], attrs)
        outs = node.outputs
        foldable = node.op.pure and all(v.is_constant for v in node.inputs) and all(
            o.type is not None and o.type.is_static and o.type.numel() <= FOLD_LIMIT for o in outs)
        if foldable:
            try:
                results = evaluate(node, [v.const for v in node.inputs], resolve_attrs(node, {}))
            except Exception:  # noqa: BLE001 - leave it to run time (and its error message)
                results = None
            if results is not None:
                self.graph.remove_node(node)
                outs = tuple(self.graph.add_constant(r) for r in results)
        return outs[0] if len(outs) == 1 else tuple(outs)



def check_declared(v: Value, declared: Any) -> None:
    """The imported output must have the element type, rank and static sizes the ONNX file declares: a
    disagreement means the import computed something else, and that must not pass silently."""
    tt = declared.type.tensor_type
    if not declared.type.HasField("tensor_type"):
        return
    want: list[str] = []
    if tt.elem_type and dtype_of(tt.elem_type, declared.name) != v.type.dtype:
        want.append(f"element type {dtype_of(tt.elem_type, declared.name).value}")
    if tt.HasField("shape"):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if len(dims) != v.type.rank:
            want.append(f"rank {len(dims)}")
        elif any(d is not None and isinstance(h, int) and d != h for d, h in zip(dims, v.type.shape)):
            want.append(f"shape {['?' if d is None else d for d in dims]}")
    if want:
        raise ModelLoadError(f"graph output {declared.name!r} is declared with {' and '.join(want)}, but the "
                             f"imported graph computes {v.type}; refusing a graph that disagrees with its file")


class Known:
    """A small integer tensor known at import time whose entries may be symbolic dims (from Shape): the values of
    legacy exporters' shape arithmetic. Ops on them fold symbolically (`fold_known`); where one is used as data it
    is materialized by a `shape_tensor` node."""

    def __init__(self, dims: list[Any], shape: tuple[int, ...] | None = None, dtype: DType = DType.I64) -> None:
        self.dims = dims
        self.shape = shape if shape is not None else (len(dims),)
        self.dtype = dtype

    def array(self) -> np.ndarray:
        """The entries as a numpy object array of the value's shape (ints and dim expressions)."""
        out = np.empty(len(self.dims), dtype=object)
        out[:] = self.dims
        return out.reshape(self.shape)


class Unprovable(Exception):
    """A fold on symbolic dims whose result is not decided by the dims alone (`seq == 1`): left to run time."""


def known_array(cx: ConversionContext, x: Any) -> np.ndarray | None:
    """`x` as an object array of ints / dims when it is known at import time and small, else None."""
    if isinstance(x, Known):
        return x.array()
    if isinstance(x, Value) and x.const is not None and x.const.size <= FOLD_LIMIT \
            and (np.issubdtype(x.const.dtype, np.integer) or x.const.dtype == np.bool_):
        out = np.empty(x.const.shape, dtype=object)
        out[...] = x.const.tolist() if x.const.ndim else x.const.item()
        return out
    return None


def from_known(cx: ConversionContext, arr: Any, dtype: DType = DType.I64) -> Any:
    """An object array of folded entries back as a Value (all concrete) or a Known (some symbolic)."""
    arr = np.asarray(arr, dtype=object)
    flat = arr.ravel().tolist()
    if dtype == DType.BOOL:  # comparisons: decided entry by entry, or not folded at all
        return cx.graph.add_constant(np.array(flat, dtype=np.bool_).reshape(arr.shape))
    if all(isinstance(v, (int, np.integer)) for v in flat):
        return cx.graph.add_constant(np.array(flat, dtype=dtype.numpy).reshape(arr.shape))
    return Known(flat, tuple(arr.shape), dtype)


def fold_known(cx: ConversionContext, args: Sequence[Any], fn: Callable[..., Any],
               dtype: DType | None = None) -> Any | None:
    """Apply `fn` entrywise (numpy broadcasting) when some operand is a Known and all are known at import time;
    None when it cannot fold (an operand only known at run time, or `fn` raised Unprovable)."""
    if not any(isinstance(x, Known) for x in args):
        return None
    arrays = [known_array(cx, x) for x in args]
    if any(a is None for a in arrays):
        return None
    try:
        out = np.frompyfunc(fn, len(arrays), 1)(*arrays)
    except Unprovable:
        return None
    if np.size(out) > FOLD_LIMIT:
        return None
    if dtype is None:
        dtype = next(x.dtype for x in args if isinstance(x, Known))
    return from_known(cx, out, dtype)


def ident(name: str) -> str:
    out = "".join(c if c.isalnum() or c in "_." else "_" for c in name)
    return out if out and (out[0].isalpha() or out[0] == "_") else f"v{out}"


def attrs_of(node: Any) -> dict[str, Any]:
    from onnx import helper

    out = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in out.items()}


def need(cx: ConversionContext, x: Any, what: str) -> list[Any]:
    """`x` as a list of python values (dims allowed); ShapeInputsNeeded names the graph inputs it comes from when
    it is only known at run time (a Reshape target fed as an input, Resize scales computed from data)."""
    k = cx.known(x)
    if k is None:
        sources = upstream_inputs(cx, x)
        if not sources:
            raise NotImplementedError(f"{what} must be known at import time (a constant or computed from shapes)")
        raise ShapeInputsNeeded(f"{what} must be known at compile time; it comes from graph input(s) "
                                f"{', '.join(repr(s) for s in sources)}. Give their values with "
                                "import_onnx(..., constants={...}), or let graphopt.compile specialize on them when "
                                "the model is called.", sources)
    return k


def upstream_inputs(cx: ConversionContext, x: Any) -> list[str]:
    """The graph inputs (by the model file's names) that `x` is computed from."""
    if not isinstance(x, Value):
        return []
    inputs = {id(v) for v in cx.graph.inputs}
    seen, stack, found = set(), [x], []
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if id(v) in inputs:
            found.append(cx.input_names.get(v.name, v.name))
        elif v.producer is not None:
            stack.extend(v.producer.inputs)
    return sorted(found)
