"""One Python expression per IR op, calling PyTorch CPU kernels. The table *is* the cpu target's op coverage.

An emitter gets the node, its input expressions (names of locals, or inlined scalar literals) and its
attributes with dims rendered as Python expressions, and returns the right-hand side of one statement.
"""

from __future__ import annotations

import contextvars
import math

from collections.abc import Callable, Sequence
from typing import Any

from graphopt.ir import SLICE_END, DType, Node, OpRef, Trait, op_names

Emitter = Callable[[Node, Sequence[str], dict[str, Any]], str]
EMITTERS: dict[str, Emitter] = {}
# op -> (input index, setup expression for make() given that constant's local) when the op wants a constant
# input prepared once at load time (e.g. a weight packed for the GEMM library), or None to use it as is; the
# prepared local is passed to the emitter as one extra argument after the node's inputs. In the expression `{}` is
# that constant's local and `{a[k]}` the node's k-th operand (a scale, a bias the packing needs too).
PREPARE: dict[str, Callable[[Node], tuple[int, str] | None]] = {}

#: Set while generating code that autograd must differentiate (graphopt.backends.cpu.trainable): oneDNN's packed
#: weights and the bf16 row switch have no backward, so every layer runs its plain torch op.
DIFFERENTIABLE: contextvars.ContextVar[bool] = contextvars.ContextVar("graphopt_cpu_differentiable", default=False)


def emits(*ops: str) -> Callable[[Emitter], Emitter]:
    def deco(fn: Emitter) -> Emitter:
        for op in ops:
            EMITTERS[op] = fn
        return fn

    return deco


def _tuple(xs: Sequence[Any]) -> str:
    return "(" + ", ".join(map(str, xs)) + ("," if len(xs) == 1 else "") + ")"


def _dt(dtype: DType) -> str:
    return f"torch.{dtype.torch}".replace("torch.torch.", "torch.")


# Ops whose operands may be Python scalars: written with operators so `2.0 - x` works too.
INFIX = {"add": "+", "sub": "-", "mul": "*", "pow": "**", "eq": "==", "ne": "!=", "lt": "<", "le": "<=",
         "gt": ">", "ge": ">="}
for _op, _sym in INFIX.items():
    emits(_op)(lambda n, a, at, _s=_sym: f"{a[0]} {_s} {a[1]}")

_CALLS = {
    "abs": "torch.abs", "neg": "torch.neg", "exp": "torch.exp", "log": "torch.log", "sqrt": "torch.sqrt",
    "rsqrt": "torch.rsqrt", "sin": "torch.sin", "cos": "torch.cos", "tanh": "torch.tanh",
    "sigmoid": "torch.sigmoid", "relu": "torch.relu", "erf": "torch.erf", "floor": "torch.floor",
    "ceil": "torch.ceil", "round": "torch.round", "trunc": "torch.trunc", "sign": "torch.sign",
    "reciprocal": "torch.reciprocal", "logical_not": "torch.logical_not", "isnan": "torch.isnan",
    "isinf": "torch.isinf", "log1p": "torch.log1p", "expm1": "torch.expm1", "silu": "F.silu", "hardswish": "F.hardswish",
    "hardsigmoid": "F.hardsigmoid", "maximum": "torch.maximum", "minimum": "torch.minimum",
    "logical_and": "torch.logical_and", "logical_or": "torch.logical_or", "logical_xor": "torch.logical_xor",
    "fmod": "torch.fmod", "remainder": "torch.remainder", "bitwise_and": "torch.bitwise_and",
    "bitwise_or": "torch.bitwise_or", "bitwise_xor": "torch.bitwise_xor", "bitwise_not": "torch.bitwise_not",
    "matmul": "torch.matmul", "where": "torch.where", "identity": "", "dropout": "",
    "tan": "torch.tan", "asin": "torch.asin", "acos": "torch.acos", "atan": "torch.atan", "sinh": "torch.sinh",
    "cosh": "torch.cosh", "asinh": "torch.asinh", "acosh": "torch.acosh", "atanh": "torch.atanh",
}
for _op, _fn in _CALLS.items():
    emits(_op)(lambda n, a, at, _f=_fn: f"{_f}({', '.join(a)})" if _f else a[0])


# FLOAT_COMPUTE ops have torch kernels for floating point only (torch raises "not implemented for 'Int'"), while
# the IR types them float on an integer input; these ops torch refuses for bool though the IR keeps bool (identity).
_NO_BOOL_KERNELS = op_names("abs", "ceil", "floor", "round", "trunc", "relu")
_NORM_PARAMS = op_names("batch_norm", "layer_norm", "rms_norm")


# u16/u32/u64: torch stores them but has kernels for little beyond casts and copies (no add, compare, max, ...).
# They are computed in int64 and cast back: exact for u16/u32, whose values all fit. For u64 int64 holds the
# same bits, so what two's-complement arithmetic computes bit for bit is exact too (add, sub, mul, bitwise ops,
# left shifts, equality, sums, data movement); ordered comparisons flip the sign bit first (a < b as unsigned is
# (a ^ 2⁶³) < (b ^ 2⁶³) as signed). The rest (division, max/min, right shifts, argmax, ...) differ above 2⁶³ and
# are refused by name (`unsigned_reason`).
_U64_EXACT = op_names("add", "sub", "mul", "neg", "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not", "eq",
                      "ne", "where", "reduce_sum", "cumsum", "reduce_prod", "cumprod", "identity", "dropout")
