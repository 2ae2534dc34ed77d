r"""Graph → ONNX (opset 17), for ONNX Runtime and for users who deploy ONNX.

ONNX wants equal operand dtypes where the IR promotes like PyTorch, so binary ops get explicit Casts; symbolic
dims in attributes (a reshape to `[batch*seq, 768]`) become small Shape/Gather/Mul subgraphs over the graph
inputs, so the exported model stays dynamic.

>>> import onnx
>>> from graphopt.ir import parse
>>> from graphopt.backends.onnx_export import to_onnx
>>> g = parse('graph @f(%x: f32[n,4]) {\n  %0: f32[n,4] = relu(%x)\n  return %0\n}')
>>> m = to_onnx(g); onnx.checker.check_model(m)
>>> [n.op_type for n in m.graph.node]
['Relu', 'Identity']
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from graphopt.errors import UnsupportedOpError
from graphopt.ir import SLICE_END, DType, Graph, Node, OpRef, Value, op_names
from graphopt.ir.dtypes import promote
from graphopt.ir.symbolic import is_symbol, to_sympy

__all__ = ["to_onnx", "export_onnx", "EXPORTERS", "OPSET"]

OPSET = 17
_INT64_MAX = np.iinfo(np.int64).max
_SCATTER_ND, _FMOD, _MAX_POOL = OpRef("scatter_nd"), OpRef("fmod"), OpRef("max_pool")
Exporter = Callable[["_Ctx", Node, list[str]], "str | list[str]"]
EXPORTERS: dict[str, Exporter] = {}


def _onnx_dtype(dt: DType) -> int:
    from onnx import helper

    return helper.np_dtype_to_tensor_dtype(dt.numpy) if dt != DType.BF16 else 16


class _Ctx:
    def __init__(self, graph: Graph, ort_contrib: bool = False) -> None:
        self.graph = graph
        self.ort_contrib = ort_contrib  # ONNX Runtime's com.microsoft fused ops where a standard form exists too
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.count = 0
        self.dim_cache: dict[Any, str] = {}
        self.sym_source = {d: (v.name, i) for v in reversed(graph.inputs) for i, d in enumerate(v.type.shape)
                           if is_symbol(d)}

    def fresh(self, hint: str = "t") -> str:
        self.count += 1
        return f"_{hint}{self.count}"

    def emit(self, op: str, inputs: Sequence[str], outputs: int | Sequence[str] = 1, **attrs: Any) -> Any:
        from onnx import helper

        outs = [self.fresh(op.lower()) for _ in range(outputs)] if isinstance(outputs, int) else list(outputs)
        self.nodes.append(helper.make_node(op, list(inputs), outs, **{k: v for k, v in attrs.items()
                                                                       if v is not None}))
        return outs[0] if len(outs) == 1 else outs

    def const(self, value: Any, dtype: DType | np.dtype | None = None) -> str:
        from onnx import numpy_helper

        arr = np.asarray(value, dtype=dtype.numpy if isinstance(dtype, DType) else dtype)
        name = self.fresh("c")
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def ints(self, values: Sequence[Any]) -> str:
        """A 1-D int64 tensor of dims; symbols and expressions are computed from the inputs' shapes."""
        if all(isinstance(v, int) for v in values):
            return self.const(np.array(values, dtype=np.int64))
        parts = [self.dim(v) for v in values]
        return self.emit("Concat", parts, axis=0)

    def dim(self, d: Any) -> str:
        if d in self.dim_cache:
            return self.dim_cache[d]
        if isinstance(d, int):
            out = self.const(np.array([d], dtype=np.int64))
        elif is_symbol(d):
            if d not in self.sym_source:
                raise UnsupportedOpError(f"dim {d} is not bound by any graph input", ops={"dim": 1})
            name, axis = self.sym_source[d]
            shape = self.emit("Shape", [name])
            out = self.emit("Gather", [shape, self.const(np.array([axis], dtype=np.int64))], axis=0)
        else:
            out = self._expr(to_sympy(d))
        self.dim_cache[d] = out
        return out

    def _expr(self, e: Any) -> str:
        import sympy

        if e.is_Integer:
            return self.dim(int(e))
        if e.is_Symbol:
            return self.dim(e.name)
        if isinstance(e, sympy.Add):
            return self._fold("Add", [self._expr(a) for a in e.args])
        if isinstance(e, sympy.Mul):
            return self._fold("Mul", [self._expr(a) for a in e.args])
        if isinstance(e, sympy.floor) and isinstance(e.args[0], sympy.Mul):
            num, den = sympy.fraction(e.args[0])
            return self.emit("Div", [self._expr(num), self._expr(den)])  # non-negative ints: Div floors
        raise UnsupportedOpError(f"cannot export dim expression {e}", ops={"dim": 1})

    def _fold(self, op: str, xs: list[str]) -> str:
        out = xs[0]
        for x in xs[1:]:
            out = self.emit(op, [out, x])
        return out

    def cast(self, name: str, have: DType, want: DType) -> str:
        return name if have == want else self.emit("Cast", [name], to=_onnx_dtype(want))


def exports(*ops: str) -> Callable[[Exporter], Exporter]:
    def deco(fn: Exporter) -> Exporter:
        for op in ops:
            EXPORTERS[op] = fn
        return fn

    return deco


def _simple(onnx_op: str, **fixed: Any) -> Exporter:
    return lambda cx, n, a: cx.emit(onnx_op, a, **fixed)


for _ir, _ox in {"abs": "Abs", "neg": "Neg", "exp": "Exp", "log": "Log", "sqrt": "Sqrt", "sin": "Sin",
                 "cos": "Cos", "tanh": "Tanh", "sigmoid": "Sigmoid", "erf": "Erf", "floor": "Floor",
                 "ceil": "Ceil", "round": "Round", "sign": "Sign", "reciprocal": "Reciprocal", "logical_not": "Not",
                 "isnan": "IsNaN", "isinf": "IsInf", "hardswish": "HardSwish", "identity": "Identity",
                 "dropout": "Identity", "tan": "Tan", "asin": "Asin", "acos": "Acos", "atan": "Atan", "sinh": "Sinh",
                 "cosh": "Cosh", "asinh": "Asinh", "acosh": "Acosh", "atanh": "Atanh"}.items():
    exports(_ir)(_simple(_ox))
