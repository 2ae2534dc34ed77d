"""Reductions and ops along an axis: sum/mean/max/min/prod, argmax/argmin, var, softmax, cumsum, topk."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..dtypes import DType
from ..types import TensorType
from .registry import Attr, ConcreteType, ShapeError, register_op
from .shapes import compute_dtype, norm_axes, norm_axis, tt
from .traits import I, O, Tie, Trait, tie

_SENSITIVE = [Trait.PRECISION_SENSITIVE]


def _kept_flow(axes_of: Callable[[Mapping[str, Any], int], tuple[int, ...]]) -> Callable[..., list[Tie]]:
    """Reductions: the axes not reduced reach the output (shifted down when keepdims is false)."""

    def flow(ins: Any, outs: Any, attrs: Mapping[str, Any]) -> list[Tie]:
        rank = ins[0].rank
        reduced = axes_of(attrs, rank)
        kept = [k for k in range(rank) if k not in reduced]
        if attrs["keepdims"]:
            return [tie(O(0, k), I(0, k)) for k in kept]
        return [tie(O(0, j), I(0, k)) for j, k in enumerate(kept)]

    return flow


_reduced_axes = _kept_flow(lambda a, r: norm_axes(a["axes"], r))

_AXES = {"axes": Attr("ints", None, optional=True), "keepdims": Attr("bool", False)}


def _reduced_shape(t: TensorType, axes: tuple[int, ...] | None, keepdims: bool) -> tuple[Any, ...]:
    ax = norm_axes(axes, t.rank)
    if keepdims:
        return tuple(1 if i in ax else d for i, d in enumerate(t.shape))
    return tuple(d for i, d in enumerate(t.shape) if i not in ax)


def _in_elems(i: list[ConcreteType], o: list[ConcreteType], a: Mapping[str, Any]) -> int:
    return i[0].numel


def _accum_dtype(dt: DType) -> DType:
    """torch.sum/prod/cumsum promote bool and integers to i64; u16/u32/u64, which torch promotes with nothing
    signed, accumulate in u64."""
    return dt if dt.is_float else DType.U64 if dt.is_wide_unsigned else DType.I64


def _reduction(name: str, fn: Callable[..., Any], result: str, doc: str) -> None:
    """result: 'accum' (ints -> i64), 'same' (keep dtype), 'float' (floating point inputs only)."""

    def out_dtype(dt: DType) -> DType:
        if result == "accum":
            return _accum_dtype(dt)
        if result == "float" and not dt.is_float:
            raise ShapeError(f"{name} needs a floating point input, got {dt}")
        return dt

    def infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
        t = types[0]
        return tt(out_dtype(t.dtype), _reduced_shape(t, attrs["axes"], attrs["keepdims"]))

    def kernel(x: np.ndarray, *, axes: tuple[int, ...] | None, keepdims: bool) -> np.ndarray:
        dt = out_dtype(DType.from_numpy(x.dtype))
        ax = norm_axes(axes, x.ndim)
        y = fn(x.astype(compute_dtype(dt).numpy, copy=False), axis=ax, keepdims=keepdims)
        return np.asarray(y).astype(dt.numpy, copy=False)

    register_op(name, inputs=["x"], infer=infer, attrs=_AXES, flops=_in_elems, doc=doc,
                traits=([] if name in ("reduce_max", "reduce_min") else _SENSITIVE)
                + ([Trait.FLOAT_COMPUTE] if result == "float" else []), dim_flow=_reduced_axes)(kernel)


_reduction("reduce_sum", np.sum, "accum", "sum over axes (all if none); integers accumulate in i64")
_reduction("reduce_prod", np.prod, "accum", "product over axes")
_reduction("reduce_mean", np.mean, "float", "mean over axes")
def _extreme(fn: Callable[..., Any], low: bool) -> Callable[..., Any]:
    """np.max/np.min, with an empty reduction giving the identity (-inf/+inf, or the dtype's extreme) as in ONNX."""

    def reduce(x: np.ndarray, axis: Any, keepdims: bool) -> np.ndarray:
        if x.size:
            return fn(x, axis=axis, keepdims=keepdims)
        if x.dtype == np.bool_:
            ident: Any = low
        elif x.dtype.kind == "f":
            ident = np.inf if low else -np.inf
        else:
            ident = np.iinfo(x.dtype).max if low else np.iinfo(x.dtype).min
        return fn(x, axis=axis, keepdims=keepdims, initial=ident)

    return reduce


_reduction("reduce_max", _extreme(np.max, False), "same", "max over axes, NaN-propagating (-inf when empty)")
_reduction("reduce_min", _extreme(np.min, True), "same", "min over axes, NaN-propagating (+inf when empty)")


def _arg_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    return tt(DType.I64, _reduced_shape(types[0], (attrs["axis"],), attrs["keepdims"]))


def _arg(name: str, fn: Callable[..., Any]) -> None:
    def kernel(x: np.ndarray, *, axis: int, keepdims: bool) -> np.ndarray:
        return fn(x, axis=norm_axis(axis, x.ndim), keepdims=keepdims).astype(np.int64)

    register_op(name, inputs=["x"], infer=_arg_infer, flops=_in_elems,
                dim_flow=_kept_flow(lambda a, r: (norm_axis(a["axis"], r),)),
                attrs={"axis": Attr("int"), "keepdims": Attr("bool", False)},
                doc=f"index of the {name[3:]} along axis (first one on ties; NaN counts as largest)")(kernel)


_arg("argmax", np.argmax)
_arg("argmin", np.argmin)


@register_op("var", inputs=["x"], flops=lambda i, o, a: 3 * i[0].numel, traits=[*_SENSITIVE, Trait.FLOAT_COMPUTE],
             dim_flow=_reduced_axes,
             attrs={**_AXES, "correction": Attr("float", 1.0)},
             infer=lambda t, a: tt(t[0].dtype, _reduced_shape(t[0], a["axes"], a["keepdims"])))
def _var(x: np.ndarray, *, axes: tuple[int, ...] | None, keepdims: bool, correction: float) -> np.ndarray:
    """Variance over axes with Bessel-style `correction` (torch.var)."""
    cdt = compute_dtype(DType.from_numpy(x.dtype)).numpy
    y = np.var(x.astype(cdt, copy=False), axis=norm_axes(axes, x.ndim), keepdims=keepdims, ddof=correction)
    return np.asarray(y).astype(x.dtype, copy=False)


def _softmax_kernel(log: bool) -> Callable[..., np.ndarray]:
    def kernel(x: np.ndarray, *, axis: int) -> np.ndarray:
        cdt = compute_dtype(DType.from_numpy(x.dtype)).numpy
        z = x.astype(cdt, copy=False)
        with np.errstate(all="ignore"):
            z = z - np.max(z, axis=axis, keepdims=True)
            lse = np.log(np.sum(np.exp(z), axis=axis, keepdims=True))
            y = z - lse if log else np.exp(z - lse)
        return y.astype(x.dtype, copy=False)

    return kernel


def _float_same(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    if not types[0].dtype.is_float:
        raise ShapeError(f"needs a floating point input, got {types[0].dtype}")
    norm_axis(attrs["axis"], types[0].rank)
    return types[0]


def along_axis_flow(ins: Any, outs: Any, attrs: Mapping[str, Any]) -> list[Tie]:
    """Ops along one axis (softmax, cumsum): the other axes are shared; the axis itself is too, but removing one of
    its elements changes the others (lossy)."""
    ax = norm_axis(attrs["axis"], ins[0].rank)
    return [tie(O(0, k), I(0, k), exact=k != ax) for k in range(ins[0].rank)]


register_op("softmax", inputs=["x"], attrs={"axis": Attr("int", -1)}, infer=_float_same, traits=[*_SENSITIVE, Trait.FLOAT_COMPUTE],
            dim_flow=along_axis_flow,
            flops=lambda i, o, a: 5 * i[0].numel, doc="exp(x) / sum(exp(x)) along axis")(_softmax_kernel(False))
register_op("log_softmax", inputs=["x"], attrs={"axis": Attr("int", -1)}, infer=_float_same, traits=[*_SENSITIVE, Trait.FLOAT_COMPUTE],
            dim_flow=along_axis_flow,
            flops=lambda i, o, a: 5 * i[0].numel, doc="log(softmax(x)) along axis")(_softmax_kernel(True))


@register_op("cumsum", inputs=["x"], attrs={"axis": Attr("int")}, flops=_in_elems, traits=_SENSITIVE,
             dim_flow=along_axis_flow,
             infer=lambda t, a: t[0].with_dtype(_accum_dtype(t[0].dtype)))
def _cumsum(x: np.ndarray, *, axis: int) -> np.ndarray:
    """Running sum along axis; integers accumulate in i64."""
    dt = _accum_dtype(DType.from_numpy(x.dtype))
    return np.cumsum(x.astype(compute_dtype(dt).numpy), axis=axis).astype(dt.numpy, copy=False)


@register_op("cumprod", inputs=["x"], attrs={"axis": Attr("int")}, flops=_in_elems,
             infer=lambda t, a: t[0])
def _cumprod(x: np.ndarray, *, axis: int) -> np.ndarray:
    """Running product along axis, in x's dtype (integers wrap)."""
    return np.cumprod(x.astype(compute_dtype(DType.from_numpy(x.dtype)).numpy, copy=False), axis=axis,
                      dtype=None if x.dtype.kind == "f" else x.dtype).astype(x.dtype, copy=False)


def _topk_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    t = types[0]
    ax = norm_axis(attrs["axis"], t.rank)
    dim = t.shape[ax]
    if isinstance(dim, int) and attrs["k"] > dim:
        raise ShapeError(f"k={attrs['k']} is larger than dim {ax} ({dim})")
    shape = tuple(attrs["k"] if i == ax else d for i, d in enumerate(t.shape))
    return [tt(t.dtype, shape), tt(DType.I64, shape)]


@register_op("topk", inputs=["x"], outputs=["values", "indices"], infer=_topk_infer, flops=_in_elems,
             attrs={"k": Attr("int"), "axis": Attr("int", -1), "largest": Attr("bool", True),
                    "sorted": Attr("bool", True)})
def _topk(x: np.ndarray, *, k: int, axis: int, largest: bool, sorted: bool) -> tuple[np.ndarray, np.ndarray]:
    """The k largest (or smallest) values along axis and their indices."""
    key = -x.astype(np.float64) if largest else x
    idx = np.argsort(key, axis=axis, kind="stable")
    idx = np.take(idx, np.arange(k), axis=axis)
    return np.take_along_axis(x, idx, axis=axis), idx.astype(np.int64)