_U64_ORDERED = op_names("lt", "le", "gt", "ge")
_UNSIGNED_NATIVE = op_names("cast", "bitcast")  # torch converts to and from every dtype and reinterprets bits


def _wide_unsigned(n: Node) -> DType | None:
    for v in (*n.inputs, *n.outputs):
        if v.type is not None and v.type.dtype.is_wide_unsigned:
            return v.type.dtype
    return None


def unsigned_reason(n: Node) -> str | None:
    """Why the cpu target cannot compute `n` exactly (None: it can), for nodes on u16/u32/u64 values."""
    if _wide_unsigned(n) != DType.U64 or n.op.name in _UNSIGNED_NATIVE | _U64_EXACT | _U64_ORDERED:
        return None
    if n.op.has(Trait.LAYOUT) or (n.op.name == "shift" and n.attrs["left"]):
        return None
    return (f"torch has no u64 kernel for {n.op.name}, and int64 arithmetic differs from u64 above 2^63; "
            "target='reference' computes it")


def _unsigned_operands(n: Node, args: list[str]) -> tuple[list[str], str | None]:
    for i, v in enumerate(n.inputs):
        if v.type.dtype.is_wide_unsigned and args[i].isidentifier():  # literals are Python ints already
            args[i] = f"{args[i]}.to(torch.int64)"
            if n.op.name in _U64_ORDERED and v.type.dtype == DType.U64:
                args[i] = f"({args[i]} ^ {-2**63})"
    out = n.outputs[0].type.dtype
    return args, (_dt(out) if out.is_wide_unsigned else None)


def legal_operands(n: Node, args: Sequence[str]) -> tuple[list[str], str | None]:
    """The operand expressions with the casts torch needs to compute what the IR's types say, and the dtype the
    result must be cast back to (or None). Type inference and the emitters agree through this one place."""
    args = list(args)
    if not n.outputs or not n.inputs:
        return args, None
    if n.op.name not in _UNSIGNED_NATIVE and _wide_unsigned(n) is not None:
        return _unsigned_operands(n, args)
    out, x = n.outputs[0].type.dtype, n.inputs[0].type.dtype
    if n.op.has(Trait.FLOAT_COMPUTE) and not x.is_float:  # torch has only float kernels for these
        if out.is_float:
            args[0] = f"{args[0]}.to({_dt(out)})"
        else:  # an integer result (var of ints): computed in f64 and cast back, as the reference does
            args[0] = f"{args[0]}.to(torch.float64)"
            return args, _dt(out)
    elif n.op.name in _NO_BOOL_KERNELS and x == DType.BOOL:
        args[0] = f"{args[0]}.to(torch.int8)"
        return args, _dt(out)
    elif n.op.name in _NORM_PARAMS:  # torch wants the statistics and affine params in the input's dtype
        for i, v in enumerate(n.inputs[1:], 1):
            if v.type.dtype != x and v.type.dtype.is_float:
                args[i] = f"{args[i]}.to({_dt(x)})"
    return args, None


def _packed_from(n: Node) -> int | None:
    """From how many rows this linear runs oneDNN with a packed weight (None: never), measured per shape."""
    from .kernels import linear_kernel

    if DIFFERENTIABLE.get():
        return None
    w = n.inputs[1]
    if w.const is None or n.inputs[0].type.dtype not in (DType.F32, DType.BF16):
        return None
    out_f, in_f = w.type.shape
    return linear_kernel(in_f, out_f, n.inputs[0].type.dtype.torch)


def _bf16_from(n: Node) -> int | None:
    """For a bf16 linear with a constant weight: the row count from which bf16 beats f32 here, when that is more
    than one row (below it the code computes in f32 on an upcast copy of the weight); else None."""
    w = n.inputs[1]
    if n.inputs[0].type.dtype != DType.BF16 or w.const is None or w.const.size < 4096 or DIFFERENTIABLE.get():
        return None
    from .kernels import bf16_linear_choice

    out_f, in_f = w.type.shape
    rows_from = bf16_linear_choice(int(in_f), int(out_f))[0]
    return rows_from if rows_from is not None and rows_from > 1 else None


def _prepare_linear(n: Node) -> tuple[int, str] | None:
    packed = "rt.pack_linear_weight({0})" if _packed_from(n) is not None else None
    if _bf16_from(n) is not None:
        return 1, f"({packed or '{0}'}, {{0}}.float())"
    return (1, packed) if packed is not None else None


PREPARE["linear"] = _prepare_linear


# the linear epilogue as the torch call for the unpacked path (the packed one uses oneDNN's post-ops)
_TORCH_ACT = {"relu": "torch.relu({})", "gelu": "F.gelu({})", "gelu_tanh": "F.gelu({}, approximate='tanh')",
              "silu": "F.silu({})", "tanh": "torch.tanh({})"}


def _activated(call: str, act: str) -> str:
    """`call` followed by the epilogue `act` as its torch call ("none": the call itself)."""
    return _TORCH_ACT[act].format(call) if act != "none" else call