exports("einsum")(lambda cx, n, a: cx.emit("Einsum", a, equation=n.attrs["equation"]))


@exports("scatter_nd", "scatter_elements")
def _scatter(cx: _Ctx, n: Node, a: list[str]) -> str:
    red = n.attrs["reduction"]
    if red in ("max", "min"):  # opset 18; graphopt exports opset 17
        raise UnsupportedOpError(f"{n.describe()}: scatter with reduction={red!r} needs ONNX opset 18",
                                 ops={n.op.name: 1})
    extra = {} if red == "none" else {"reduction": red}
    if _SCATTER_ND.of(n):
        return cx.emit("ScatterND", a, **extra)
    return cx.emit("ScatterElements", a, axis=n.attrs["axis"], **extra)


exports("relu")(lambda cx, n, a: cx.emit("Relu", a) if n.inputs[0].type.dtype.is_float else cx.emit(
    "Max", [a[0], cx.const(0, n.inputs[0].type.dtype)]))
exports("hardsigmoid")(_simple("HardSigmoid", alpha=1 / 6, beta=0.5))
exports("elu")(lambda cx, n, a: cx.emit("Elu", a, alpha=n.attrs["alpha"]))
@exports("leaky_relu")
def _leaky_relu(cx: _Ctx, n: Node, a: list[str]) -> str:
    slope = n.attrs["negative_slope"]
    if slope > 0:
        return cx.emit("LeakyRelu", a, alpha=slope)
    # ONNX returns x for x >= 0, torch (the IR) x * slope unless x > 0: at x = 0 a negative (or -0.0) slope gives
    # -0.0, and 1/x tells +inf from -inf; and ONNX Runtime turns a slope of 0 into Relu, whose negative inputs
    # give +0.0, not x * 0 = -0.0. Spelled out so ONNX Runtime agrees (both found by `graphopt fuzz`).
    dt = n.inputs[0].type.dtype
    positive = cx.emit("Greater", [a[0], cx.const(0, dt)])
    return cx.emit("Where", [positive, a[0], cx.emit("Mul", [a[0], cx.const(slope, dt)])])
exports("rsqrt")(lambda cx, n, a: cx.emit("Reciprocal", [cx.emit("Sqrt", a)]))
exports("silu")(lambda cx, n, a: cx.emit("Mul", [a[0], cx.emit("Sigmoid", a)]))
exports("log1p")(lambda cx, n, a: cx.emit("Log", [cx.emit("Add", [a[0], cx.const(1, n.inputs[0].type.dtype)])]))
exports("expm1")(lambda cx, n, a: cx.emit("Sub", [cx.emit("Exp", [a[0]]), cx.const(1, n.inputs[0].type.dtype)]))
exports("trunc")(lambda cx, n, a: cx.emit("Mul", [cx.emit("Sign", a), cx.emit("Floor", [cx.emit("Abs", a)])]))


def _operands(cx: _Ctx, n: Node, a: list[str], dtype: DType | None = None) -> list[str]:
    types = [v.type for v in n.inputs]
    want = dtype or promote([t.dtype for t in types], [t.rank for t in types])
    return [cx.cast(x, t.dtype, want) for x, t in zip(a, types)]


for _ir, _ox in {"logical_and": "And", "logical_or": "Or", "logical_xor": "Xor"}.items():
    exports(_ir)(_simple(_ox))  # the driver has cast the operands to bool
for _ir, _ox in {"add": "Add", "sub": "Sub", "mul": "Mul", "maximum": "Max", "minimum": "Min", "eq": "Equal", "lt": "Less",
                 "le": "LessOrEqual", "gt": "Greater", "ge": "GreaterOrEqual"}.items():
    exports(_ir)(lambda cx, n, a, _ox=_ox: cx.emit(_ox, _operands(cx, n, a)))
exports("ne")(lambda cx, n, a: cx.emit("Not", [cx.emit("Equal", _operands(cx, n, a))]))
exports("pow")(lambda cx, n, a: cx.emit("Pow", [cx.cast(a[0], n.inputs[0].type.dtype, n.outputs[0].type.dtype), a[1]]))
exports("where")(lambda cx, n, a: cx.emit("Where", [a[0]] + [cx.cast(x, v.type.dtype, n.outputs[0].type.dtype)
                                                             for x, v in zip(a[1:], n.inputs[1:])]))


@exports("div")
def _div(cx: _Ctx, n: Node, a: list[str]) -> str:
    out = n.outputs[0].type.dtype
    x, y = _operands(cx, n, a, out)
    q = cx.emit("Div", [x, y])
    mode = n.attrs["rounding_mode"]
    if mode == "none" or not out.is_float and mode == "trunc":  # integer Div truncates in ONNX
        return q
    if mode == "floor" and out.is_float:
        return cx.emit("Floor", [q])
    if mode == "trunc":
        return cx.emit("Mul", [cx.emit("Sign", [q]), cx.emit("Floor", [cx.emit("Abs", [q])])])
    # floor division of integers: truncate, then step down where the signs differ and there is a remainder
    r = cx.emit("Mod", [x, y], fmod=1)
    fix = cx.emit("And", [cx.emit("Not", [cx.emit("Equal", [r, cx.const(0, out)])]),
                          cx.emit("Xor", [cx.emit("Less", [x, cx.const(0, out)]),
                                          cx.emit("Less", [y, cx.const(0, out)])])])
    return cx.emit("Sub", [q, cx.emit("Cast", [fix], to=_onnx_dtype(out))])


@exports("fmod", "remainder")
def _mod(cx: _Ctx, n: Node, a: list[str]) -> str:
    x, y = _operands(cx, n, a)
    if _FMOD.of(n):
        return cx.emit("Mod", [x, y], fmod=1)
    if n.outputs[0].type.dtype.is_float:
        return cx.emit("Sub", [x, cx.emit("Mul", [cx.emit("Floor", [cx.emit("Div", [x, y])]), y])])
    return cx.emit("Mod", [x, y], fmod=0)


