"""Elementwise ops: arithmetic, comparisons, logic, activations, casts.

Kernels follow PyTorch's CPU semantics: torch.result_type promotion, integer division modes, half types
computed in f32 and rounded once, NaN propagating through max/min/relu/clamp.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from ..lazy import lazy_module
from ..dtypes import DType, promote
from ..types import TensorType
from .registry import Attr, ConcreteType, ShapeError, register_op, same_as_input
from .traits import Trait, elementwise_flow
from .shapes import broadcast, compute_dtype, tt

special = lazy_module("scipy.special")

_F32 = DType.F32
_EW, _SCALE, _FLOAT = Trait.ELEMENTWISE, Trait.SCALE_TRANSPARENT, Trait.FLOAT_COMPUTE


def _dt(a: np.ndarray) -> DType:
    return DType.from_numpy(a.dtype)


def _per_elem(k: int) -> Callable[[list[ConcreteType], list[ConcreteType], Mapping[str, Any]], int]:
    return lambda i, o, a: k * o[0].numel


# -- binary ops ------------------------------------------------------------------------------------------
# result: "promote" keeps the promoted dtype, "bool" returns bool, "float" turns int results into f32.


def _binary_dtypes(dtypes: list[DType], ranks: list[int], result: str) -> tuple[DType, DType]:
    """(dtype the operands are computed in, dtype of the result) for a binary op of kind `result`."""
    dt = promote(dtypes, ranks)
    if result == "float" and not dt.is_float:
        dt = _F32
    return dt, DType.BOOL if result == "bool" else dt


def _binary_infer(result: str) -> Callable[[list[TensorType], Mapping[str, Any]], TensorType]:
    def infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
        shape = broadcast(types[0].shape, types[1].shape)
        _, out = _binary_dtypes([t.dtype for t in types], [t.rank for t in types], result)
        return tt(out, shape)

    return infer


def _binary(name: str, fn: Callable[..., Any], result: str = "promote", commutative: bool = False,
            cost: int = 1, doc: str = "") -> None:
    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        dt, out = _binary_dtypes([_dt(a), _dt(b)], [a.ndim, b.ndim], result)
        cdt = compute_dtype(dt).numpy
        with np.errstate(all="ignore"):  # torch neither warns on overflow nor on 0/0
            y = fn(a.astype(cdt, copy=False), b.astype(cdt, copy=False))
        return np.asarray(y).astype(out.numpy, copy=False)

    register_op(name, inputs=["a", "b"], infer=_binary_infer(result), flops=_per_elem(cost), doc=doc,
                commutative=commutative, traits=[_EW], dim_flow=elementwise_flow)(kernel)


_binary("add", np.add, commutative=True, doc="a + b with broadcasting")
_binary("sub", np.subtract, doc="a - b")
_binary("mul", np.multiply, commutative=True, doc="a * b")
_binary("pow", np.power, cost=8, doc="a ** b")
_binary("maximum", np.maximum, commutative=True, doc="elementwise max, NaN-propagating")
_binary("minimum", np.minimum, commutative=True, doc="elementwise min, NaN-propagating")
_binary("fmod", np.fmod, doc="C fmod: remainder with the sign of a (torch.fmod)")
_binary("remainder", np.mod, doc="Python-style remainder with the sign of b (torch.remainder)")
_binary("eq", np.equal, "bool", commutative=True, doc="a == b")
_binary("ne", np.not_equal, "bool", commutative=True, doc="a != b")
_binary("lt", np.less, "bool", doc="a < b")
_binary("le", np.less_equal, "bool", doc="a <= b")
_binary("gt", np.greater, "bool", doc="a > b")
_binary("ge", np.greater_equal, "bool", doc="a >= b")
_binary("logical_and", np.logical_and, "bool", commutative=True, doc="a and b (nonzero is true)")
_binary("logical_or", np.logical_or, "bool", commutative=True, doc="a or b")
_binary("logical_xor", np.logical_xor, "bool", commutative=True, doc="a xor b")


def _div_kind(rounding_mode: str) -> str:
    """True division turns integers into f32; trunc and floor keep the promoted dtype."""
    return "float" if rounding_mode == "none" else "promote"


def _div_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    return _binary_infer(_div_kind(attrs["rounding_mode"]))(types, attrs)


@register_op("div", inputs=["a", "b"], infer=_div_infer, flops=_per_elem(1), traits=[_EW], dim_flow=elementwise_flow,
             attrs={"rounding_mode": Attr("str", "none", choices=("none", "trunc", "floor"))})
def _div(a: np.ndarray, b: np.ndarray, *, rounding_mode: str) -> np.ndarray:
    """a / b; rounding_mode trunc or floor keeps integer dtypes (torch.div)."""
    dt, _ = _binary_dtypes([_dt(a), _dt(b)], [a.ndim, b.ndim], _div_kind(rounding_mode))
    cdt = compute_dtype(dt).numpy
    a, b = a.astype(cdt, copy=False), b.astype(cdt, copy=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        if rounding_mode == "none":
            y = np.true_divide(a, b)
        elif dt.is_float:
            y = np.trunc(np.true_divide(a, b)) if rounding_mode == "trunc" else np.floor_divide(a, b)
        else:
            if np.any(b == 0):
                raise ZeroDivisionError("integer division by zero")
            q = np.floor_divide(a, b)
            if rounding_mode == "trunc":  # floor rounds toward -inf; trunc toward zero
                q = q + ((np.remainder(a, b) != 0) & ((a < 0) != (b < 0)))
            y = q
    return np.asarray(y).astype(dt.numpy, copy=False)


@register_op("where", inputs=["cond", "a", "b"], flops=_per_elem(1), traits=[_EW], dim_flow=elementwise_flow,
             infer=lambda t, a: tt(promote([t[1].dtype, t[2].dtype], [t[1].rank, t[2].rank]),
                                   broadcast(t[0].shape, t[1].shape, t[2].shape)))
def _where(cond: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a where cond else b."""
    dt = promote([_dt(a), _dt(b)], [a.ndim, b.ndim]).numpy
    return np.where(cond.astype(bool), a.astype(dt, copy=False), b.astype(dt, copy=False))