@emits("linear")
def _linear(n: Node, a: Sequence[str], at: dict[str, Any]) -> str:
    bias = a[2] if len(n.inputs) > 2 else "None"
    act = at["activation"]
    bf16_from = _bf16_from(n)
    prepared = a[len(n.inputs)] if len(a) > len(n.inputs) else None
    packed = f"{prepared}[0]" if bf16_from is not None else prepared
    call = _linear_call(n, a[0], a[1], packed, bias, act)
    if bf16_from is None:
        return call
    # bf16 loses below `bf16_from` rows here: there, f32 on the upcast weight, rounded back to the op's bf16
    f32 = f"F.linear({a[0]}.float(), {prepared}[1], {bias if bias == 'None' else bias + '.float()'})"
    f32 = _activated(f32, act)
    return f"rt.by_rows({a[0]}, {bf16_from}, lambda: {call}, lambda: ({f32}).to(torch.bfloat16))"


def _linear_call(n: Node, x: str, w: str, packed: str | None, bias: str, act: str) -> str:
    rows_from = _packed_from(n)
    if rows_from is None or packed is None:
        return _activated(f"F.linear({x}, {w}, {bias})", act)
    from .runtime import ONEDNN_ACTIVATIONS

    attr, algo = ONEDNN_ACTIVATIONS[act]
    if rows_from == 1:
        return f"torch.ops.mkldnn._linear_pointwise({x}, {packed}, {bias}, {attr!r}, [], {algo!r})"
    return f"rt.linear({x}, {w}, {packed}, {bias}, {rows_from}, {act!r})"


@emits("div")
def _div(n: Node, a: Sequence[str], at: dict[str, Any]) -> str:
    mode = at["rounding_mode"]
    if mode == "none":
        return f"{a[0]} / {a[1]}"
    return f"torch.div({a[0]}, {a[1]}, rounding_mode={mode!r})"


emits("gelu")(lambda n, a, at: f"F.gelu({a[0]}, approximate={at['approximate']!r})")
emits("elu")(lambda n, a, at: f"F.elu({a[0]}, {at['alpha']!r})")
emits("leaky_relu")(lambda n, a, at: f"F.leaky_relu({a[0]}, {at['negative_slope']!r})")
emits("softplus")(lambda n, a, at: f"F.softplus({a[0]}, {at['beta']!r}, {at['threshold']!r})")
emits("clamp")(lambda n, a, at: f"torch.clamp({a[0]}, {at['min']!r}, {at['max']!r})"
               if at["min"] is not None or at["max"] is not None else f"{a[0]}.clone()")
emits("softmax")(lambda n, a, at: f"torch.softmax({a[0]}, {at['axis']})")
emits("log_softmax")(lambda n, a, at: f"torch.log_softmax({a[0]}, {at['axis']})")
emits("cast")(lambda n, a, at: f"{a[0]}.to({_dt(at['dtype'])})")
emits("cumsum")(lambda n, a, at: f"torch.cumsum({a[0]}, {at['axis']})")
emits("triu")(lambda n, a, at: f"torch.triu({a[0]}, {at['diagonal']})")
emits("tril")(lambda n, a, at: f"torch.tril({a[0]}, {at['diagonal']})")
emits("argmax")(lambda n, a, at: f"torch.argmax({a[0]}, {at['axis']}, {at['keepdims']})")
emits("argmin")(lambda n, a, at: f"torch.argmin({a[0]}, {at['axis']}, {at['keepdims']})")
# ties in input order (lower index first), as the IR and ONNX define top-k; torch.topk leaves their order open
emits("topk")(lambda n, a, at: f"rt.topk({a[0]}, {at['k']}, {at['axis']}, {at['largest']})")
emits("cumprod")(lambda n, a, at: f"torch.cumprod({a[0]}, {at['axis']}, dtype={_dt(n.outputs[0].type.dtype)})")
emits("shift")(lambda n, a, at: f"rt.shift({a[0]}, {a[1]}, {at['left']})")
emits("bitcast")(lambda n, a, at: f"{a[0]}.view({_dt(at['dtype'])})")
emits("einsum")(lambda n, a, at: f"torch.einsum({at['equation']!r}, {', '.join(a)})")
_MAX_POOL = OpRef("max_pool")
_SCATTER = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}
emits("scatter_elements")(lambda n, a, at: f"torch.scatter({a[0]}, {at['axis']}, {a[1]}, {a[2]})"
                          if at["reduction"] == "none" else
                          f"torch.scatter_reduce({a[0]}, {at['axis']}, {a[1]}, {a[2]}, "
                          f"{_SCATTER[at['reduction']]!r})")
emits("scatter_nd")(lambda n, a, at: f"rt.scatter_nd({a[0]}, {a[1]}, {a[2]}, {at['reduction']!r})")
emits("gather_elements")(lambda n, a, at: f"torch.gather({a[0]}, {at['axis']}, {a[1]})")


# -- layout --------------------------------------------------------------------------------------------------
emits("reshape")(lambda n, a, at: f"{a[0]}.reshape({_tuple(at['shape'])})")
emits("transpose")(lambda n, a, at: f"{a[0]}.permute({_tuple(at['perm'])})")
emits("expand")(lambda n, a, at: f"{a[0]}.expand({_tuple(at['shape'])})")
emits("tile")(lambda n, a, at: f"{a[0]}.repeat({_tuple(at['repeats'])})")
emits("concat")(lambda n, a, at: f"torch.cat([{', '.join(a)}], {at['axis']})")
emits("split")(lambda n, a, at: f"torch.split({a[0]}, {list(at['sizes'])}, {at['axis']})")