@exports("clamp")
def _clamp(cx: _Ctx, n: Node, a: list[str]) -> str:
    dt = n.inputs[0].type.dtype
    lo = cx.const(n.attrs["min"], dt) if n.attrs["min"] is not None else ""
    hi = cx.const(n.attrs["max"], dt) if n.attrs["max"] is not None else ""
    return cx.emit("Clip", [a[0], lo, hi] if hi else [a[0], lo])


@exports("gelu")
def _gelu(cx: _Ctx, n: Node, a: list[str]) -> str:
    return _gelu_onnx(cx, a[0], n.inputs[0].type.dtype, n.attrs["approximate"])


def _gelu_onnx(cx: _Ctx, x: str, dt: DType, approximate: str) -> str:
    """GELU in opset-17 ops (the Gelu op arrives in opset 20)."""
    if approximate == "tanh":
        inner = cx.emit("Mul", [cx.emit("Add", [x, cx.emit("Mul", [cx.const(0.044715, dt), cx.emit(
            "Pow", [x, cx.const(3.0, dt)])])]), cx.const(math.sqrt(2 / math.pi), dt)])
        t = cx.emit("Tanh", [inner])
    else:
        t = cx.emit("Erf", [cx.emit("Mul", [x, cx.const(1 / math.sqrt(2), dt)])])
    return cx.emit("Mul", [cx.emit("Mul", [x, cx.const(0.5, dt)]), cx.emit("Add", [t, cx.const(1.0, dt)])])


@exports("softplus")
def _softplus(cx: _Ctx, n: Node, a: list[str]) -> str:
    beta, thr, dt = n.attrs["beta"], n.attrs["threshold"], n.inputs[0].type.dtype
    bx = cx.emit("Mul", [a[0], cx.const(beta, dt)])
    soft = cx.emit("Div", [cx.emit("Softplus", [bx]), cx.const(beta, dt)])
    return cx.emit("Where", [cx.emit("Greater", [bx, cx.const(thr, dt)]), a[0], soft])


exports("softmax")(lambda cx, n, a: cx.emit("Softmax", a, axis=n.attrs["axis"]))
exports("log_softmax")(lambda cx, n, a: cx.emit("LogSoftmax", a, axis=n.attrs["axis"]))
exports("cast")(lambda cx, n, a: cx.emit("Cast", a, to=_onnx_dtype(n.attrs["dtype"])))
exports("matmul")(_simple("MatMul"))


@exports("linear")
def _linear(cx: _Ctx, n: Node, a: list[str]) -> str:
    if n.inputs[0].type.rank == 2:
        y = cx.emit("Gemm", a, transB=1)
    else:
        y = cx.emit("MatMul", [a[0], cx.emit("Transpose", [a[1]], perm=[1, 0])])
        y = cx.emit("Add", [y, a[2]]) if len(a) > 2 else y
    return _activation(cx, y, n.attrs["activation"], n.outputs[0].type.dtype)


def _activation(cx: _Ctx, y: str, act: str, dt: DType) -> str:
    """A fused epilogue (linear's, conv's) as separate ONNX ops."""
    if act == "none":
        return y
    if act in ("relu", "tanh"):
        return cx.emit(act.capitalize(), [y])
    if act == "silu":
        return cx.emit("Mul", [y, cx.emit("Sigmoid", [y])])
    return _gelu_onnx(cx, y, dt, "tanh" if act == "gelu_tanh" else "none")


# -- layout --------------------------------------------------------------------------------------------------
@exports("reshape")
def _reshape(cx: _Ctx, n: Node, a: list[str]) -> str:
    shape = n.attrs["shape"]
    # a 0 in the target means "copy that dim" unless allowzero; a symbol may be 0 at run time (nonzero's count)
    zero = 0 in shape or any(not isinstance(d, int) for d in shape)
    return cx.emit("Reshape", [a[0], cx.ints(shape)], allowzero=1 if zero else None)


exports("transpose")(lambda cx, n, a: cx.emit("Transpose", a, perm=list(n.attrs["perm"])))
exports("expand")(lambda cx, n, a: cx.emit("Expand", [a[0], cx.ints(n.attrs["shape"])]))
exports("tile")(lambda cx, n, a: cx.emit("Tile", [a[0], cx.ints(n.attrs["repeats"])]))
exports("concat")(lambda cx, n, a: cx.emit("Concat", a, axis=n.attrs["axis"]))
exports("split")(lambda cx, n, a: cx.emit("Split", [a[0], cx.ints(n.attrs["sizes"])], len(n.outputs),
                                          axis=n.attrs["axis"]))
exports("unsqueeze")(lambda cx, n, a: cx.emit("Unsqueeze", [a[0], cx.ints(n.attrs["axes"])]))
exports("squeeze")(lambda cx, n, a: cx.emit("Squeeze", [a[0]] + ([cx.ints(n.attrs["axes"])]
                                                                  if n.attrs["axes"] is not None else [])))


@exports("slice")
def _slice(cx: _Ctx, n: Node, a: list[str]) -> str:
    big = lambda d: _INT64_MAX if isinstance(d, int) and d >= SLICE_END else d  # noqa: E731
    at = n.attrs
    ins = [a[0], cx.ints([big(d) for d in at["starts"]]), cx.ints([big(d) for d in at["ends"]])]
    if at["axes"] is not None or at["steps"] is not None:
        ins.append(cx.ints(at["axes"] if at["axes"] is not None else range(len(at["starts"]))))
    if at["steps"] is not None:
        ins.append(cx.ints(at["steps"]))
    return cx.emit("Slice", ins)


exports("gather")(lambda cx, n, a: cx.emit("Gather", a, axis=n.attrs["axis"]))
exports("gather_elements")(lambda cx, n, a: cx.emit("GatherElements", a, axis=n.attrs["axis"]))


