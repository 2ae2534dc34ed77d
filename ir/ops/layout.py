"""Shape and data-movement ops: reshape, transpose, expand, concat, split, slice, gather, pad, generators.

Dims in attributes (`shape`, `ends`, ...) may be symbols; the interpreter binds them to sizes before it calls
a kernel, so kernels only ever see ints.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..dtypes import DType
from ..symbolic import dim_add, dim_ceildiv, dim_mul, dim_sub, is_symbol
from ..types import Dim, TensorType
from .registry import Attr, ConcreteType, ShapeError, register_op
from .shapes import broadcast, norm_axes, norm_axis, reshape_dims, tt
from .traits import AxisRef, I, O, Tie, Trait, tie

_LAYOUT, _SCALE = Trait.LAYOUT, Trait.SCALE_TRANSPARENT
_VIEW = (_LAYOUT, _SCALE)  # moving elements commutes with scaling them

#: The end bound of a slice "to the end", as torch.export and ONNX spell it (any end at or above it means the end).
SLICE_END = 2**62



def _moved(i: list[ConcreteType], o: list[ConcreteType], a: Mapping[str, Any]) -> int:
    return 0


def _reshape_flow(ins: Any, outs: Any, attrs: Mapping[str, Any]) -> list[Tie]:
    """Axis runs whose sizes agree tie one to one; runs that split or merge (heads out of a hidden dim) tie as a
    block. Stops at the first run it cannot match (a symbolic dim inside a merge)."""
    a, b = ins[0].shape, outs[0].shape
    ties: list[Tie] = []
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            ties.append(tie(O(0, j), I(0, i)))
            i, j = i + 1, j + 1
            continue
        if a[i] == 1 or b[j] == 1:  # a unit axis appears or vanishes
            i, j = (i + 1, j) if a[i] == 1 else (i, j + 1)
            continue
        ii, jj, pa, pb = i + 1, j + 1, a[i], b[j]
        while pa != pb:
            if not isinstance(pa, int) or not isinstance(pb, int):
                return ties
            if pa < pb and ii < len(a) and isinstance(a[ii], int):
                pa, ii = pa * a[ii], ii + 1
            elif pb < pa and jj < len(b) and isinstance(b[jj], int):
                pb, jj = pb * b[jj], jj + 1
            else:
                return ties
        ties.append(tie([O(0, k) for k in range(j, jj)], [I(0, k) for k in range(i, ii)]))
        i, j = ii, jj
    return ties


def _removed_on(removed: Mapping[Any, Any], side: str, index: int, axis: int) -> int:
    """How many indices structured pruning removes from one axis (see `register_op`'s `resize`)."""
    return len(removed.get(AxisRef(side, index, axis), ()))


def _resize_target(ins: Any, outs: Any, attrs: Mapping[str, Any], removed: Mapping[Any, Any]) -> dict[str, Any]:
    """reshape and expand: each target entry of an output axis that shrinks becomes the new size (a -1, or an
    expand's 1 that keeps the input's size, already follows the input)."""
    shape, out = list(attrs["shape"]), outs[0]
    lead = out.rank - len(shape)
    for ax in range(out.rank):
        n = _removed_on(removed, "out", 0, ax)
        if n and ax >= lead and shape[ax - lead] not in (-1, 1):
            if not isinstance(out.shape[ax], int):
                raise ValueError(f"output axis {ax} is symbolic ({out.shape[ax]})")
            shape[ax - lead] = out.shape[ax] - n
    return {"shape": tuple(shape)}


@register_op("reshape", inputs=["x"], attrs={"shape": Attr("dims")}, flops=_moved, traits=_VIEW,
             dim_flow=_reshape_flow, resize=_resize_target,
             infer=lambda t, a: t[0].with_shape(reshape_dims(t[0].shape, a["shape"])))
def _reshape(x: np.ndarray, *, shape: tuple[int, ...]) -> np.ndarray:
    """View x with a new shape; one dim may be -1."""
    return np.reshape(x, shape)


def _transpose_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    t, perm = types[0], attrs["perm"]
    if sorted(perm) != list(range(t.rank)):
        raise ShapeError(f"perm {list(perm)} is not a permutation of 0..{t.rank - 1}")
    return t.with_shape([t.shape[p] for p in perm])


@register_op("transpose", inputs=["x"], attrs={"perm": Attr("ints")}, infer=_transpose_infer, flops=_moved,
             traits=_VIEW, dim_flow=lambda i, o, a: [tie(O(0, k), I(0, p)) for k, p in enumerate(a["perm"])])
def _transpose(x: np.ndarray, *, perm: tuple[int, ...]) -> np.ndarray:
    """Permute dims: y.shape[i] = x.shape[perm[i]]."""
    return np.transpose(x, perm)


@register_op("expand", inputs=["x"], attrs={"shape": Attr("dims")}, flops=_moved, traits=_VIEW,
             dim_flow=lambda i, o, a: [tie(O(0, k + o[0].rank - i[0].rank), I(0, k)) for k, d in enumerate(i[0].shape)
                                       if d == o[0].shape[k + o[0].rank - i[0].rank]], resize=_resize_target,
             infer=lambda t, a: t[0].with_shape(broadcast(t[0].shape, a["shape"])))
def _expand(x: np.ndarray, *, shape: tuple[int, ...]) -> np.ndarray:
    """Broadcast x against shape (ONNX Expand; torch expand with the -1s spelled out)."""
    return np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(shape)))


