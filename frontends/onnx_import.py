"""ONNX frontend: a .onnx file or ModelProto (opset 13 and up) → graphopt IR.

Untrusted files are handled defensively: a missing path, a truncated or malformed protobuf, a model that
fails `onnx.checker`, or an external-data location outside the model's folder each raise ModelLoadError
before anything is converted. External weights are memory-mapped, so they are read lazily. Shape arithmetic
(Shape → Gather → Concat → Reshape, as exporters emit for dynamic models) is evaluated at import time into
dim expressions instead of becoming runtime nodes.

>>> import onnx, graphopt
>>> from onnx import helper, TensorProto
>>> node = helper.make_node("Relu", ["x"], ["y"])
>>> g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
...                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])])
>>> graphopt.import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])).format().splitlines()[1]
'  %y: f32[n,4] = relu(%x)  loc("Relu_0")'
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from graphopt.errors import ModelLoadError, UnsupportedOpError
from graphopt.ir import SLICE_END, DType, Graph, TensorType, Value
from graphopt.ir.symbolic import dim_add, dim_floordiv, dim_mul, dim_sub

__all__ = ["import_onnx", "CONVERTERS", "MIN_OPSET"]

MIN_OPSET = 13
_FOLD_LIMIT = 4096  # elements: shape-sized results are folded while importing, weights are left to the passes
_BIG = SLICE_END
Converter = Callable[["_Ctx", Any, list[Any]], Any]
CONVERTERS: dict[str, Converter] = {}


def converter(*ops: str) -> Callable[[Converter], Converter]:
    def deco(fn: Converter) -> Converter:
        for op in ops:
            CONVERTERS[op] = fn
        return fn

    return deco


# -- loading -------------------------------------------------------------------------------------------------
def _load(model: Any) -> tuple[Any, Path | None]:
    import onnx
    from google.protobuf.message import DecodeError

    if not isinstance(model, (str, os.PathLike)):
        return model, None
    path = Path(model)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError, RuntimeError) as e:
        raise ModelLoadError(f"{path}: not a valid ONNX model ({type(e).__name__}: {e})") from None
    if not proto.graph.node and not proto.graph.output:
        raise ModelLoadError(f"{path}: not a valid ONNX model (no graph)")
    return proto, path.parent


def _external(tensor: Any, folder: Path | None) -> np.ndarray:
    info = {e.key: e.value for e in tensor.external_data}
    if folder is None:
        raise ModelLoadError(f"initializer {tensor.name} has external data; load the model from its file path")
    location = info.get("location", "")
    target = (folder / location).resolve()
    if folder.resolve() not in target.parents or not target.is_file():
        raise ModelLoadError(f"initializer {tensor.name}: external data location {location!r} is outside the "
                             f"model's folder or missing; refusing to read it")
    dtype = _dtype(tensor.data_type, f"initializer {tensor.name}").numpy
    count = int(np.prod(tensor.dims)) if tensor.dims else 1
    try:
        offset = int(info.get("offset", 0))
        length = int(info.get("length", count * dtype.itemsize))
    except ValueError:
        raise ModelLoadError(f"initializer {tensor.name}: external data offset/length are not integers") from None
    if offset < 0 or length != count * dtype.itemsize or offset + length > target.stat().st_size:
        raise ModelLoadError(f"initializer {tensor.name}: external data is truncated or has the wrong length")
    return np.memmap(target, dtype=dtype, mode="r", offset=offset, shape=tuple(tensor.dims))  # lazy


def import_onnx(model: str | os.PathLike[str] | Any, *, name: str | None = None,
                constants: Mapping[str, Any] | None = None) -> Graph:
    """Convert an ONNX model (path or ModelProto). Raises ModelLoadError or UnsupportedOpError (all ops).

    `constants` specializes graph inputs to fixed values (they stop being inputs), like TVM's `freeze_params`:
    graphopt needs shape-like arguments (a Reshape target, Slice bounds, TopK's k) known at compile time.
    Models below opset 13 are upgraded with `onnx.version_converter` first.
    """
    import onnx

    proto, folder = _load(model)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        proto = _upgrade(proto, opset)
    from onnx import TensorProto

    # validate every external location before anything reads one; the memory maps are reused below
    external = {t.name: _external(t, folder) for t in proto.graph.initializer
                if t.data_location == TensorProto.EXTERNAL}
    try:
        onnx.checker.check_model(str(model) if folder is not None else proto)
    except onnx.checker.ValidationError as e:
        raise ModelLoadError(f"model fails onnx.checker: {str(e).splitlines()[0]}") from None
    missing = Counter(n.op_type for n in proto.graph.node if n.op_type not in CONVERTERS or n.domain not in
                      ("", "ai.onnx"))
    if missing:
        where: dict[str, list[str]] = {}
        for n in proto.graph.node:
            if n.op_type in missing:
                where.setdefault(n.op_type, []).append(n.name or n.output[0])
        lines = [f"  {op} x{c} (at {', '.join(where[op][:5])})" for op, c in missing.most_common()]
        raise UnsupportedOpError(f"{len(missing)} ONNX op(s) have no graphopt converter:\n" + "\n".join(lines) +
                                 "\nAdd one with graphopt.frontends.onnx_import.converter(...) or use ONNX Runtime.",
                                 ops=dict(missing))
    unknown = set(constants or {}) - {i.name for i in proto.graph.input}
    if unknown:
        raise ModelLoadError(f"constants given for unknown input(s) {', '.join(sorted(unknown))}")
    return _Ctx(proto, external, name or proto.graph.name or "model", dict(constants or {})).run()


def _upgrade(proto: Any, opset: int) -> Any:
    from onnx import version_converter

    try:
        return version_converter.convert_version(proto, MIN_OPSET)
    except Exception as e:  # noqa: BLE001 - the converter raises bare RuntimeErrors from C++
        raise ModelLoadError(f"model uses opset {opset}; graphopt reads opset {MIN_OPSET} and up and "
                             f"onnx.version_converter could not upgrade it: {str(e).splitlines()[0]}") from None


class _Ctx:
    def __init__(self, proto: Any, external: dict[str, np.ndarray], name: str, constants: dict[str, Any]) -> None:
        self.proto = proto
        self.external = external
        self.constants = constants
        self.graph = Graph(_ident(name))
        self.env: dict[str, Any] = {"": None}

    def run(self) -> Graph:
        from onnx import helper, numpy_helper

        g = self.proto.graph
        inits = {t.name for t in g.initializer}
        for t in g.initializer:
            _dtype(t.data_type, t.name)  # before numpy_helper sees an element type it does not know
            data = self.external[t.name] if t.name in self.external else numpy_helper.to_array(t)
            self.env[t.name] = self.graph.add_constant(data, name=_ident(t.name))
        for vi in g.input:
            if vi.name in inits:
                continue
            tt = vi.type.tensor_type
            if vi.name in self.constants:
                data = np.asarray(self.constants[vi.name], dtype=helper.tensor_dtype_to_np_dtype(tt.elem_type))
                self.env[vi.name] = self.graph.add_constant(data, name=_ident(vi.name))
                continue
            dims = [d.dim_value if d.HasField("dim_value") else _ident(d.dim_param or f"{vi.name}_{i}")
                    for i, d in enumerate(tt.shape.dim)]
            self.env[vi.name] = self.graph.add_input(_ident(vi.name), TensorType(_dtype(tt.elem_type, vi.name), dims))
        for i, node in enumerate(g.node):
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
        self.graph.set_outputs([self.tensor(self.env[o.name]) for o in g.output])
        for v, o in zip(self.graph.outputs, g.output):
            _check_declared(v, o)
        for v, o in zip(self.graph.outputs, g.output):
            if v.producer is not None and v.name != _ident(o.name) and _ident(o.name) not in self.graph._values:
                self.graph.rename(v, _ident(o.name))
        return self.graph

    # -- values: IR Values, or known shape vectors (lists of dims) ----------------------------------------
    def tensor(self, x: Any) -> Value:
        if isinstance(x, Value):
            return x
        if isinstance(x, _Known):
            if not all(isinstance(d, int) for d in x.dims):
                raise UnsupportedOpError(f"shape value {x.dims} is used as a tensor; graphopt keeps shapes "
                                         "symbolic only inside shape arguments", ops={"Shape": 1})
            return self.graph.add_constant(np.array(x.dims, dtype=np.int64).reshape(x.shape))
        raise TypeError(f"not a tensor: {x!r}")

    def known(self, x: Any) -> list[Any] | None:
        """The value as a flat list of python dims when it is known at import time, else None."""
        if isinstance(x, _Known):
            return list(x.dims)
        if isinstance(x, Value) and x.const is not None:
            return [int(v) if np.issubdtype(x.const.dtype, np.integer) else float(v) for v in x.const.ravel()]
        return None

    def add(self, op: str, inputs: list[Any], **attrs: Any) -> Any:
        """Add an IR node; small all-constant results (shape arithmetic) are evaluated right away."""
        from graphopt.ir.interpreter import evaluate, resolve_attrs

        node = self.graph.add_node(op, [self.tensor(x) for x in inputs], attrs)
        outs = node.outputs
        foldable = node.op.pure and all(v.is_constant for v in node.inputs) and all(
            o.type is not None and o.type.is_static and o.type.numel() <= _FOLD_LIMIT for o in outs)
        if foldable:
            try:
                results = evaluate(node, [v.const for v in node.inputs], resolve_attrs(node, {}))
            except Exception:  # noqa: BLE001 - leave it to run time (and its error message)
                results = None
            if results is not None:
                self.graph.remove_node(node)
                outs = tuple(self.graph.add_constant(r) for r in results)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def const(self, value: Any, dtype: DType) -> Value:
        return self.graph.add_constant(np.asarray(value, dtype=dtype.numpy))


def _check_declared(v: Value, declared: Any) -> None:
    """The imported output must have the element type, rank and static sizes the ONNX file declares: a
    disagreement means the import computed something else, and that must not pass silently."""
    tt = declared.type.tensor_type
    if not declared.type.HasField("tensor_type"):
        return
    want: list[str] = []
    if tt.elem_type and _dtype(tt.elem_type, declared.name) != v.type.dtype:
        want.append(f"element type {_dtype(tt.elem_type, declared.name).value}")
    if tt.HasField("shape"):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if len(dims) != v.type.rank:
            want.append(f"rank {len(dims)}")
        elif any(d is not None and isinstance(h, int) and d != h for d, h in zip(dims, v.type.shape)):
            want.append(f"shape {['?' if d is None else d for d in dims]}")
    if want:
        raise ModelLoadError(f"graph output {declared.name!r} is declared with {' and '.join(want)}, but the "
                             f"imported graph computes {v.type}; refusing a graph that disagrees with its file")


def _dtype(elem_type: int, where: str) -> DType:
    from onnx import TensorProto, helper

    try:
        name = TensorProto.DataType.Name(elem_type)
    except ValueError:  # not an element type at all: a corrupt or hostile file
        raise ModelLoadError(f"{where}: {elem_type} is not an ONNX element type") from None
    try:
        return DType.from_numpy(helper.tensor_dtype_to_np_dtype(elem_type))
    except (ValueError, KeyError):
        raise UnsupportedOpError(f"{where}: ONNX element type {name} has no graphopt dtype (graphopt has "
                                 f"{', '.join(d.value for d in DType)})", ops={name: 1}) from None


class _Known:
    """A small int64 tensor known at import time whose entries may be symbolic dims (from Shape)."""

    def __init__(self, dims: list[Any], shape: tuple[int, ...] | None = None) -> None:
        self.dims = dims
        self.shape = shape if shape is not None else (len(dims),)


def _ident(name: str) -> str:
    out = "".join(c if c.isalnum() or c in "_." else "_" for c in name)
    return out if out and (out[0].isalpha() or out[0] == "_") else f"v{out}"


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    out = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in out.items()}


# -- converters ----------------------------------------------------------------------------------------------
def _simple(op: str, **fixed: Any) -> Converter:
    return lambda cx, n, a: cx.add(op, a, **fixed)


for _ox, _ir in {"Abs": "abs", "Neg": "neg", "Exp": "exp", "Log": "log", "Sqrt": "sqrt", "Sin": "sin", "Cos": "cos",
                 "Tanh": "tanh", "Tan": "tan", "Asin": "asin", "Acos": "acos", "Atan": "atan", "Sinh": "sinh", "Cosh": "cosh", "Asinh": "asinh", "Acosh": "acosh", "Atanh": "atanh", "Sigmoid": "sigmoid", "Relu": "relu", "Erf": "erf", "Floor": "floor", "Ceil": "ceil",
                 "Round": "round", "Sign": "sign", "Reciprocal": "reciprocal", "Not": "logical_not",
                 "IsNaN": "isnan", "HardSwish": "hardswish", "Identity": "identity", "And": "logical_and",
                 "Or": "logical_or", "Xor": "logical_xor", "Equal": "eq", "Less": "lt", "LessOrEqual": "le",
                 "Greater": "gt", "GreaterOrEqual": "ge", "Where": "where", "MatMul": "matmul"}.items():
    converter(_ox)(_simple(_ir))


def _known_shape(x: Any) -> tuple[int, ...] | None:
    if isinstance(x, _Known):
        return x.shape
    if isinstance(x, Value) and x.const is not None:
        return tuple(x.const.shape)
    return None


def _fold_binary(cx: _Ctx, n: Any, a: list[Any], fn: Callable[[Any, Any], Any], op: str) -> Any:
    """Shape arithmetic on known shape vectors folds to a known vector — only while both operands are scalars or
    1-D. A shape scalar broadcast against a matrix (`batch_index * seq + arange(seq)` in attention masks) is a
    tensor computation: folding it as two vectors gave a [2] result for a [2, 16] one."""
    ka, kb = cx.known(a[0]), cx.known(a[1])
    sa, sb = _known_shape(a[0]), _known_shape(a[1])
    if (isinstance(a[0], _Known) or isinstance(a[1], _Known)) and ka is not None and kb is not None \
            and sa is not None and sb is not None and len(sa) <= 1 and len(sb) <= 1:
        shape = tuple(np.broadcast_shapes(sa, sb))
        if len(ka) == 1:
            ka = ka * len(kb)
        if len(kb) == 1:
            kb = kb * len(ka)
        return _Known([fn(x, y) for x, y in zip(ka, kb)], shape)
    return _variadic(cx, a, op)


def _variadic(cx: _Ctx, a: list[Any], op: str) -> Any:
    out = a[0]
    for x in a[1:]:
        out = cx.add(op, [out, x])
    return out if len(a) > 1 else cx.add("identity", [out])


converter("Add")(lambda cx, n, a: _fold_binary(cx, n, a, dim_add, "add"))
converter("Mul")(lambda cx, n, a: _fold_binary(cx, n, a, dim_mul, "mul"))
converter("Sub")(lambda cx, n, a: _fold_binary(cx, n, a, dim_sub, "sub"))
converter("Sum")(lambda cx, n, a: _variadic(cx, a, "add"))
converter("Max")(lambda cx, n, a: _variadic(cx, a, "maximum"))
converter("Min")(lambda cx, n, a: _variadic(cx, a, "minimum"))


@converter("Mean")
def _mean(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    total = _variadic(cx, a, "add")
    return cx.add("div", [total, cx.const(len(a), total.type.dtype)], rounding_mode="none")


@converter("Pow")
def _pow(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    y = cx.add("pow", a)  # ONNX: the result has the base's type, whatever the exponent's
    return y if y.type.dtype == a[0].type.dtype else cx.add("cast", [y], dtype=a[0].type.dtype)


@converter("Div")
def _div(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    if any(isinstance(x, _Known) for x in a):
        return _fold_binary(cx, n, a, dim_floordiv, "div")
    int_div = a[0].type.dtype.is_int and a[1].type.dtype.is_int  # ONNX integer Div truncates
    return cx.add("div", a, rounding_mode="trunc" if int_div else "none")


@converter("Mod")
def _mod(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    return cx.add("fmod" if _attrs(n).get("fmod", 0) else "remainder", a)


@converter("IsInf")
def _isinf(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    at = _attrs(n)
    y = cx.add("isinf", a)
    if at.get("detect_negative", 1) and at.get("detect_positive", 1):
        return y
    sign = cx.add("gt" if at.get("detect_positive", 1) else "lt", [a[0], cx.const(0, a[0].type.dtype)])
    return cx.add("logical_and", [y, sign])


converter("Softmax")(lambda cx, n, a: cx.add("softmax", a, axis=_attrs(n).get("axis", -1)))
converter("LogSoftmax")(lambda cx, n, a: cx.add("log_softmax", a, axis=_attrs(n).get("axis", -1)))
converter("LeakyRelu")(lambda cx, n, a: cx.add("leaky_relu", a, negative_slope=_attrs(n).get("alpha", 0.01)))
converter("Elu")(lambda cx, n, a: cx.add("elu", a, alpha=_attrs(n).get("alpha", 1.0)))
converter("Softplus")(lambda cx, n, a: cx.add("softplus", a))
converter("Gelu")(lambda cx, n, a: cx.add("gelu", a, approximate=_attrs(n).get("approximate", "none")))
@converter("Dropout")
def _dropout(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    training = cx.known(a[2]) if len(a) > 2 and a[2] is not None else [0]
    ratio = cx.known(a[1]) if len(a) > 1 and a[1] is not None else [0.5]
    if training is None or training[0] and (ratio is None or ratio[0] != 0):
        raise NotImplementedError("Dropout in training mode (graphopt compiles inference graphs)")
    y = cx.add("identity", [a[0]])
    if len(n.output) < 2 or not n.output[1]:
        return y
    shape = list(y.type.shape)
    return y, cx.add("full", [], shape=shape, value=1.0, dtype=DType.BOOL)


@converter("HardSigmoid")
def _hardsigmoid(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    at = _attrs(n)
    alpha, beta = at.get("alpha", 0.2), at.get("beta", 0.5)
    if abs(alpha - 1 / 6) < 1e-7 and beta == 0.5:
        return cx.add("hardsigmoid", a)
    dt = a[0].type.dtype
    return cx.add("clamp", [cx.add("add", [cx.add("mul", [a[0], cx.const(alpha, dt)]), cx.const(beta, dt)])],
                  min=0.0, max=1.0)


@converter("Clip")
def _clip(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    y = a[0]
    lo = a[1] if len(a) > 1 else None
    hi = a[2] if len(a) > 2 else None
    if y.type.dtype.is_float and (lo is None or cx.known(lo)) and (hi is None or cx.known(hi)):
        return cx.add("clamp", [y], min=float(cx.known(lo)[0]) if lo is not None else None,  # type: ignore[index]
                      max=float(cx.known(hi)[0]) if hi is not None else None)  # type: ignore[index]
    if lo is not None:  # run-time bounds (or integer data): max then min, as the spec defines Clip
        y = cx.add("maximum", [y, lo])
    if hi is not None:
        y = cx.add("minimum", [y, hi])
    return y if lo is not None or hi is not None else cx.add("identity", [y])


@converter("Cast")
def _cast(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    from onnx import helper

    dt = DType.from_numpy(helper.tensor_dtype_to_np_dtype(_attrs(n)["to"]))
    if isinstance(a[0], _Known) and dt.is_int:
        return a[0]
    return cx.add("cast", a, dtype=dt)


@converter("CastLike")
def _cast_like(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    dt = cx.tensor(a[1]).type.dtype
    if isinstance(a[0], _Known) and dt.is_int:
        return a[0]
    return cx.add("cast", [a[0]], dtype=dt)


@converter("Gemm")
def _gemm(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    at = _attrs(n)
    x = cx.add("transpose", [a[0]], perm=[1, 0]) if at.get("transA", 0) else a[0]
    w = cx.add("transpose", [a[1]], perm=[1, 0]) if at.get("transB", 0) else a[1]
    y = cx.add("matmul", [x, w])
    if at.get("alpha", 1.0) != 1.0:
        y = cx.add("mul", [y, cx.const(at["alpha"], y.type.dtype)])
    if len(a) > 2 and a[2] is not None:
        c = a[2] if at.get("beta", 1.0) == 1.0 else cx.add("mul", [a[2], cx.const(at["beta"], y.type.dtype)])
        y = cx.add("add", [y, c])
    return y


# -- shapes and layout ---------------------------------------------------------------------------------------
@converter("Shape")
def _shape(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    at = _attrs(n)
    dims = list(cx.tensor(a[0]).type.shape)
    start, end = at.get("start", 0), at.get("end", len(dims))
    return _Known(dims[start:end])


@converter("Size")
def _size(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    return _Known([dim_mul(*cx.tensor(a[0]).type.shape)], ())


@converter("Constant")
def _constant(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    from onnx import numpy_helper

    at = _attrs(n)
    if "value" in at:
        return cx.graph.add_constant(numpy_helper.to_array(at["value"]))
    for key, dt in (("value_float", np.float32), ("value_int", np.int64), ("value_floats", np.float32),
                    ("value_ints", np.int64)):
        if key in at:
            return cx.graph.add_constant(np.array(at[key], dtype=dt))
    raise NotImplementedError(f"Constant with {', '.join(at)}")


def _need(cx: _Ctx, x: Any, what: str) -> list[Any]:
    k = cx.known(x)
    if k is None:
        raise NotImplementedError(f"{what} must be known at import time (a constant or computed from shapes)")
    return k


@converter("Reshape")
def _reshape(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    x = cx.tensor(a[0])
    shape = _need(cx, a[1], "the target shape")
    if not _attrs(n).get("allowzero", 0):
        shape = [x.type.shape[i] if isinstance(d, int) and d == 0 else d for i, d in enumerate(shape)]
    return cx.add("reshape", [x], shape=shape)


@converter("Flatten")
def _flatten(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    x = cx.tensor(a[0])
    ax = _attrs(n).get("axis", 1) % max(x.type.rank, 1)
    return cx.add("reshape", [x], shape=[dim_mul(*x.type.shape[:ax]), dim_mul(*x.type.shape[ax:])])


@converter("Transpose")
def _transpose(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    x = cx.tensor(a[0])
    return cx.add("transpose", [x], perm=_attrs(n).get("perm", list(range(x.type.rank))[::-1]))


@converter("Unsqueeze")
def _unsqueeze(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    axes = _need(cx, a[1], "Unsqueeze axes")
    if isinstance(a[0], _Known) and a[0].shape == () and axes in ([0], [-1]):
        return _Known(a[0].dims)
    return cx.add("unsqueeze", [a[0]], axes=axes)


@converter("Squeeze")
def _squeeze(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    axes = _need(cx, a[1], "Squeeze axes") if len(a) > 1 and a[1] is not None else None
    if isinstance(a[0], _Known) and a[0].shape == (1,):
        return _Known(a[0].dims, ())
    return cx.add("squeeze", [a[0]], axes=axes)


@converter("Concat")
def _concat(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    if any(isinstance(x, _Known) for x in a) and all(cx.known(x) is not None and _known_shape(x) is not None
                                                     and len(_known_shape(x)) == 1 for x in a):  # type: ignore[arg-type]
        return _Known([d for x in a for d in cx.known(x)])  # type: ignore[union-attr]
    return cx.add("concat", a, axis=_attrs(n)["axis"])


@converter("Gather")
def _gather(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    axis = _attrs(n).get("axis", 0)
    idx_shape = _known_shape(a[1])
    if isinstance(a[0], _Known) and idx_shape is not None and len(idx_shape) <= 1:  # scalar or 1-D: stays a shape
        idx = _need(cx, a[1], "the index into a shape")
        picked = [a[0].dims[i] for i in idx]
        scalar = isinstance(a[1], Value) and a[1].type.rank == 0
        return _Known(picked, () if scalar else None)
    return cx.add("gather", a, axis=axis)


@converter("GatherElements")
def _gather_elements(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    x, idx = cx.tensor(a[0]), cx.tensor(a[1])
    axis = _attrs(n).get("axis", 0) % x.type.rank
    if idx.const is None or (idx.const < 0).any():  # ONNX counts negative indices from the end
        size = cx.const(x.type.shape[axis], idx.type.dtype) if isinstance(x.type.shape[axis], int) else None
        if size is None:
            raise NotImplementedError("GatherElements along a symbolic dim")
        idx = cx.add("where", [cx.add("lt", [idx, cx.const(0, idx.type.dtype)]), cx.add("add", [idx, size]), idx])
    return cx.add("gather_elements", [x, idx], axis=axis)


@converter("Slice")
def _slice(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    starts, ends = _need(cx, a[1], "Slice starts"), _need(cx, a[2], "Slice ends")
    axes = _need(cx, a[3], "Slice axes") if len(a) > 3 and a[3] is not None else None
    steps = _need(cx, a[4], "Slice steps") if len(a) > 4 and a[4] is not None else None
    clip = lambda v: _BIG if isinstance(v, int) and v >= _BIG else (-_BIG if isinstance(v, int) and v <= -_BIG else v)  # noqa: E731
    if isinstance(a[0], _Known):
        s, e = starts[0], ends[0]
        return _Known(a[0].dims[slice(s, None if e >= _BIG else e, steps[0] if steps else 1)])
    if steps and any(s < 0 for s in steps):
        raise NotImplementedError("Slice with negative steps")
    return cx.add("slice", [a[0]], starts=[clip(s) for s in starts], ends=[clip(e) for e in ends], axes=axes,
                  steps=steps)


@converter("Expand")
def _expand(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    x = cx.tensor(a[0])
    shape = _need(cx, a[1], "the Expand shape")
    lead = len(shape) - x.type.rank
    out = [d if i < lead or d != 1 else x.type.shape[i - lead] for i, d in enumerate(shape)]
    if len(out) < x.type.rank:  # ONNX Expand broadcasts both ways: a shorter shape keeps x's leading dims
        out = list(x.type.shape[: x.type.rank - len(out)]) + out
    return cx.add("expand", [x], shape=out)


converter("Tile")(lambda cx, n, a: cx.add("tile", [a[0]], repeats=_need(cx, a[1], "Tile repeats")))


@converter("Split")
def _split(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    x, at = cx.tensor(a[0]), _attrs(n)
    axis = at.get("axis", 0) % x.type.rank
    sizes = _need(cx, a[1], "Split sizes") if len(a) > 1 and a[1] is not None else at.get("split")
    if sizes is None:
        total, parts = x.type.shape[axis], len(n.output)
        if not isinstance(total, int):
            raise NotImplementedError("equal Split along a symbolic dim")
        chunk = -(-total // parts)
        sizes = [min(chunk, total - i * chunk) for i in range(parts)]
    out = cx.add("split", [x], axis=axis, sizes=list(sizes))
    return out if isinstance(out, tuple) else (out,)


@converter("Pad")
def _pad(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    x = cx.tensor(a[0])
    rank = x.type.rank
    given = [int(p) for p in _need(cx, a[1], "Pad pads")]
    value = cx.known(a[2]) if len(a) > 2 and a[2] is not None else [0.0]
    if value is None:
        raise NotImplementedError("Pad value must be known at import time")
    axes = [int(i) % rank for i in _need(cx, a[3], "Pad axes")] if len(a) > 3 and a[3] is not None else list(range(rank))
    pads = [0] * (2 * rank)
    for k, ax in enumerate(axes):
        pads[ax], pads[rank + ax] = given[k], given[len(axes) + k]
    if any(p < 0 for p in pads):  # negative pads crop
        starts = [max(-pads[i], 0) for i in range(rank)]
        ends = [dim_add(x.type.shape[i], pads[rank + i]) if pads[rank + i] < 0 else _BIG for i in range(rank)]
        x = cx.add("slice", [x], starts=starts, ends=ends, axes=list(range(rank)))
        pads = [max(p, 0) for p in pads]
    mode = _attrs(n).get("mode", "constant")
    if mode == "wrap":  # take from the other end, one concat per padded axis
        for ax in range(rank):
            b, e = pads[ax], pads[rank + ax]
            size = x.type.shape[ax]
            parts = ([cx.add("slice", [x], starts=[size - b], ends=[size], axes=[ax])] if b else []) + [x] + (
                [cx.add("slice", [x], starts=[0], ends=[e], axes=[ax])] if e else [])
            x = cx.add("concat", parts, axis=ax) if len(parts) > 1 else x
        return cx.add("identity", [x])
    if not any(pads):
        return cx.add("identity", [x])
    return cx.add("pad", [x], pads=pads, mode=mode, value=float(value[0]))


@converter("ConstantOfShape")
def _constant_of_shape(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    from onnx import numpy_helper

    shape = _need(cx, a[0], "the ConstantOfShape shape")
    t = _attrs(n).get("value")
    value = numpy_helper.to_array(t) if t is not None else np.zeros(1, np.float32)
    dt = DType.from_numpy(value.dtype)
    if all(isinstance(d, int) for d in shape):
        return cx.graph.add_constant(np.full(shape, value.ravel()[0], dtype=value.dtype))
    return cx.add("full", [], shape=shape, value=float(value.ravel()[0]), dtype=dt)


@converter("Range")
def _range(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    start, limit, delta = (cx.known(x) for x in a)
    if start is None or limit is None or delta is None:
        raise NotImplementedError("Range bounds must be known at import time")
    dt = cx.tensor(a[0]).type.dtype if isinstance(a[0], Value) else DType.I64
    if dt.is_float:
        return cx.graph.add_constant(np.arange(start[0], limit[0], delta[0], dtype=dt.numpy))
    return cx.add("arange", [], start=int(start[0]), end=limit[0], step=int(delta[0]), dtype=dt)


@converter("Trilu")
def _trilu(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    k = _need(cx, a[1], "Trilu k")[0] if len(a) > 1 and a[1] is not None else 0
    return cx.add("triu" if _attrs(n).get("upper", 1) else "tril", [a[0]], diagonal=int(k))


@converter("CumSum")
def _cumsum(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    at = _attrs(n)
    x = cx.tensor(a[0])
    axis = int(_need(cx, a[1], "CumSum axis")[0]) % x.type.rank
    flip = None
    if at.get("reverse", 0):
        size = x.type.shape[axis]
        if not isinstance(size, int):
            raise NotImplementedError("reverse CumSum along a symbolic dim")
        flip = cx.const(np.arange(size - 1, -1, -1), DType.I64)
        x = cx.add("gather", [x, flip], axis=axis)
    y = cx.add("cumsum", [x], axis=axis)
    if y.type.dtype != x.type.dtype:
        y = cx.add("cast", [y], dtype=x.type.dtype)
    if at.get("exclusive", 0):
        y = cx.add("sub", [y, x])
    return cx.add("gather", [y, flip], axis=axis) if flip is not None else y


# -- reductions ----------------------------------------------------------------------------------------------
def _reduce(op: str) -> Converter:
    def conv(cx: _Ctx, n: Any, a: list[Any]) -> Any:
        at = _attrs(n)
        axes = at.get("axes")
        if axes is None and len(a) > 1 and a[1] is not None:
            axes = _need(cx, a[1], "reduce axes")
        if not axes and at.get("noop_with_empty_axes", 0):
            return a[0]
        y = cx.add(op, [a[0]], axes=list(axes) if axes else None, keepdims=bool(at.get("keepdims", 1)))
        return y if y.type.dtype == a[0].type.dtype else cx.add("cast", [y], dtype=a[0].type.dtype)

    return conv


for _ox, _ir in {"ReduceSum": "reduce_sum", "ReduceMean": "reduce_mean", "ReduceMax": "reduce_max",
                 "ReduceMin": "reduce_min", "ReduceProd": "reduce_prod"}.items():
    converter(_ox)(_reduce(_ir))


@converter("ArgMax", "ArgMin")
def _argmax(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    at = _attrs(n)
    x, axis, keep = cx.tensor(a[0]), at.get("axis", 0), bool(at.get("keepdims", 1))
    if not at.get("select_last_index", 0):
        return cx.add(n.op_type.lower(), [x], axis=axis, keepdims=keep)
    size = x.type.shape[axis]
    if not isinstance(size, int):
        raise NotImplementedError("select_last_index along a symbolic dim")
    flipped = cx.add("gather", [x, cx.const(np.arange(size - 1, -1, -1), DType.I64)], axis=axis)
    idx = cx.add(n.op_type.lower(), [flipped], axis=axis, keepdims=keep)
    return cx.add("sub", [cx.const(size - 1, DType.I64), idx])


@converter("TopK")
def _topk(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    at = _attrs(n)
    return cx.add("topk", [a[0]], k=int(_need(cx, a[1], "TopK k")[0]), axis=at.get("axis", -1),
                  largest=bool(at.get("largest", 1)), sorted=bool(at.get("sorted", 1)))


# -- nn ------------------------------------------------------------------------------------------------------
def _spatial(at: dict[str, Any], x: Value, kernel: list[int]) -> dict[str, Any]:
    nd = len(kernel)
    strides, dil = list(at.get("strides", [1] * nd)), list(at.get("dilations", [1] * nd))
    pads = list(at.get("pads", [0] * 2 * nd))
    mode = at.get("auto_pad", "NOTSET")
    if mode == "VALID":
        pads = [0] * 2 * nd
    elif mode in ("SAME_UPPER", "SAME_LOWER"):
        sizes = x.type.shape[2:]
        if not all(isinstance(d, int) for d in sizes):
            raise NotImplementedError(f"auto_pad={mode} on symbolic spatial dims")
        total = [max((-(-d // s) - 1) * s + (k - 1) * dl + 1 - d, 0)
                 for d, s, k, dl in zip(sizes, strides, kernel, dil)]
        small = [t // 2 for t in total]
        begin = small if mode == "SAME_UPPER" else [t - h for t, h in zip(total, small)]
        pads = begin + [t - b for t, b in zip(total, begin)]
    return {"strides": strides, "pads": pads, "dilations": dil}


@converter("Conv")
def _conv(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    at = _attrs(n)
    kernel = list(at.get("kernel_shape", cx.tensor(a[1]).type.shape[2:]))
    return cx.add("conv", [x for x in a if x is not None], groups=at.get("group", 1),
                  **_spatial(at, cx.tensor(a[0]), kernel))


@converter("MaxPool", "AveragePool", "LpPool")
def _pool(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    at = _attrs(n)
    if len(n.output) > 1 and n.output[1]:
        raise NotImplementedError("MaxPool indices output")
    k = list(at["kernel_shape"])
    sp = _spatial(at, cx.tensor(a[0]), k)
    if n.op_type == "LpPool":
        p = at.get("p", 2)
        if any(d != 1 for d in sp["dilations"]):
            raise NotImplementedError("dilated LpPool")
        del sp["dilations"]
        dt = cx.tensor(a[0]).type.dtype
        powered = cx.add("pow", [cx.add("abs", [a[0]]), cx.const(p, dt)])
        mean = cx.add("avg_pool", [powered], kernel=k, ceil_mode=bool(at.get("ceil_mode", 0)), count_include_pad=True,
                      **sp)
        total = cx.add("mul", [mean, cx.const(float(np.prod(k)), dt)])
        return cx.add("pow", [total, cx.const(1.0 / p, dt)])
    if n.op_type == "MaxPool":
        return cx.add("max_pool", [a[0]], kernel=k, ceil_mode=bool(at.get("ceil_mode", 0)), **sp)
    if at.get("dilations") and any(d != 1 for d in at["dilations"]):
        raise NotImplementedError("dilated AveragePool")
    del sp["dilations"]
    return cx.add("avg_pool", [a[0]], kernel=k, ceil_mode=bool(at.get("ceil_mode", 0)),
                  count_include_pad=bool(at.get("count_include_pad", 0)), **sp)


@converter("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    x = cx.tensor(a[0])
    op = "reduce_mean" if n.op_type == "GlobalAveragePool" else "reduce_max"
    return cx.add(op, [x], axes=list(range(2, x.type.rank)), keepdims=True)


@converter("BatchNormalization")
def _batch_norm(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    if len(n.output) > 1 and any(n.output[1:]):
        raise NotImplementedError("BatchNormalization in training mode")
    return cx.add("batch_norm", a[:5], eps=_attrs(n).get("epsilon", 1e-5))


@converter("QuantizeLinear", "DequantizeLinear")
def _qdq(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    op = "quantize_linear" if n.op_type == "QuantizeLinear" else "dequantize_linear"
    if _attrs(n).get("block_size", 0):
        raise NotImplementedError("blocked quantization (block_size)")
    if len(a) < 3 or a[2] is None:
        zp_dt = DType.U8 if op == "quantize_linear" else cx.tensor(a[0]).type.dtype
        a = [a[0], a[1], cx.const(np.zeros(cx.tensor(a[1]).type.shape), zp_dt)]
    return cx.add(op, a, axis=_attrs(n).get("axis", 1))


@converter("GatherND")
def _gather_nd(cx: _Ctx, n: Any, a: list[Any]) -> Any:
    if _attrs(n).get("batch_dims", 0):
        raise NotImplementedError("GatherND with batch_dims")
    idx = cx.tensor(a[1])
    k = idx.type.shape[-1]
    if not isinstance(k, int):
        raise NotImplementedError("GatherND with a symbolic index depth")
    last = idx.type.rank - 1
    parts = [cx.add("squeeze", [cx.add("slice", [idx], starts=[j], ends=[j + 1], axes=[last])], axes=[last])
             for j in range(k)]
    return cx.add("index", [a[0], *parts], axis=0)


from . import onnx_composite, onnx_resize  # noqa: E402,F401 - registers the decomposed ops