@exports("index")
def _index(cx: _Ctx, n: Node, a: list[str]) -> str:
    axis, k, rank = n.attrs["axis"], len(a) - 1, n.inputs[0].type.rank
    if k == 1:
        return cx.emit("Gather", a, axis=axis)
    # Several index tensors: move the indexed axes to the front, broadcast and stack the indices, GatherND,
    # then put the gathered dims back where numpy puts them (in place of the indexed axes).
    idx = [cx.cast(x, v.type.dtype, DType.I64) for x, v in zip(a[1:], n.inputs[1:])]
    shape = cx.emit("Shape", [cx._fold("Add", idx)])
    stacked = cx.emit("Concat", [cx.emit("Unsqueeze", [cx.emit("Expand", [i, shape]), cx.ints([-1])]) for i in idx],
                      axis=-1)
    front = list(range(axis, axis + k)) + [d for d in range(rank) if not axis <= d < axis + k]
    y = cx.emit("GatherND", [cx.emit("Transpose", [a[0]], perm=front), stacked])
    if axis == 0:
        return y
    nb = n.outputs[0].type.rank - (rank - k)
    perm = list(range(nb, nb + axis)) + list(range(nb)) + list(range(nb + axis, n.outputs[0].type.rank))
    return cx.emit("Transpose", [y], perm=perm)


@exports("pad")
def _pad(cx: _Ctx, n: Node, a: list[str]) -> str:
    dt = n.inputs[0].type.dtype
    return cx.emit("Pad", [a[0], cx.ints(n.attrs["pads"]), cx.const(n.attrs["value"], dt)], mode=n.attrs["mode"])


@exports("arange")
def _arange(cx: _Ctx, n: Node, a: list[str]) -> str:
    dt, at = n.attrs["dtype"], n.attrs
    end = cx.const(at["end"], dt) if isinstance(at["end"], int) else cx.cast(
        cx.emit("Squeeze", [cx.dim(at["end"]), cx.ints([0])]), DType.I64, dt)
    return cx.emit("Range", [cx.const(at["start"], dt), end, cx.const(at["step"], dt)])


exports("nonzero")(lambda cx, n, a: cx.emit("NonZero", a))


@exports("shape_tensor")
def _shape_tensor(cx: _Ctx, n: Node, a: list[str]) -> str:
    y = cx.cast(cx.ints(n.attrs["values"]), DType.I64, n.attrs["dtype"])
    return cx.emit("Reshape", [y, cx.ints(n.outputs[0].type.shape)])


@exports("full")
def _full(cx: _Ctx, n: Node, a: list[str]) -> str:
    from onnx import numpy_helper

    value = numpy_helper.from_array(np.array([n.attrs["value"]], dtype=n.attrs["dtype"].numpy))
    return cx.emit("ConstantOfShape", [cx.ints(n.attrs["shape"])], value=value)


# -- reductions ----------------------------------------------------------------------------------------------
def _reduce(onnx_op: str) -> Exporter:
    def fn(cx: _Ctx, n: Node, a: list[str]) -> str:
        axes = n.attrs["axes"]
        keep = int(n.attrs["keepdims"])
        if onnx_op == "ReduceSum":
            return cx.emit(onnx_op, [a[0]] + ([cx.ints(axes)] if axes is not None else []), keepdims=keep)
        y = cx.emit(onnx_op, a, axes=list(axes) if axes is not None else None, keepdims=keep)
        dt = n.inputs[0].type.dtype
        if onnx_op in ("ReduceMax", "ReduceMin") and dt.is_float:
            # ONNX Runtime's ReduceMax/Min skip NaN; torch and the IR propagate it (found by `graphopt fuzz`)
            nan = cx.emit("Cast", [cx.emit("IsNaN", [a[0]])], to=_onnx_dtype(DType.F32))
            any_nan = cx.emit("ReduceMax", [nan], axes=list(axes) if axes is not None else None, keepdims=keep)
            y = cx.emit("Where", [cx.emit("Greater", [any_nan, cx.const(0.0, np.float32)]), cx.const(np.nan, dt), y])
        return y

    return fn


for _ir, _ox in {"reduce_sum": "ReduceSum", "reduce_mean": "ReduceMean", "reduce_max": "ReduceMax",
                 "reduce_min": "ReduceMin", "reduce_prod": "ReduceProd"}.items():
    exports(_ir)(_reduce(_ox))
exports("argmax")(lambda cx, n, a: cx.emit("ArgMax", a, axis=n.attrs["axis"], keepdims=int(n.attrs["keepdims"])))
exports("argmin")(lambda cx, n, a: cx.emit("ArgMin", a, axis=n.attrs["axis"], keepdims=int(n.attrs["keepdims"])))
exports("cumsum")(lambda cx, n, a: cx.emit("CumSum", [a[0], cx.const(n.attrs["axis"], np.int64)]))
exports("triu")(lambda cx, n, a: cx.emit("Trilu", [a[0], cx.const(n.attrs["diagonal"], np.int64)], upper=1))
exports("tril")(lambda cx, n, a: cx.emit("Trilu", [a[0], cx.const(n.attrs["diagonal"], np.int64)], upper=0))


@exports("topk")
def _topk(cx: _Ctx, n: Node, a: list[str]) -> list[str]:
    at = n.attrs
    return cx.emit("TopK", [a[0], cx.ints([at["k"]])], 2, axis=at["axis"], largest=int(at["largest"]),
                   sorted=int(at["sorted"]))


@exports("var")
def _var(cx: _Ctx, n: Node, a: list[str]) -> str:
    t, at = n.inputs[0].type, n.attrs
    axes = at["axes"] if at["axes"] is not None else list(range(t.rank))
    count = math.prod(t.shape[i] for i in axes) if all(isinstance(t.shape[i], int) for i in axes) else None
    if count is None:
        raise UnsupportedOpError(f"{n.describe()}: var over a symbolic dim has no ONNX export", ops={"var": 1})
    mean = cx.emit("ReduceMean", a, axes=list(axes), keepdims=1)
    d = cx.emit("Sub", [a[0], mean])
    s = cx.emit("ReduceSum", [cx.emit("Mul", [d, d]), cx.ints(axes)], keepdims=int(at["keepdims"]))
    return cx.emit("Div", [s, cx.const(max(count - at["correction"], 0.0), t.dtype)])


# -- nn ------------------------------------------------------------------------------------------------------
def _spatial(n: Node, nd: int) -> dict[str, Any]:
    at = n.attrs
    return {"strides": list(at["strides"] or [1] * nd), "pads": list(at["pads"] or [0] * 2 * nd),
            "dilations": list(at.get("dilations") or [1] * nd)}