def _squeeze_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    t = types[0]
    axes = attrs["axes"]
    ax = norm_axes(axes, t.rank) if axes is not None else tuple(i for i, d in enumerate(t.shape) if d == 1)
    for a in ax:
        if t.shape[a] != 1:
            raise ShapeError(f"cannot squeeze axis {a} of size {t.shape[a]}")
    return t.with_shape([d for i, d in enumerate(t.shape) if i not in ax])


def _kept_axes_flow(ins: Any, outs: Any, attrs: Mapping[str, Any]) -> list[Tie]:
    """Squeeze and unsqueeze: the axes that are not unit axes, in order."""
    src = [k for k, d in enumerate(ins[0].shape) if d != 1]
    dst = [k for k, d in enumerate(outs[0].shape) if d != 1]
    return [tie(O(0, o), I(0, i)) for i, o in zip(src, dst)]


@register_op("squeeze", inputs=["x"], attrs={"axes": Attr("ints", None, optional=True)}, infer=_squeeze_infer,
             flops=_moved, traits=_VIEW, dim_flow=_kept_axes_flow)
def _squeeze(x: np.ndarray, *, axes: tuple[int, ...] | None) -> np.ndarray:
    """Drop size-1 axes (all of them if axes is none)."""
    return np.squeeze(x, axis=None if axes is None else tuple(axes))


def _unsqueeze_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    t = types[0]
    rank = t.rank + len(attrs["axes"])
    ax = norm_axes(attrs["axes"], rank)
    dims = iter(t.shape)
    return t.with_shape([1 if i in ax else next(dims) for i in range(rank)])


@register_op("unsqueeze", inputs=["x"], attrs={"axes": Attr("ints")}, infer=_unsqueeze_infer, flops=_moved,
             traits=_VIEW, dim_flow=_kept_axes_flow)
def _unsqueeze(x: np.ndarray, *, axes: tuple[int, ...]) -> np.ndarray:
    """Insert size-1 axes at the given positions of the output."""
    return np.expand_dims(x, norm_axes(axes, x.ndim + len(axes)))


def _concat_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    first = types[0]
    ax = norm_axis(attrs["axis"], first.rank)
    total: Dim = 0
    for t in types:
        if t.rank != first.rank:
            raise ShapeError(f"concat inputs have ranks {[u.rank for u in types]}")
        for i, (a, b) in enumerate(zip(t.shape, first.shape)):
            if i != ax and a != b:
                raise ShapeError(f"concat inputs differ in dim {i}: {a} vs {b}")
        total = dim_add(total, t.shape[ax])
    dtype = first.dtype
    if any(t.dtype != dtype for t in types):
        raise ShapeError(f"concat inputs have different dtypes {[str(t.dtype) for t in types]}")
    return first.with_shape([total if i == ax else d for i, d in enumerate(first.shape)])