@emits("squeeze")
def _squeeze(n: Node, a: Sequence[str], at: dict[str, Any]) -> str:
    axes = at["axes"]
    if axes is None:
        axes = [i for i, d in enumerate(n.inputs[0].type.shape) if d == 1]
    return f"{a[0]}.squeeze({_tuple(axes)})" if axes else a[0]


@emits("unsqueeze")
def _unsqueeze(n: Node, a: Sequence[str], at: dict[str, Any]) -> str:
    rank = n.outputs[0].type.rank
    expr = a[0]
    for ax in sorted(x % rank for x in at["axes"]):
        expr = f"{expr}.unsqueeze({ax})"
    return expr


@emits("slice")
def _slice(n: Node, a: Sequence[str], at: dict[str, Any]) -> str:
    rank = n.inputs[0].type.rank
    axes = at["axes"] if at["axes"] is not None else range(len(at["starts"]))
    steps = at["steps"] if at["steps"] is not None else [1] * len(at["starts"])
    index = [":"] * rank
    backwards = []  # torch indexing has no negative steps: those axes go through rt.slice_backwards
    for s, e, ax, st in zip(at["starts"], at["ends"], axes, steps):
        if st < 0:
            backwards.append(f"{ax % rank}, {s}, {e}, {st}")
            continue
        e_txt = "" if e == str(SLICE_END) or e == SLICE_END else str(e)
        s_txt = "" if s in (0, "0") else str(s)
        index[ax % rank] = f"{s_txt}:{e_txt}" + (f":{st}" if st != 1 else "")
    while index and index[-1] == ":":
        index.pop()
    expr = f"{a[0]}[{', '.join(index)}]" if index else a[0]
    for args in backwards:
        expr = f"rt.slice_backwards({expr}, {args})"
    return expr


@emits("gather")
def _gather(n: Node, a: Sequence[str], at: dict[str, Any]) -> str:
    ax = at["axis"] % n.inputs[0].type.rank
    idx = n.inputs[1]
    if idx.const is not None and idx.type.rank == 0:
        return f"{a[0]}.select({ax}, {int(idx.const)})"
    if ax == 0 and n.inputs[0].type.rank == 2:
        return f"F.embedding({a[1]}, {a[0]})"
    return f"{a[0]}[{'(slice(None),) * ' + str(ax) + ' + ' if ax else ''}({a[1]},)]"


emits("index")(lambda n, a, at: f"{a[0]}[{'(slice(None),) * ' + str(at['axis']) + ' + ' if at['axis'] else ''}"
                                f"({', '.join(a[1:])},)]")


@emits("pad")
def _pad(n: Node, a: Sequence[str], at: dict[str, Any]) -> str:
    pads, rank = at["pads"], n.inputs[0].type.rank
    if at["mode"] != "constant":
        return f"rt.pad_index({a[0]}, {_tuple(pads)}, {at['mode']!r})"
    torch_pads = []
    for i in reversed(range(rank)):
        torch_pads += [pads[i], pads[i + rank]]
    return f"F.pad({a[0]}, {_tuple(torch_pads)}, value={at['value']!r})"


@emits("arange")
def _arange(n: Node, a: Sequence[str], at: dict[str, Any]) -> str:
    return f"torch.arange({at['start']}, {at['end']}, {at['step']}, dtype={_dt(at['dtype'])})"


emits("nonzero")(lambda n, a, at: f"torch.nonzero({a[0]}).T.contiguous()")
emits("shape_tensor")(lambda n, a, at: f"torch.tensor({_tuple(at['values'])}, dtype={_dt(at['dtype'])})"
                     f".reshape({_tuple(n.outputs[0].type.shape)})")
emits("full")(lambda n, a, at: f"torch.full({_tuple(at['shape'])}, {at['value']!r}, dtype={_dt(at['dtype'])})")


# -- reductions ----------------------------------------------------------------------------------------------
def _axes(n: Node, at: dict[str, Any]) -> str:
    axes = at["axes"] if at["axes"] is not None else range(n.inputs[0].type.rank)
    return _tuple(list(axes))


emits("reduce_sum")(lambda n, a, at: f"torch.sum({a[0]}, {_axes(n, at)}, {at['keepdims']})")
emits("reduce_mean")(lambda n, a, at: f"torch.mean({a[0]}, {_axes(n, at)}, {at['keepdims']})")


def _extreme(fn: str) -> Emitter:
    def emit(n: Node, a: Sequence[str], at: dict[str, Any]) -> str:
        shape = n.inputs[0].type.shape
        axes = at["axes"] if at["axes"] is not None else range(len(shape))
        if all(isinstance(shape[ax], int) and shape[ax] > 0 for ax in axes):
            return f"torch.{fn}({a[0]}, {_axes(n, at)}, {at['keepdims']})"
        # torch refuses an empty reduction; ONNX (and the reference) give the identity, -inf for max
        return f"rt.extreme({a[0]}, {_axes(n, at)}, {at['keepdims']}, {fn == 'amin'})"

    return emit