@exports("conv")
def _conv(cx: _Ctx, n: Node, a: list[str]) -> str:
    y = cx.emit("Conv", a[:3], group=n.attrs["groups"], **_spatial(n, n.inputs[1].type.rank - 2))
    y = cx.emit("Add", [y, a[3]]) if len(a) > 3 else y
    return _activation(cx, y, n.attrs["activation"], n.outputs[0].type.dtype)


def _quantize_static(cx: _Ctx, v: str, s: str, z: str, qmax: int) -> str:
    """uint8 codes of `v` at scale `s` and zero point `z`, clipped to 0..qmax first (QuantizeLinear saturates only
    at 255; reduce_range's codes stop at 127)."""
    zf = cx.emit("Cast", [z], to=_onnx_dtype(DType.F32))
    lo = cx.emit("Mul", [cx.emit("Neg", [zf]), s])
    hi = cx.emit("Mul", [cx.emit("Sub", [cx.const(np.float32(qmax)), zf]), s])
    return cx.emit("QuantizeLinear", [cx.emit("Clip", [v, lo, hi]), s, z])  # type: ignore[no-any-return]


@exports("quantized_conv")
def _quantized_conv(cx: _Ctx, n: Node, a: list[str]) -> str:
    """The static QDQ form ONNX Runtime fuses into QLinearConv: Clip to the codes' range, QuantizeLinear,
    DequantizeLinear on input and weight, a float Conv; bias, residual and activation after. A uint8 input is the
    codes already (DequantizeLinear only); `out_scale` quantizes the result for the next convolution the same way."""
    qmax = 127 if n.attrs["reduce_range"] else 255
    s, z = a[3], a[4]
    xq = a[0] if n.inputs[0].type.dtype == DType.U8 else _quantize_static(cx, a[0], s, z, qmax)
    xd = cx.emit("DequantizeLinear", [xq, s, z])
    wz = cx.const(np.zeros(n.inputs[1].type.shape[0], np.int8))
    wd = cx.emit("DequantizeLinear", [a[1], a[2], wz], axis=0)
    y = cx.emit("Conv", [xd, wd, *a[5:6]], group=n.attrs["groups"], **_spatial(n, 2))
    y = cx.emit("Add", [y, a[6]]) if len(a) > 6 else y
    y = _activation(cx, y, n.attrs["activation"], DType.F32)
    if n.attrs["out_scale"]:
        y = _quantize_static(cx, y, cx.const(np.float32(n.attrs["out_scale"])),
                             cx.const(np.uint8(n.attrs["out_zero_point"])), qmax)
    return y


exports("conv_transpose")(lambda cx, n, a: cx.emit(
    "ConvTranspose", a, group=n.attrs["groups"], **_spatial(n, n.inputs[1].type.rank - 2),
    **({"output_padding": list(n.attrs["output_padding"])} if n.attrs["output_padding"] else {})))


@exports("grid_sample")
def _grid_sample(cx: _Ctx, n: Node, a: list[str]) -> str:
    if n.inputs[0].type.rank != 4:
        raise UnsupportedOpError(f"{n.describe()}: ONNX opset 17 GridSample is 2-D only", ops={"grid_sample": 1})
    mode = {"linear": "bilinear", "nearest": "nearest", "cubic": "bicubic"}[n.attrs["mode"]]
    return cx.emit("GridSample", a, mode=mode, padding_mode=n.attrs["padding_mode"],
                   align_corners=int(n.attrs["align_corners"]))