def _concat_flow(ins: Any, outs: Any, attrs: Mapping[str, Any]) -> list[Tie]:
    """Each input's concat axis is a window of the output's; every other axis is shared."""
    ax = norm_axis(attrs["axis"], outs[0].rank)
    ties: list[Tie] = []
    offset: int | None = 0
    for i, t in enumerate(ins):
        ties += [tie(O(0, k), I(i, k)) for k in range(t.rank) if k != ax]
        if offset is not None:
            ties.append(tie(O(0, ax), I(i, ax), offset=offset))
        offset = offset + t.shape[ax] if offset is not None and isinstance(t.shape[ax], int) else None
    return ties


@register_op("concat", inputs=["xs*"], attrs={"axis": Attr("int")}, infer=_concat_infer, flops=_moved, traits=_VIEW,
             dim_flow=_concat_flow)
def _concat(*xs: np.ndarray, axis: int) -> np.ndarray:
    """Join tensors along axis."""
    return np.concatenate(xs, axis=axis)


def _split_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
    t = types[0]
    ax = norm_axis(attrs["axis"], t.rank)
    sizes = attrs["sizes"]
    if isinstance(t.shape[ax], int) and sum(sizes) != t.shape[ax]:
        raise ShapeError(f"split sizes {list(sizes)} do not add up to dim {ax} ({t.shape[ax]})")
    return [t.with_shape([s if i == ax else d for i, d in enumerate(t.shape)]) for s in sizes]


def _split_flow(ins: Any, outs: Any, attrs: Mapping[str, Any]) -> list[Tie]:
    ax = norm_axis(attrs["axis"], ins[0].rank)
    ties, offset = [], 0
    for k, size in enumerate(attrs["sizes"]):
        ties += [tie(O(k, a), I(0, a)) for a in range(ins[0].rank) if a != ax]
        ties.append(tie(I(0, ax), O(k, ax), offset=offset))
        offset += size
    return ties


def _split_resize(ins: Any, outs: Any, attrs: Mapping[str, Any], removed: Mapping[Any, Any]) -> dict[str, Any]:
    ax = norm_axis(attrs["axis"], ins[0].rank)
    sizes = tuple(s - _removed_on(removed, "out", k, ax) for k, s in enumerate(attrs["sizes"]))
    if min(sizes) <= 0:
        raise ValueError("a piece of the split would be empty")
    return {"sizes": sizes}


@register_op("split", inputs=["x"], outputs=["ys*"], attrs={"axis": Attr("int"), "sizes": Attr("ints")},
             infer=_split_infer, flops=_moved, variadic_outputs=lambda a, n: len(a["sizes"]), traits=_VIEW,
             dim_flow=_split_flow, resize=_split_resize)