emits("reduce_max")(_extreme("amax"))
emits("reduce_min")(_extreme("amin"))
emits("reduce_prod")(lambda n, a, at: f"rt.reduce_prod({a[0]}, {_axes(n, at)}, {at['keepdims']})")
emits("var")(lambda n, a, at: f"torch.var({a[0]}, {_axes(n, at)}, correction={at['correction']!r}, "
                              f"keepdim={at['keepdims']})")


# -- nn ------------------------------------------------------------------------------------------------------
def _sym_pads(pads: Sequence[int], nd: int) -> bool:
    return list(pads[:nd]) == list(pads[nd:])


def _conv_geometry(n: Node) -> tuple[int, tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    nd = n.inputs[1].type.rank - 2
    at = n.attrs
    return (nd, tuple(at["strides"] or (1,) * nd), tuple(at["pads"] or (0,) * (2 * nd)),
            tuple(at["dilations"] or (1,) * nd))


_MEASURED_BATCH = 8  # what a symbolic batch is measured at (the ORT delegate's races bind free dims to 8 too)


def _conv_packed(n: Node) -> bool:
    """Whether this conv runs oneDNN with a packed weight: 2-D, static input but for the batch, symmetric pads, and
    measured faster. A packed weight serves every batch size (its layout depends on the channels and kernel, not
    the batch; checked against F.conv2d at batches 1-540), so a symbolic batch is packed with a batch hint of 1, as
    the int8 convolution is, and measured at 8 — the F.conv2d path re-lays the weight out on every call."""
    from .kernels import conv_kernel

    nd, strides, pads, dil = _conv_geometry(n)
    x, w = n.inputs[0].type, n.inputs[1]
    if nd != 2 or w.const is None or x.dtype not in (DType.F32, DType.BF16) or not _sym_pads(pads, nd):
        return False
    if DIFFERENTIABLE.get():
        return False
    size = _qconv_input_size(n)
    if size is None:
        return False
    if not isinstance(x.shape[0], int):  # measured at a batch of 8: at 1, the per-call re-layout costs little
        size[0] = _MEASURED_BATCH
    return conv_kernel(tuple(size), tuple(w.type.shape), pads[:nd], strides, dil, n.attrs["groups"], x.dtype.torch)


def _prepare_conv(n: Node) -> tuple[int, str] | None:
    if not _conv_packed(n):
        return None
    nd, strides, pads, dil = _conv_geometry(n)
    return (1, f"rt.pack_conv_weight({{}}, {list(pads[:nd])}, {list(strides)}, {list(dil)}, {n.attrs['groups']}, "
               f"{_qconv_input_size(n)})")


PREPARE["conv"] = _prepare_conv


@emits("conv")
def _conv(n: Node, a: Sequence[str], at: dict[str, Any]) -> str:
    nd, strides, pads, dil = _conv_geometry(n)
    bias = a[2] if len(n.inputs) > 2 else "None"
    act, residual = at["activation"], (a[3] if len(n.inputs) > 3 else None)
    if _conv_packed(n):
        from .runtime import ONEDNN_ACTIVATIONS

        attr, algo = ONEDNN_ACTIVATIONS[act]
        geometry = f"{list(pads[:nd])}, {list(strides)}, {list(dil)}, {at['groups']}"
        packed = a[len(n.inputs)]
        if residual is None:
            return f"torch.ops.mkldnn._convolution_pointwise({a[0]}, {packed}, {bias}, {geometry}, {attr!r}, [], {algo!r})"
        # oneDNN's binary post-op takes the add and at most a relu; any other activation runs after it
        fused = "relu" if act == "relu" else None
        call = (f"torch.ops.mkldnn._convolution_pointwise.binary({a[0]}, {residual}, {packed}, {bias}, {geometry}, "
                f"'add', 1.0, {fused!r}, [], '')")
        return call if act in ("none", "relu") else _TORCH_ACT[act].format(call)
    x = a[0]
    if not _sym_pads(pads, nd):
        x, pads = f"rt.pad_spatial({x}, {_tuple(pads)}, 0.0)", (0,) * (2 * nd)
    call = (f"F.conv{nd}d({x}, {a[1]}, {bias}, {_tuple(strides)}, {_tuple(pads[:nd])}, {_tuple(dil)}, "
            f"{at['groups']})")
    if residual is not None:
        call = f"({call} + {residual})"
    return _activated(call, act)


@emits("max_pool", "avg_pool")
def _pool(n: Node, a: Sequence[str], at: dict[str, Any]) -> str:
    nd = len(at["kernel"])
    strides = at["strides"] or (1,) * nd  # the IR follows ONNX: stride 1 unless given
    pads = at["pads"] or (0,) * (2 * nd)
    x = a[0]
    torch_ok = _sym_pads(pads, nd) and all(2 * p <= k for p, k in zip(pads, at["kernel"]))
    if _MAX_POOL.of(n):
        if not torch_ok:
            x, pads = f"rt.pad_spatial({x}, {_tuple(pads)}, float('-inf'))", (0,) * (2 * nd)
        dil = at["dilations"] or (1,) * nd
        return (f"F.max_pool{nd}d({x}, {_tuple(at['kernel'])}, {_tuple(strides)}, {_tuple(pads[:nd])}, "
                f"{_tuple(dil)}, ceil_mode={at['ceil_mode']})")
    if not torch_ok:
        return (f"rt.avg_pool({x}, {_tuple(at['kernel'])}, {_tuple(strides)}, {_tuple(pads)}, {at['ceil_mode']}, "
                f"{at['count_include_pad']})")
    return (f"F.avg_pool{nd}d({x}, {_tuple(at['kernel'])}, {_tuple(strides)}, {_tuple(pads[:nd])}, "
            f"ceil_mode={at['ceil_mode']}, count_include_pad={at['count_include_pad']})")


@emits("conv_transpose")
def _conv_transpose(n: Node, a: Sequence[str], at: dict[str, Any]) -> str:
    nd = n.inputs[1].type.rank - 2
    strides = at["strides"] or (1,) * nd
    dil = at["dilations"] or (1,) * nd
    pads = at["pads"] or (0,) * (2 * nd)
    extra = at["output_padding"] or (0,) * nd
    bias = a[2] if len(a) > 2 else "None"
    if _sym_pads(pads, nd) and all(e < max(s, d) for e, s, d in zip(extra, strides, dil)):
        return (f"F.conv_transpose{nd}d({a[0]}, {a[1]}, {bias}, {_tuple(strides)}, {_tuple(pads[:nd])}, "
                f"{_tuple(extra)}, {at['groups']}, {_tuple(dil)})")
    return (f"rt.conv_transpose({a[0]}, {a[1]}, {bias}, {_tuple(strides)}, {_tuple(pads)}, {_tuple(extra)}, "
            f"{at['groups']}, {_tuple(dil)})")


_GRID_MODES = {"linear": "bilinear", "nearest": "nearest", "cubic": "bicubic"}
emits("grid_sample")(lambda n, a, at: f"F.grid_sample({a[0]}, {a[1]}, {_GRID_MODES[at['mode']]!r}, "
                                      f"{at['padding_mode']!r}, {at['align_corners']})")
emits("adaptive_avg_pool")(lambda n, a, at: f"F.adaptive_avg_pool{len(at['output_size'])}d({a[0]}, "
                                            f"{_tuple(at['output_size'])})")
emits("batch_norm")(lambda n, a, at: f"F.batch_norm({a[0]}, {a[3]}, {a[4]}, {a[1]}, {a[2]}, False, 0.0, "
                                     f"{at['eps']!r})")


def _norm_shape(n: Node, at: dict[str, Any], x: str) -> str:
    shape = n.inputs[0].type.shape
    ax = at["axis"] % len(shape)
    tail = shape[ax:]
    return _tuple(tail) if all(isinstance(d, int) for d in tail) else f"{x}.shape[{ax}:]"


@emits("layer_norm")
def _layer_norm(n: Node, a: Sequence[str], at: dict[str, Any]) -> str:
    w = a[1] if len(a) > 1 else "None"
    b = a[2] if len(a) > 2 else "None"
    return f"F.layer_norm({a[0]}, {_norm_shape(n, at, a[0])}, {w}, {b}, {at['eps']!r})"


@emits("rms_norm")
def _rms_norm(n: Node, a: Sequence[str], at: dict[str, Any]) -> str:
    w = a[1] if len(a) > 1 else "None"
    return f"F.rms_norm({a[0]}, {_norm_shape(n, at, a[0])}, {w}, {at['eps']!r})"


@emits("scaled_dot_product_attention")
def _sdpa(n: Node, a: Sequence[str], at: dict[str, Any]) -> str:
    shapes = [v.type.shape for v in n.inputs]
    masked = len(n.inputs) == 4
    eligible = not at["causal"] and n.inputs[0].type.dtype == DType.F32 and isinstance(shapes[0][-1], int) and (
        not masked or n.inputs[3].type.dtype in (DType.F32, DType.BOOL))
    if eligible:
        # the op's default scale is 1/sqrt(head size), as SDPA's; spelled out here (a None scale crashed the
        # generated code whenever the race picked the math kernel)
        scale = at["scale"] if at["scale"] is not None else 1.0 / math.sqrt(int(shapes[0][-1]))
        if not all(isinstance(d, int) for s in shapes for d in s):
            # sizes known only at run time (a dynamic batch or sequence): raced on the first call with each shape
            return f"rt.attention_auto({a[0]}, {a[1]}, {a[2]}, {a[3] if masked else 'None'}, {scale!r})"
        from .kernels import attention_math_wins

        mask_dtype = (n.inputs[3].type.dtype if masked else DType.F32).torch
        if attention_math_wins(*(tuple(s) for s in shapes[:3]), mask_shape=tuple(shapes[3]) if masked else None,
                               mask_dtype=mask_dtype):  # type: ignore[arg-type]
            if masked:  # a fully masked row must give 0: attention_math checks the mask and defers to SDPA then
                return f"rt.attention_math({a[0]}, {a[1]}, {a[2]}, {a[3]}, {scale!r})"
            # without a mask no row is fully masked, so the plain softmax is the op's exact semantics
            return f"torch.softmax(({a[0]} @ {a[1]}.transpose(-2, -1)) * {scale!r}, -1) @ {a[2]}"
    mask = a[3] if len(a) > 3 else "None"
    return (f"F.scaled_dot_product_attention({a[0]}, {a[1]}, {a[2]}, {mask}, is_causal={at['causal']}, "
            f"scale={at['scale']!r})")


emits("lstm")(lambda n, a, at: f"torch.lstm({a[0]}, ({a[1]}, {a[2]}), ({', '.join(a[3:7])}), True, 1, 0.0, "
                               f"False, False, {at['batch_first']})")
emits("quantized_lstm")(lambda n, a, at: f"rt.quantized_lstm({', '.join(a[:9])}, {at['batch_first']})")
emits("gru")(lambda n, a, at: f"torch.gru({a[0]}, {a[1]}, ({', '.join(a[2:6])}), True, 1, 0.0, False, False, "
                              f"{at['batch_first']})" if at["linear_before_reset"] else
             f"rt.gru_reset_first({', '.join(a[:6])}, {at['batch_first']})")
emits("rnn")(lambda n, a, at: f"torch.rnn_{at['nonlinearity']}({a[0]}, {a[1]}, ({', '.join(a[2:6])}), True, 1, 0.0, "
                              f"False, False, {at['batch_first']})")
emits("quantize_linear")(lambda n, a, at: f"rt.quantize_linear({a[0]}, {a[1]}, {a[2]}, {at['axis']})")
emits("dequantize_linear")(lambda n, a, at: f"rt.dequantize_linear({a[0]}, {a[1]}, {a[2]}, {at['axis']}"
                                            + (f", {at['block_size']})" if at["block_size"] else ")"))
emits("dynamic_quantize_linear")(lambda n, a, at: f"rt.dynamic_quantize_linear({a[0]}, {at['reduce_range']})")


def int8_rows_from(n: Node) -> int | None:
    """From how many rows this quantized_linear runs its int8 kernel (None: never), measured per shape here."""
    from .kernels import int8_linear_choice

    out_f, in_f = n.inputs[1].type.shape
    return int8_linear_choice(int(in_f), int(out_f), n.attrs["act_quant"], n.attrs["reduce_range"])[0]


def _constant_weights(n: Node) -> bool:
    return all(v.const is not None for v in n.inputs[1:3])


def int4_rows_until(n: Node) -> int | None:
    """Up to how many rows this group-wise (int4) quantized_linear runs its int4 kernel (None: never)."""
    from .kernels import int4_linear_choice

    out_f, in_f = n.inputs[1].type.shape
    return int4_linear_choice(int(in_f), int(out_f), n.attrs["group_size"])[0]


_ALL_ROWS = 256  # the largest row count the kernel choices measure: winning there, a kernel is used for any size


def _prepare_qlinear(n: Node) -> tuple[int, str] | None:
    if not _constant_weights(n):
        return None
    if n.attrs["group_size"]:
        until = int4_rows_until(n)
        f32 = "rt.dequantize_weight_groups({0}, {a[2]})"
        low = f"rt.prepack_int4_linear({{0}}, {{a[2]}}, {n.attrs['group_size']})"
        return 1, f32 if until is None else low if until >= _ALL_ROWS else f"({low}, {f32})"
    bias = "{a[3]}" if len(n.inputs) > 3 else "None"
    rows_from = int8_rows_from(n)
    f32 = "rt.dequantize_weight({0}, {a[2]})"  # where f32 wins here: the dequantized weight, made once
    if n.attrs["act_quant"] == "dynamic":
        from .kernels import int8_kernel

        out_f, in_f = n.inputs[1].type.shape
        kernel = int8_kernel(int(in_f), int(out_f), n.attrs["reduce_range"], n.attrs["activation"])
        low = f"rt.prepack_int8_linear({{0}}, {{a[2]}}, {bias}, {kernel!r})"
    elif n.attrs["act_quant"] == "static":  # the fixed-scale kernel is oneDNN's
        low = f"rt.prepack_int8_linear({{0}}, {{a[2]}}, {bias}, 'onednn')"
    else:
        low = "{0}.contiguous()"
    if rows_from is None:
        return 1, f32
    return 1, low if rows_from == 1 else f"({low}, {f32})"


PREPARE["quantized_linear"] = _prepare_qlinear


@emits("quantized_linear")
def _quantized_linear(n: Node, a: Sequence[str], at: dict[str, Any]) -> str:
    bias = a[3] if len(n.inputs) > 3 else "None"
    act = at["activation"]
    if not _constant_weights(n):  # weights computed at run time: the op's exact semantics, nothing prepared
        return (f"rt.quantized_linear_emulated({a[0]}, {a[1]}, {a[2]}, {bias}, {at['act_quant']!r}, "
                f"{at['reduce_range']}, {act!r}, {at['group_size']}, {at['x_scale']!r}, {at['x_zero_point']})")
    prepared = a[len(n.inputs)]
    if at["group_size"]:
        until = int4_rows_until(n)
        f32_call = _activated(f"F.linear({a[0]}, {{}}, {bias})", act)
        int4_call = f"rt.int4_linear_weight_only({a[0]}, {{}}, {bias}, {act!r})"
        if until is None:
            return f32_call.format(prepared)
        if until >= _ALL_ROWS:
            return int4_call.format(prepared)
        return (f"rt.by_rows({a[0]}, {until + 1}, lambda: {f32_call.format(prepared + '[1]')}, "
                f"lambda: {int4_call.format(prepared + '[0]')})")
    rows_from = int8_rows_from(n)

    def f32(weight: str) -> str:
        # f32 on the dequantized weight where that is faster here (activations stay f32: more accurate than the
        # int8 semantics it stands in for, and within the quantize pass's budget)
        return _activated(f"F.linear({a[0]}, {weight}, {bias})", act)

    def low(p: str) -> str:
        if at["act_quant"] == "dynamic":
            return f"rt.int8_linear_dynamic({a[0]}, {p}, {at['reduce_range']}, {act!r})"
        if at["act_quant"] == "static":
            qmax = 127 if at["reduce_range"] else 255
            return f"rt.int8_linear_static({a[0]}, {p}, {at['x_scale']!r}, {at['x_zero_point']}, {qmax}, {act!r})"
        return f"rt.int8_linear_weight_only({a[0]}, {p}, {a[2]}, {bias}, {act!r})"

    if rows_from is None:
        return f32(prepared)
    if rows_from == 1:
        return low(prepared)
    return f"rt.by_rows({a[0]}, {rows_from}, lambda: {low(prepared + '[0]')}, lambda: {f32(prepared + '[1]')})"


def _qconv_geometry(n: Node) -> tuple[list[int], list[int], list[int], int]:
    at = n.attrs
    return list(at["strides"]), list(at["pads"][:2]), list(at["dilations"]), at["groups"]


def _qconv_input_size(n: Node) -> list[int] | None:
    """The input shape a conv's kernel is measured and packed for (f32 and int8): a symbolic batch is taken as 1
    (the layout suits any batch; the speed is measured at 1); None where another dim is symbolic."""
    shape = n.inputs[0].type.shape
    if not all(isinstance(d, int) for d in shape[1:]):
        return None
    return [shape[0] if isinstance(shape[0], int) else 1, *shape[1:]]  # type: ignore[list-item]


def int8_conv_wins(n: Node) -> bool:
    """Whether this quantized_conv runs oneDNN's int8 kernel here (measured per shape), else f32 emulation."""
    from .kernels import int8_conv_choice

    size = _qconv_input_size(n)
    if n.inputs[1].const is None or size is None:
        return False
    strides, pads, dil, groups = _qconv_geometry(n)
    if list(n.attrs["pads"][:2]) != list(n.attrs["pads"][2:]) or n.inputs[1].type.rank != 4:
        return False
    return int8_conv_choice(tuple(size), tuple(n.inputs[1].type.shape), tuple(pads),  # type: ignore
                            tuple(strides), tuple(dil), groups, n.attrs["reduce_range"])[0]


def _prepare_qconv(n: Node) -> tuple[int, str] | None:
    if not int8_conv_wins(n):
        return None
    strides, pads, dil, groups = _qconv_geometry(n)
    return 1, (f"rt.prepack_int8_conv({{0}}, {{a[2]}}, float({{a[3]}}), int({{a[4]}}), {strides}, {pads}, {dil}, "
               f"{groups}, {_qconv_input_size(n)})")


PREPARE["quantized_conv"] = _prepare_qconv


@emits("quantized_conv")
def _quantized_conv(n: Node, a: Sequence[str], at: dict[str, Any]) -> str:
    strides, pads, dil, groups = _qconv_geometry(n)
    bias = a[5] if len(n.inputs) > 5 else "None"
    residual = a[6] if len(n.inputs) > 6 else "None"
    qmax = 127 if at["reduce_range"] else 255
    geometry = f"{strides}, {pads}, {dil}, {groups}, {qmax}, {at['activation']!r}"
    if at["out_scale"]:
        geometry += f", {at['out_scale']!r}, {at['out_zero_point']}"
    if int8_conv_wins(n):
        return f"rt.quantized_conv({a[0]}, {a[len(n.inputs)]}, {a[3]}, {a[4]}, {a[2]}, {bias}, {residual}, {geometry})"
    return f"rt.quantized_conv_emulated({a[0]}, {a[1]}, {a[2]}, {a[3]}, {a[4]}, {bias}, {residual}, {geometry})"


@emits("interpolate")
def _interpolate(n: Node, a: Sequence[str], at: dict[str, Any]) -> str:
    """torch's upsample kernel, or one GEMM per spatial axis where that measured faster for this static shape (a
    symbolic shape takes torch's kernel where it has one)."""
    from .kernels import resize_by_matrix
    from .runtime import has_native_resize

    x, out = n.inputs[0].type, n.outputs[0].type
    mode, align, scales = n.attrs["mode"], n.attrs["align_corners"], n.attrs["scales"]
    static = all(isinstance(d, int) for d in (*x.shape, *out.shape))
    if static and not DIFFERENTIABLE.get():
        matrix = resize_by_matrix(tuple(x.shape), tuple(out.shape[2:]), mode, align, scales, x.dtype.torch)
    else:
        matrix = not has_native_resize(mode, x.rank - 2)
    fn = "rt.interpolate_matrix" if matrix else "rt.interpolate_native"
    return f"{fn}({a[0]}, {_tuple(at['sizes'])}, {mode!r}, {align}, {scales!r})"