# -- unary ops -------------------------------------------------------------------------------------------
def _float_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    t = types[0]
    return t if t.dtype.is_float else t.with_dtype(_F32)


def _bool_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    return types[0].with_dtype(DType.BOOL)


def _unary(name: str, fn: Callable[..., Any], to_float: bool = True, cost: int = 1, doc: str = "",
           attrs: Mapping[str, Attr] | None = None, result: str = "", numeric: bool = False,
           scale: bool = False) -> None:
    """`to_float`: integer inputs give f32 (torch.exp(int) is float); `result='bool'` for predicates;
    `numeric`: bool inputs are a type error (torch and numpy define no negative or sign of a bool);
    `scale`: f(c·x) = c·f(x) for c > 0 (Trait.SCALE_TRANSPARENT)."""

    def kernel(x: np.ndarray, **kw: Any) -> np.ndarray:
        dt = _dt(x)
        out = _F32 if to_float and not dt.is_float else dt
        cdt = compute_dtype(out).numpy
        with np.errstate(all="ignore"):
            y = np.asarray(fn(x.astype(cdt, copy=False), **kw))
        return y.astype(DType.BOOL.numpy if result == "bool" else out.numpy, copy=False)

    infer = _bool_infer if result == "bool" else _float_infer if to_float else same_as_input
    if numeric:
        infer = _numeric(infer, name)
    traits = [_EW] + ([_SCALE] if scale else []) + ([_FLOAT] if to_float and result != "bool" else [])
    register_op(name, inputs=["x"], infer=infer, flops=_per_elem(cost), doc=doc, attrs=attrs, traits=traits,
                dim_flow=elementwise_flow)(kernel)


def _numeric(infer: Callable[..., Any], name: str) -> Callable[..., Any]:
    def checked(types: list[TensorType], attrs: Mapping[str, Any]) -> Any:
        if types[0].dtype == DType.BOOL:
            raise ShapeError(f"{name} is not defined for bool; use logical_not")
        return infer(types, attrs)

    return checked


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return special.expit(x)


def _gelu(x: np.ndarray, approximate: str) -> np.ndarray:
    if approximate == "tanh":
        c = np.sqrt(2.0 / np.pi).astype(x.dtype)
        return 0.5 * x * (1.0 + np.tanh(c * (x + 0.044715 * x * x * x)))
    # + 0.0: torch's erf GELU gives +0.0 at x = -0.0 (its tanh form keeps -0.0); found by `graphopt fuzz`
    return 0.5 * x * (1.0 + special.erf(x / np.sqrt(2.0).astype(x.dtype))) + 0.0


def _softplus(x: np.ndarray, beta: float, threshold: float) -> np.ndarray:
    bx = x * beta
    return np.where(bx > threshold, x, np.log1p(np.exp(bx)) / beta)


_unary("neg", np.negative, to_float=False, doc="-x", numeric=True, scale=True)
_unary("abs", np.abs, to_float=False, doc="|x|", scale=True)
_unary("sign", np.sign, to_float=False, numeric=True, doc="-1, 0 or 1 (0 for NaN inputs is not guaranteed)")
_unary("relu", lambda x: np.where(x < 0, np.zeros((), x.dtype), x), to_float=False,
       doc="max(x, 0), NaN-propagating", scale=True)