def _split(x: np.ndarray, *, axis: int, sizes: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """Cut x along axis into pieces of the given sizes (one output each)."""
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


def _slice_len(dim: Dim, start: Dim, end: Dim, step: int) -> Dim:
    if isinstance(dim, int) and isinstance(start, int) and isinstance(end, int):
        return len(range(*slice(start, end, step).indices(dim)))
    if step < 0:  # backwards over a symbolic dim (x[::-1], Swin's shifts): first index start, stop after end
        def first(i: Dim) -> Dim:
            if isinstance(i, int):
                return dim_sub(dim, 1) if i >= SLICE_END or i == -1 else dim_add(dim, i) if i < 0 else i
            return i

        def stop(i: Dim) -> Dim:
            if isinstance(i, int):
                return -1 if i <= -SLICE_END else dim_add(dim, i) if i < 0 else i
            return i

        n = dim_sub(first(start), stop(end))
        if isinstance(n, int):
            n = max(n, 0)
        return dim_ceildiv(n, -step)

    # Symbolic: assume the bounds are in range, as the model's own indexing does (x[:, :seq], x[-k:]).
    def absolute(i: Dim) -> Dim:
        if isinstance(i, int):
            return dim if i >= SLICE_END else dim_add(dim, i) if i < 0 else i
        return i

    n = dim_sub(absolute(end), absolute(start))
    if isinstance(n, int):
        n = max(n, 0)
    return n if step == 1 else dim_ceildiv(n, step)


def _slice_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    t = types[0]
    starts, ends, axes, steps = attrs["starts"], attrs["ends"], attrs["axes"], attrs["steps"]
    axes = axes if axes is not None else tuple(range(len(starts)))
    steps = steps if steps is not None else (1,) * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ShapeError("starts, ends, axes and steps must have the same length")
    shape = list(t.shape)
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise ShapeError("slice step must not be 0")
        ax = norm_axis(a, t.rank)
        shape[ax] = _slice_len(shape[ax], s, e, st)
    return t.with_shape(shape)


def _slice_complete(types: list[TensorType], attrs: Mapping[str, Any]) -> dict[str, Any]:
    n = len(attrs["starts"])
    return {"axes": attrs["axes"] if attrs["axes"] is not None else tuple(range(n)),
            "steps": attrs["steps"] if attrs["steps"] is not None else (1,) * n}


def _slice_flow(ins: Any, outs: Any, attrs: Mapping[str, Any]) -> list[Tie]:
    """Untouched axes are shared; a unit-step window from a known non-negative start is an offset into the input."""
    rank = ins[0].rank
    axes = attrs["axes"] if attrs["axes"] is not None else tuple(range(len(attrs["starts"])))
    steps = attrs["steps"] or (1,) * len(axes)
    cut = {norm_axis(a, rank): (s, st) for a, s, st in zip(axes, attrs["starts"], steps)}
    ties = []
    for k in range(rank):
        if k not in cut:
            ties.append(tie(O(0, k), I(0, k)))
        elif cut[k][1] == 1 and isinstance(cut[k][0], int) and cut[k][0] >= 0:
            ties.append(tie(I(0, k), O(0, k), offset=cut[k][0]))
    return ties


def _slice_resize(ins: Any, outs: Any, attrs: Mapping[str, Any], removed: Mapping[Any, Any]) -> dict[str, Any]:
    """A window over a pruned axis moves left by the indices removed before it and narrows by those inside it."""
    rank = ins[0].rank
    axes = attrs["axes"] if attrs["axes"] is not None else tuple(range(len(attrs["starts"])))
    starts, ends = list(attrs["starts"]), list(attrs["ends"])
    for j, a in enumerate(axes):
        gone = sorted(removed.get(AxisRef("in", 0, norm_axis(a, rank)), ()))
        if not gone:
            continue
        dim = ins[0].shape[norm_axis(a, rank)]
        start, end = starts[j], ends[j]
        if not (isinstance(dim, int) and isinstance(start, int) and isinstance(end, int) and 0 <= start):
            raise ValueError(f"slice bounds {start}:{end} on pruned axis {a} are not known non-negative ints")
        end = min(end if end >= 0 else dim + end, dim)
        starts[j] = start - sum(1 for g in gone if g < start)
        ends[j] = end - sum(1 for g in gone if g < end)
    return {"starts": tuple(starts), "ends": tuple(ends)}


@register_op("slice", inputs=["x"], infer=_slice_infer, flops=_moved, traits=_VIEW, dim_flow=_slice_flow,
             complete=_slice_complete, resize=_slice_resize,
             attrs={"starts": Attr("dims"), "ends": Attr("dims"), "axes": Attr("ints", None, optional=True),
                    "steps": Attr("ints", None, optional=True)})
def _slice(x: np.ndarray, *, starts: tuple[int, ...], ends: tuple[int, ...], axes: tuple[int, ...] | None,
           steps: tuple[int, ...] | None) -> np.ndarray:
    """x[start:end:step] on each of axes (ONNX Slice with static bounds; negative bounds count from the end)."""
    index = [slice(None)] * x.ndim
    axes = axes if axes is not None else tuple(range(len(starts)))
    steps = steps if steps is not None else (1,) * len(starts)
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[a] = slice(s, e, st)
    return x[tuple(index)]


def _gather_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    x, idx = types
    if not idx.dtype.is_int:
        raise ShapeError(f"indices must be integers, got {idx.dtype}")
    ax = norm_axis(attrs["axis"], x.rank)
    return x.with_shape(x.shape[:ax] + idx.shape + x.shape[ax + 1:])


def _gather_flow(ins: Any, outs: Any, attrs: Mapping[str, Any]) -> list[Tie]:
    """y = x[:, ..., indices, ...]: x's other axes and the indices' axes all reach the output."""
    x, idx = ins
    ax = norm_axis(attrs["axis"], x.rank)
    return ([tie(O(0, k), I(0, k)) for k in range(ax)] + [tie(O(0, ax + k), I(1, k)) for k in range(idx.rank)]
            + [tie(O(0, ax + idx.rank + k), I(0, ax + 1 + k)) for k in range(x.rank - ax - 1)])


@register_op("gather", inputs=["x", "indices"], attrs={"axis": Attr("int", 0)}, infer=_gather_infer,
             flops=_moved, traits=[_LAYOUT], dim_flow=_gather_flow)
def _gather(x: np.ndarray, indices: np.ndarray, *, axis: int) -> np.ndarray:
    """Pick slices of x along axis (ONNX Gather; embedding lookup is gather on axis 0)."""
    return np.take(x, indices.astype(np.int64), axis=axis)


@register_op("gather_elements", inputs=["x", "indices"], attrs={"axis": Attr("int")}, flops=_moved,
             infer=lambda t, a: t[0].with_shape(t[1].shape))
def _gather_elements(x: np.ndarray, indices: np.ndarray, *, axis: int) -> np.ndarray:
    """y[i][j] = x[indices[i][j]][j] for axis 0 (torch.gather)."""
    return np.take_along_axis(x, indices.astype(np.int64), axis=axis)


def _index_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    x, idx = types[0], types[1:]
    first = attrs["axis"]
    if not idx or first < 0 or first + len(idx) > x.rank:
        raise ShapeError(f"index needs 1 to {x.rank - first} index tensors from axis {first}, got {len(idx)}")
    if any(not t.dtype.is_int for t in idx):
        raise ShapeError(f"indices must be integers, got {', '.join(str(t.dtype) for t in idx)}")
    return x.with_shape(x.shape[:first] + broadcast(*(t.shape for t in idx)) + x.shape[first + len(idx):])


@register_op("index", inputs=["x", "indices*"], attrs={"axis": Attr("int", 0)}, infer=_index_infer, flops=_moved)
def _index(x: np.ndarray, *indices: np.ndarray, axis: int) -> np.ndarray:
    """Advanced indexing x[:, ..., i0, i1, ...] with broadcast index tensors on consecutive axes from `axis`."""
    return x[(slice(None),) * axis + tuple(i.astype(np.int64) for i in indices)]


def _pad_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    t, pads = types[0], attrs["pads"]
    if len(pads) != 2 * t.rank or min(pads, default=0) < 0:
        raise ShapeError(f"pads must hold {2 * t.rank} non-negative ints (begins then ends), got {list(pads)}")
    shape = []
    for i, d in enumerate(t.shape):
        extra = pads[i] + pads[i + t.rank]
        shape.append(dim_add(d, extra))
    return t.with_shape(shape)


@register_op("pad", inputs=["x"], infer=_pad_infer, flops=_moved, traits=[_LAYOUT],
             dim_flow=lambda i, o, a: [tie(O(0, k), I(0, k)) for k in range(i[0].rank)
                                       if a["pads"][k] == a["pads"][k + i[0].rank] == 0],
             attrs={"pads": Attr("ints"), "mode": Attr("str", "constant", choices=("constant", "reflect", "edge")),
                    "value": Attr("float", 0.0)})
def _pad(x: np.ndarray, *, pads: tuple[int, ...], mode: str, value: float) -> np.ndarray:
    """Pad each dim by pads[i] before and pads[i + rank] after (ONNX order)."""
    widths = [(pads[i], pads[i + x.ndim]) for i in range(x.ndim)]
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=np.asarray(value).astype(x.dtype))
    return np.pad(x, widths, mode=mode)  # type: ignore[call-overload]  # (mode is checked by the schema)