@exports("interpolate")
def _interpolate(cx: _Ctx, n: Node, a: list[str]) -> str:
    """ONNX Resize: torch's scale factors (which map coordinates) as `scales`, else the output `sizes`."""
    x, at = n.inputs[0].type, n.attrs
    if at["mode"] == "nearest":
        extra: dict[str, Any] = {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    else:
        extra = {"coordinate_transformation_mode": "align_corners" if at["align_corners"] else "half_pixel",
                 "cubic_coeff_a": -0.75 if at["mode"] == "cubic" else None}
    if at["scales"] is not None and not at["align_corners"]:
        scales = cx.const(np.array([1.0, 1.0, *at["scales"]], np.float32))
        return cx.emit("Resize", [a[0], "", scales], mode=at["mode"], **extra)
    sizes = cx.ints([*x.shape[:2], *at["sizes"]])
    return cx.emit("Resize", [a[0], "", "", sizes], mode=at["mode"], **extra)


@exports("max_pool", "avg_pool")
def _pool(cx: _Ctx, n: Node, a: list[str]) -> str:
    at, nd = n.attrs, len(n.attrs["kernel"])
    sp = _spatial(n, nd)
    if _MAX_POOL.of(n):
        return cx.emit("MaxPool", a, kernel_shape=list(at["kernel"]), ceil_mode=int(at["ceil_mode"]), **sp)
    del sp["dilations"]
    return cx.emit("AveragePool", a, kernel_shape=list(at["kernel"]), ceil_mode=int(at["ceil_mode"]),
                   count_include_pad=int(at["count_include_pad"]), **sp)


@exports("adaptive_avg_pool")
def _adaptive(cx: _Ctx, n: Node, a: list[str]) -> str:
    if any(s != 1 for s in n.attrs["output_size"]):
        raise UnsupportedOpError(f"{n.describe()}: adaptive_avg_pool to a size other than 1 has no ONNX export",
                                 ops={"adaptive_avg_pool": 1})
    return cx.emit("GlobalAveragePool", a)


exports("batch_norm")(lambda cx, n, a: cx.emit("BatchNormalization", a, epsilon=n.attrs["eps"]))


@exports("layer_norm")
def _layer_norm(cx: _Ctx, n: Node, a: list[str]) -> str:
    t, at = n.inputs[0].type, n.attrs
    if len(a) == 1:
        shape = t.shape[at["axis"] % t.rank:]
        if not all(isinstance(d, int) for d in shape):
            raise UnsupportedOpError(f"{n.describe()}: layer_norm without a scale over symbolic dims",
                                     ops={"layer_norm": 1})
        a = a + [cx.const(np.ones(shape), t.dtype)]
    return cx.emit("LayerNormalization", a, axis=at["axis"], epsilon=at["eps"])


@exports("rms_norm")
def _rms_norm(cx: _Ctx, n: Node, a: list[str]) -> str:
    t, at = n.inputs[0].type, n.attrs
    axes = list(range(at["axis"] % t.rank, t.rank))
    ms = cx.emit("ReduceMean", [cx.emit("Mul", [a[0], a[0]])], axes=axes, keepdims=1)
    y = cx.emit("Div", [a[0], cx.emit("Sqrt", [cx.emit("Add", [ms, cx.const(at["eps"], t.dtype)])])])
    return cx.emit("Mul", [y, a[1]]) if len(a) > 1 else y


@exports("scaled_dot_product_attention")
def _sdpa(cx: _Ctx, n: Node, a: list[str]) -> str:
    q, k = n.inputs[0].type, n.inputs[1].type
    dt, at = q.dtype, n.attrs
    if not isinstance(q.shape[-1], int):
        raise UnsupportedOpError(f"{n.describe()}: attention with a symbolic head size", ops={"sdpa": 1})
    scale = at["scale"] if at["scale"] is not None else 1 / math.sqrt(q.shape[-1])
    perm = list(range(k.rank - 2)) + [k.rank - 1, k.rank - 2]
    s = cx.emit("Mul", [cx.emit("MatMul", [a[0], cx.emit("Transpose", [a[1]], perm=perm)]), cx.const(scale, dt)])
    if len(a) > 3:
        m = n.inputs[3]
        bias = (cx.emit("Where", [a[3], cx.const(0.0, dt), cx.const(-np.inf, dt)]) if m.type.dtype == DType.BOOL
                else a[3])
        s = cx.emit("Add", [s, bias])
    if at["causal"]:  # torch: keep j <= i of an [L, S] grid
        from onnx import numpy_helper

        ones = cx.emit("ConstantOfShape", [cx.ints([q.shape[-2], k.shape[-2]])],
                       value=numpy_helper.from_array(np.ones(1, dtype=np.int64)))
        keep = cx.emit("Cast", [cx.emit("Trilu", [ones], upper=0)], to=_onnx_dtype(DType.BOOL))
        s = cx.emit("Where", [keep, s, cx.const(-np.inf, dt)])
    return cx.emit("MatMul", [cx.emit("Softmax", [s], axis=-1), a[2]])


def _recurrent(cx: _Ctx, n: Node, onnx_op: str, x: str, states: list[str], weights: list[str], order: list[int],
               **attrs: Any) -> list[str]:
    """One IR recurrent layer as the ONNX op: gates reordered from the IR's (torch's) order to ONNX's (`order`
    lists the IR gate in each ONNX block), a leading num_directions axis of 1, and batch-first run as the
    sequence-first op between transposes (ONNX's layout=1 would make the states batch-first too, and ONNX
    Runtime's CPU kernels do not implement it)."""
    w_ih, w_hh, b_ih, b_hh = weights
    hidden = n.inputs[len(states) + 2].type.shape[1]

    def reorder(w: str) -> str:
        gates = cx.emit("Split", [w, cx.ints([hidden] * len(order))], len(order), axis=0) if len(order) > 1 else [w]
        merged = cx.emit("Concat", [gates[k] for k in order], axis=0) if len(order) > 1 else w
        return cx.emit("Unsqueeze", [merged, cx.ints([0])])

    bias = cx.emit("Concat", [reorder(b_ih), reorder(b_hh)], axis=1)
    return _sequence_first(cx, n, onnx_op, x, [reorder(w_ih), reorder(w_hh), bias, "", *states], hidden_size=hidden,
                           **attrs)


def _sequence_first(cx: _Ctx, n: Node, onnx_op: str, x: str, operands: list[str], **attrs: Any) -> list[str]:
    """`onnx_op(x, *operands)` for recurrent node `n`: a batch-first x between transposes, the num_directions axis
    of y squeezed, and unread outputs left unnamed."""
    bf = n.attrs["batch_first"]
    x = cx.emit("Transpose", [x], perm=[1, 0, 2]) if bf else x
    # An output nothing reads gets no name: ONNX Runtime then skips writing it (a classifier reads only the last
    # hidden state; writing every step's output cost 6% of the LSTM classifier's run here)
    read = [not o.is_dead for o in n.outputs]
    names = [cx.fresh(onnx_op.lower()) if r else "" for r in read]
    y, *finals = cx.emit(onnx_op, [x, *operands], names, **attrs)
    if not read[0]:
        return ["", *finals]
    y = cx.emit("Squeeze", [y, cx.ints([1])])
    return [cx.emit("Transpose", [y], perm=[1, 0, 2]) if bf else y, *finals]


# torch's gates i,f,g,o -> ONNX's i,o,f,c; r,z,n -> z,r,h
exports("lstm")(lambda cx, n, a: _recurrent(cx, n, "LSTM", a[0], a[1:3], a[3:7], [0, 3, 1, 2]))


@exports("quantized_lstm")
def _quantized_lstm(cx: _Ctx, n: Node, a: list[str]) -> list[str]:
    """ONNX Runtime's DynamicQuantizeLSTM (com.microsoft): int8 weights transposed to [1, in, 4H] in ONNX's gate
    order, with their scales and zero zero points. Constant weights are re-laid out here, as initializers that ONNX
    Runtime pre-packs for its integer GEMM; computed ones by Gather and Transpose. Batch-first runs
    sequence-first, as for lstm."""
    hidden = int(n.inputs[5].type.shape[1])
    rows = np.concatenate([np.arange(g * hidden, (g + 1) * hidden) for g in (0, 3, 1, 2)])  # i,f,g,o -> i,o,f,c

    def weight(k: int) -> list[str]:
        q, s = n.inputs[k].const, n.inputs[k + 1].const
        if q is not None and s is not None:
            scale = np.broadcast_to(np.asarray(s, np.float32).reshape(-1), (4 * hidden,))[rows][None]
            return [cx.const(np.ascontiguousarray(q[rows].T[None])), cx.const(np.ascontiguousarray(scale)),
                    cx.const(np.zeros((1, 4 * hidden), np.int8))]
        q_name = cx.emit("Transpose", [cx.emit("Gather", [a[k], cx.const(rows)], axis=0)], perm=[1, 0])
        scale = cx.emit("Expand", [cx.emit("Reshape", [a[k + 1], cx.ints([-1])]), cx.ints([4 * hidden])])
        return [cx.emit("Unsqueeze", [q_name, cx.ints([0])]),
                cx.emit("Unsqueeze", [cx.emit("Gather", [scale, cx.const(rows)], axis=0), cx.ints([0])]),
                cx.const(np.zeros((1, 4 * hidden), np.int8))]

    (wq, ws, wz), (rq, rs, rz) = weight(3), weight(5)
    bias = cx.emit("Unsqueeze", [cx.emit("Concat", [cx.emit("Gather", [b, cx.const(rows)], axis=0) for b in a[7:9]],
                                         axis=0), cx.ints([0])])
    return _sequence_first(cx, n, "DynamicQuantizeLSTM", a[0], [wq, rq, bias, "", a[1], a[2], "", ws, wz, rs, rz],
                           hidden_size=hidden, domain="com.microsoft")


# linear_before_reset=1: the reset gate scales (R_h·h + Rb_h), as torch.nn.GRU computes it
exports("gru")(lambda cx, n, a: _recurrent(cx, n, "GRU", a[0], a[1:2], a[2:6], [1, 0, 2],
                                           linear_before_reset=1 if n.attrs["linear_before_reset"] else 0))
exports("rnn")(lambda cx, n, a: _recurrent(cx, n, "RNN", a[0], a[1:2], a[2:6], [0],
                                           activations=[{"tanh": "Tanh", "relu": "Relu"}[n.attrs["nonlinearity"]]]))


exports("quantize_linear")(lambda cx, n, a: cx.emit("QuantizeLinear", a, axis=n.attrs["axis"]))


@exports("dequantize_linear")
def _dequantize_linear(cx: _Ctx, n: Node, a: list[str]) -> str:
    if not n.attrs["block_size"]:
        return cx.emit("DequantizeLinear", a, axis=n.attrs["axis"])  # type: ignore[no-any-return]
    x = n.inputs[0].type
    ax = n.attrs["axis"] % x.rank
    return _blocked_dequantize(cx, a, ax, n.attrs["block_size"], x.shape[ax], n.inputs[1].type.dtype)


def _blocked_dequantize(cx: _Ctx, a: list[str], axis: int, block_size: int, size: Any, dtype: DType) -> str:
    """Blocked DequantizeLinear (opset 21) in opset-17 ops: each block's scale and zero point gathered out to x's
    shape, then (x − z) · s. On constant weights ONNX Runtime folds it once: it runs the f32 weight."""
    if not isinstance(size, int):
        raise UnsupportedOpError(f"blocked dequantize_linear along a symbolic axis ({size})",
                                 ops={"dequantize_linear": 1})
    idx = cx.const(np.arange(size, dtype=np.int64) // block_size)
    s, z = (cx.emit("Gather", [p, idx], axis=axis) for p in a[1:3])
    i32 = _onnx_dtype(DType.I32)
    diff = cx.emit("Sub", [cx.emit("Cast", [a[0]], to=i32), cx.emit("Cast", [z], to=i32)])
    return cx.emit("Mul", [cx.emit("Cast", [diff], to=_onnx_dtype(dtype)), s])  # type: ignore[no-any-return]


@exports("dynamic_quantize_linear")
def _dynamic_quantize_linear(cx: _Ctx, n: Node, a: list[str]) -> list[str]:
    return _dql(cx, a[0], n.attrs["reduce_range"])


def _dql(cx: _Ctx, x: str, reduce_range: bool) -> list[str]:
    if not reduce_range:
        return cx.emit("DynamicQuantizeLinear", [x], 3)  # type: ignore[no-any-return]
    # 0..127: the same steps as DynamicQuantizeLinear with qmax 127 (which ONNX has no attribute for)
    zero = cx.const(np.float32(0.0))
    lo = cx.emit("Min", [cx.emit("ReduceMin", [x], keepdims=0), zero])
    hi = cx.emit("Max", [cx.emit("ReduceMax", [x], keepdims=0), zero])
    span = cx.emit("Sub", [hi, lo])
    scale = cx.emit("Where", [cx.emit("Greater", [span, zero]), cx.emit("Div", [span, cx.const(np.float32(127.0))]),
                              cx.const(np.float32(1.0))])
    zp = cx.emit("Cast", [cx.emit("Clip", [cx.emit("Round", [cx.emit("Div", [cx.emit("Neg", [lo]), scale])]), zero,
                                           cx.const(np.float32(127.0))])], to=_onnx_dtype(DType.U8))
    return [cx.emit("QuantizeLinear", [x, scale, zp]), scale, zp]


@exports("quantized_linear")
def _quantized_linear(cx: _Ctx, n: Node, a: list[str]) -> str:
    """Dynamic: ONNX Runtime's integer path — DynamicQuantizeLinear, MatMulInteger (int32 sums), one rescale.
    Static: the same with the calibrated scale — Clip to the codes' range, QuantizeLinear, MatMulInteger.
    Weight-only (int8, or int4 group-wise): the dequantized weight into a float MatMul."""
    transposed = lambda: cx.emit("Transpose", [a[1]], perm=[1, 0])  # noqa: E731 - [in, out]: folded by ORT
    if cx.ort_contrib and n.attrs["act_quant"] == "dynamic" and not n.attrs["reduce_range"]:
        # ONNX Runtime's one-node form of the same arithmetic (full-range u8 activations, int32 sums, one rescale,
        # bias), which it pre-packs: a 4-layer BERT-base-width encoder on the onnxruntime target (2-core VNNI Xeon,
        # batch 1, 20 interleaved rounds) took 19.9 ms, against 20.7 with 7-bit activations in standard ops
        zero = cx.const(np.zeros(n.inputs[2].type.shape, np.int8))
        y = cx.emit("DynamicQuantizeMatMul", [a[0], transposed(), a[2], zero, *a[3:4]], domain="com.microsoft")
        return _activation(cx, y, n.attrs["activation"], DType.F32)
    if n.attrs["act_quant"] in ("dynamic", "static"):
        if n.attrs["act_quant"] == "static":
            xs, xz = cx.const(np.float32(n.attrs["x_scale"])), cx.const(np.uint8(n.attrs["x_zero_point"]))
            xq = _quantize_static(cx, a[0], xs, xz, 127 if n.attrs["reduce_range"] else 255)
        else:
            xq, xs, xz = _dql(cx, a[0], n.attrs["reduce_range"])
        acc = cx.emit("MatMulInteger", [xq, transposed(), xz])
        y = cx.emit("Mul", [cx.emit("Cast", [acc], to=_onnx_dtype(DType.F32)), cx.emit("Mul", [xs, a[2]])])
    elif n.attrs["group_size"]:  # int4 codes, a scale per row and group: dequantized [out, in], then transposed
        zero = cx.const(np.zeros(n.inputs[2].type.shape, np.int8))
        w = _blocked_dequantize(cx, [a[1], a[2], zero], 1, n.attrs["group_size"], n.inputs[1].type.shape[1],
                                DType.F32)
        y = cx.emit("MatMul", [a[0], cx.emit("Transpose", [w], perm=[1, 0])])
    else:
        w = cx.emit("Mul", [cx.emit("Cast", [transposed()], to=_onnx_dtype(DType.F32)), a[2]])
        y = cx.emit("MatMul", [a[0], w])
    if len(a) > 3:
        y = cx.emit("Add", [y, a[3]])
    return _activation(cx, y, n.attrs["activation"], DType.F32)


_CAST_TO_OUTPUT = op_names("exp", "log", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid", "erf", "reciprocal", "log1p", "expm1",
                           "silu", "gelu", "softplus", "elu", "hardswish", "hardsigmoid", "softmax", "log_softmax",
                           "reduce_sum", "reduce_prod", "cumsum", "reduce_mean", "abs", "neg")
_BOOL_INPUTS = op_names("logical_and", "logical_or", "logical_xor", "logical_not")


# -- driver --------------------------------------------------------------------------------------------------
def _value_info(v: Value) -> Any:
    from onnx import helper

    dims = [d if isinstance(d, int) else str(d) for d in v.type.shape]
    return helper.make_tensor_value_info(v.name, _onnx_dtype(v.type.dtype), dims)


def to_onnx(graph: Graph, *, opset: int = OPSET, ort_contrib: bool = False) -> Any:
    """The graph as an onnx.ModelProto (weights inline). UnsupportedOpError lists every op without an export.

    `ort_contrib=True` (what the onnxruntime target and the cpu target's ONNX Runtime regions export) uses ONNX
    Runtime's fused com.microsoft ops where a standard-ONNX form exists too; without it only ops with no standard
    form (the int8 LSTM) leave the default domain."""
    from onnx import helper, numpy_helper

    missing = sorted({n.op.name for n in graph if n.op.name not in EXPORTERS})
    if missing:
        raise UnsupportedOpError(f"no ONNX export for op(s) {', '.join(missing)}", ops={m: 1 for m in missing})
    cx = _Ctx(graph, ort_contrib)
    names: dict[int, str] = {id(v): v.name for v in graph.inputs}
    # a constant that is a graph output (what fold-constants leaves) is an initializer too, not a dangling name
    inits = [numpy_helper.from_array(np.asarray(c.const), c.name) for c in graph.constants.values()
             if c.num_uses or c.output_refs]
    names.update({id(c): c.name for c in graph.constants.values()})
    for node in graph:
        args = [names[id(v)] for v in node.inputs]
        if node.op.name in _CAST_TO_OUTPUT:  # ONNX keeps the input dtype where the IR promotes (exp of an int)
            args[0] = cx.cast(args[0], node.inputs[0].type.dtype, node.outputs[0].type.dtype)
        elif node.op.name in _BOOL_INPUTS:
            args = [cx.cast(a, v.type.dtype, DType.BOOL) for a, v in zip(args, node.inputs)]
        outs = EXPORTERS[node.op.name](cx, node, args)
        outs = [outs] if isinstance(outs, str) else list(outs)
        for v, o in zip(node.outputs, outs):
            names[id(v)] = o
            for axis, d in enumerate(v.type.shape):  # a data-dependent size (nonzero's count) is read from here
                if is_symbol(d) and d not in cx.sym_source:
                    cx.sym_source[d] = (o, axis)
    # ONNX graph outputs need their own names; an Identity gives each one (also when an input is returned).
    outputs = []
    taken = {v.name for v in graph.inputs} | set(graph.constants) | {o for n in cx.nodes for o in n.output}
    for i, v in enumerate(graph.outputs):
        name = v.name if v.name not in taken and not v.name.isdigit() else f"output_{i}"  # keep the model's names
        taken.add(name)
        cx.emit("Identity", [names[id(v)]], [name])
        outputs.append(helper.make_tensor_value_info(name, _onnx_dtype(v.type.dtype),
                                                     [d if isinstance(d, int) else str(d) for d in v.type.shape]))
    read = {i for n in cx.nodes for i in n.input}  # an exporter that re-lays a weight out leaves the original unread
    g = helper.make_graph(cx.nodes, graph.name, [_value_info(v) for v in graph.inputs], outputs,
                          initializer=[t for t in inits if t.name in read] + cx.inits)
    domains = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in sorted({n.domain for n in cx.nodes}
                                                                                           - {"", "ai.onnx"})]
    model = helper.make_model(g, opset_imports=domains, producer_name="graphopt")
    model.ir_version = min(model.ir_version, 9)  # what onnxruntime releases of the last two years accept
    return model


def export_onnx(graph: Graph, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write the graph as an ONNX file (checked with onnx.checker), atomically; refuses to overwrite by default."""
    import onnx

    from graphopt.fileio import write_bytes_atomic

    model = to_onnx(graph)
    onnx.checker.check_model(model)
    return write_bytes_atomic(Path(path), model.SerializeToString(), overwrite=overwrite)