_unary("exp", np.exp, cost=4, doc="e ** x")
_unary("log", np.log, cost=4, doc="natural logarithm")
_unary("log1p", np.log1p, cost=4, doc="log(1 + x)")
_unary("expm1", np.expm1, cost=4, doc="exp(x) - 1, exact near 0")
_unary("sqrt", np.sqrt, cost=4, doc="square root")
_unary("rsqrt", lambda x: 1 / np.sqrt(x), cost=4, doc="1 / sqrt(x)")
_unary("reciprocal", lambda x: 1 / x, doc="1 / x")
_unary("sin", np.sin, cost=4, doc="sine")
_unary("cos", np.cos, cost=4, doc="cosine")
_unary("tanh", np.tanh, cost=4, doc="hyperbolic tangent")
_unary("tan", np.tan, cost=4, doc="tangent")
_unary("asin", np.arcsin, cost=4, doc="arcsine")
_unary("acos", np.arccos, cost=4, doc="arccosine")
_unary("atan", np.arctan, cost=4, doc="arctangent")
_unary("sinh", np.sinh, cost=4, doc="hyperbolic sine")
_unary("cosh", np.cosh, cost=4, doc="hyperbolic cosine")
_unary("asinh", np.arcsinh, cost=4, doc="inverse hyperbolic sine")
_unary("acosh", np.arccosh, cost=4, doc="inverse hyperbolic cosine")
_unary("atanh", np.arctanh, cost=4, doc="inverse hyperbolic tangent")
_unary("erf", lambda x: special.erf(x), cost=8, doc="Gauss error function")  # (looked up at call: scipy loads lazily)
_unary("sigmoid", _sigmoid, cost=4, doc="1 / (1 + exp(-x))")
_unary("silu", lambda x: x * _sigmoid(x), cost=5, doc="x * sigmoid(x)")
_unary("gelu", _gelu, cost=8, doc="Gaussian error linear unit (erf or tanh form)",
       attrs={"approximate": Attr("str", "none", choices=("none", "tanh"))})
_unary("softplus", _softplus, cost=6, doc="log(1 + exp(beta x)) / beta, linear above threshold",
       attrs={"beta": Attr("float", 1.0), "threshold": Attr("float", 20.0)})
_unary("elu", lambda x, alpha: np.where(x > 0, x, alpha * np.expm1(x)), cost=4, doc="exponential linear unit",
       attrs={"alpha": Attr("float", 1.0)})
_unary("leaky_relu", lambda x, negative_slope: np.where(x > 0, x, x * negative_slope), doc="leaky ReLU",
       attrs={"negative_slope": Attr("float", 0.01)}, scale=True)
_unary("hardsigmoid", lambda x: np.clip(x / 6 + 0.5, 0, 1), doc="clamp(x/6 + 1/2, 0, 1)")
_unary("hardswish", lambda x: x * np.clip(x + 3, 0, 6) / 6, doc="x * relu6(x + 3) / 6")
_unary("floor", np.floor, to_float=False, doc="round toward -inf")
_unary("ceil", np.ceil, to_float=False, doc="round toward +inf")
_unary("round", np.round, to_float=False, doc="round half to even")
_unary("trunc", np.trunc, to_float=False, doc="round toward zero")
_unary("isnan", np.isnan, to_float=False, result="bool", doc="x is NaN")
_unary("isinf", np.isinf, to_float=False, result="bool", doc="x is +-inf")
_unary("logical_not", np.logical_not, to_float=False, result="bool", doc="not x (zero is false)")


@register_op("clamp", inputs=["x"], infer=same_as_input, flops=_per_elem(2), traits=[_EW], dim_flow=elementwise_flow,
             attrs={"min": Attr("float", None, optional=True), "max": Attr("float", None, optional=True)})
def _clamp(x: np.ndarray, *, min: float | None, max: float | None) -> np.ndarray:
    """Clamp into [min, max]; either bound may be absent. NaN stays NaN."""
    cdt = compute_dtype(_dt(x)).numpy
    y = x.astype(cdt, copy=False)
    if min is not None:
        y = np.where(y < min, np.asarray(min).astype(cdt), y)
    if max is not None:
        y = np.where(y > max, np.asarray(max).astype(cdt), y)
    return y.astype(x.dtype, copy=False)


@register_op("cast", inputs=["x"], attrs={"dtype": Attr("dtype")}, flops=_per_elem(0), traits=[_EW],
             dim_flow=elementwise_flow,
             infer=lambda t, a: t[0].with_dtype(a["dtype"]))
def _cast(x: np.ndarray, *, dtype: DType) -> np.ndarray:
    """Convert to dtype; floats to integers truncate toward zero (Tensor.to)."""
    if dtype == DType.BOOL:
        return x != 0
    with np.errstate(invalid="ignore"):
        return x.astype(dtype.numpy)


@register_op("identity", inputs=["x"], infer=same_as_input, traits=[_EW, _SCALE], dim_flow=elementwise_flow)
def _identity(x: np.ndarray) -> np.ndarray:
    """x, unchanged."""
    return x


@register_op("dropout", inputs=["x"], infer=same_as_input, attrs={"p": Attr("float", 0.5)}, traits=[_EW, _SCALE],
             dim_flow=elementwise_flow)
def _dropout(x: np.ndarray, *, p: float) -> np.ndarray:
    """Dropout at inference: the identity (graphs are for inference)."""
    return x