def _tile_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    t, reps = types[0], attrs["repeats"]
    if len(reps) != t.rank:
        raise ShapeError(f"repeats must have {t.rank} entries, got {list(reps)}")
    return t.with_shape([dim_mul(d, r) for d, r in zip(t.shape, reps)])


@register_op("tile", inputs=["x"], attrs={"repeats": Attr("ints")}, infer=_tile_infer, flops=_moved,
             traits=_VIEW, dim_flow=lambda i, o, a: [tie(O(0, k), I(0, k)) for k, r in enumerate(a["repeats"]) if r == 1])
def _tile(x: np.ndarray, *, repeats: tuple[int, ...]) -> np.ndarray:
    """Repeat x repeats[i] times along dim i."""
    return np.tile(x, repeats)


def _tri(name: str, fn: Any) -> None:
    def kernel(x: np.ndarray, *, diagonal: int) -> np.ndarray:
        return fn(x, k=diagonal)

    register_op(name, inputs=["x"], attrs={"diagonal": Attr("int", 0)}, flops=_moved, traits=[_SCALE],
                dim_flow=lambda i, o, a: [tie(O(0, k), I(0, k)) for k in range(i[0].rank - 2)],
                infer=lambda t, a: t[0], doc=f"{'upper' if name == 'triu' else 'lower'} triangle of the last "
                "two dims, the rest zeroed")(kernel)


_tri("triu", np.triu)
_tri("tril", np.tril)


def _arange_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    start, end, step = attrs["start"], attrs["end"], attrs["step"]
    if step == 0:
        raise ShapeError("arange step must not be 0")
    if isinstance(end, str):
        if step < 0:
            raise ShapeError("arange with a symbolic end needs a positive step")
        n: Dim = dim_ceildiv(dim_sub(end, start), step)  # assumes end >= start, as the model's own code does
    else:
        n = max(0, math.ceil((end - start) / step))
    return tt(attrs["dtype"], (n,))


@register_op("arange", inputs=[], infer=_arange_infer, flops=_moved,
             attrs={"start": Attr("int", 0), "end": Attr("dim"), "step": Attr("int", 1),
                    "dtype": Attr("dtype", DType.I64)})
def _arange(*, start: int, end: int, step: int, dtype: DType) -> np.ndarray:
    """start, start + step, ... up to end (exclusive)."""
    return np.arange(start, end, step).astype(dtype.numpy)


def _shape_tensor_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    shape = attrs["shape"] if attrs["shape"] is not None else (len(attrs["values"]),)
    if math.prod(shape) != len(attrs["values"]):
        raise ShapeError(f"shape_tensor: {len(attrs['values'])} values do not fill shape {list(shape)}")
    return tt(attrs["dtype"], shape)


@register_op("shape_tensor", inputs=[], infer=_shape_tensor_infer, flops=_moved,
             attrs={"values": Attr("dims"), "shape": Attr("ints", optional=True, default=None),
                    "dtype": Attr("dtype", DType.I64)})
def _shape_tensor(*, values: tuple[int, ...], shape: tuple[int, ...] | None, dtype: DType) -> np.ndarray:
    """Dims as data: the (symbolic) sizes in `values`, bound when the graph runs, as a tensor of `shape`.

    Legacy ONNX exports compute position ids, masks and reshape targets from `Shape`; where such a value is used
    as an ordinary tensor it is materialized from the bound symbols by this op (TVM Relax's shape_to_tensor)."""
    return np.array(values, dtype=dtype.numpy).reshape(shape if shape is not None else (len(values),))


def _nonzero_infer(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    if not is_symbol(attrs["count"]):
        raise ShapeError(f"nonzero's count must name a fresh symbol, got {attrs['count']!r}")
    return tt(DType.I64, (types[0].rank, attrs["count"]))


@register_op("nonzero", inputs=["x"], infer=_nonzero_infer, flops=_moved, attrs={"count": Attr("str")})
def _nonzero(x: np.ndarray, *, count: str) -> np.ndarray:
    """Indices of the non-zero elements, [rank, count] in row-major order (ONNX NonZero). The output's size is
    data-dependent: `count` names a fresh symbol, bound when the graph runs (torch.export's unbacked symbols), so
    the ops after it are typed with it as with any other dim."""
    return np.array(np.nonzero(x), dtype=np.int64).reshape(x.ndim, -1)


@register_op("full", inputs=[], flops=_moved, infer=lambda t, a: tt(a["dtype"], a["shape"]),
             attrs={"shape": Attr("dims"), "value": Attr("float"), "dtype": Attr("dtype", DType.F32)},
             dim_flow=lambda i, o, a: [], resize=_resize_target)  # every axis is the attribute's: resized, not tied
def _full(*, shape: tuple[int, ...], value: float, dtype: DType) -> np.ndarray:
    """A tensor of the given shape filled with value."""
    return np.full(shape, value, dtype=dtype.numpy)
