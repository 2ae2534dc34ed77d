"""Shape helpers shared by the type-inference functions: broadcasting, axes, symbolic products."""

from __future__ import annotations

from collections.abc import Sequence

from ..dtypes import DType
from ..symbolic import dim_mul, divide
from ..types import Dim, Shape, TensorType
from .registry import ShapeError

__all__ = ["broadcast", "norm_axis", "norm_axes", "reshape_dims", "compute_dtype", "tt"]


def broadcast(*shapes: Sequence[Dim]) -> Shape:
    """NumPy/PyTorch broadcasting over symbolic dims. A symbol meets an int > 1 as that int."""
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for k in range(rank, 0, -1):
        dims = [s[len(s) - k] for s in shapes if len(s) >= k]
        big = [d for d in dims if d != 1]
        ints = {d for d in big if isinstance(d, int)}
        syms = list(dict.fromkeys(d for d in big if isinstance(d, str)))
        if len(ints) > 1:
            raise ShapeError(f"shapes {_fmt(shapes)} do not broadcast (dims {sorted(ints)})")
        if ints:
            out.append(ints.pop())
        elif len(syms) > 1:
            raise ShapeError(f"shapes {_fmt(shapes)}: cannot prove symbolic dims {' and '.join(syms)} equal")
        else:
            out.append(syms[0] if syms else 1)
    return tuple(out)


def _fmt(shapes: Sequence[Sequence[Dim]]) -> str:
    return " and ".join("[" + ",".join(map(str, s)) + "]" for s in shapes)


def norm_axis(axis: int, rank: int) -> int:
    """Map a possibly negative axis into [0, rank)."""
    if not -rank <= axis < max(rank, 1):
        raise ShapeError(f"axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def norm_axes(axes: Sequence[int] | None, rank: int) -> tuple[int, ...]:
    """Normalised, sorted axes; None means all axes."""
    if axes is None:
        return tuple(range(rank))
    out = sorted({norm_axis(a, rank) for a in axes})
    if len(out) != len(axes):
        raise ShapeError(f"repeated axis in {list(axes)}")
    return tuple(out)


def reshape_dims(src: Sequence[Dim], target: Sequence[Dim]) -> Shape:
    """Resolve one -1 in `target` against `src`, symbolically (`[batch,seq,768]` to `[-1,768]` is `batch*seq`)."""
    if sum(1 for d in target if d == -1) > 1:
        raise ShapeError(f"reshape target {list(target)} has more than one -1")
    src_n = dim_mul(*src)
    tgt_n = dim_mul(*[d for d in target if d != -1])
    if -1 not in target:
        if isinstance(src_n, int) and isinstance(tgt_n, int) and src_n != tgt_n:
            raise ShapeError(f"cannot reshape [{','.join(map(str, src))}] to {list(target)}")
        return tuple(target)
    fill = divide(src_n, tgt_n) if tgt_n != 0 else None
    if fill is None:
        raise ShapeError(f"cannot infer -1 in {list(target)} from [{','.join(map(str, src))}]")
    return tuple(fill if d == -1 else d for d in target)


def compute_dtype(dtype: DType) -> DType:
    """Half types compute in f32 and round once per op, as PyTorch's CPU kernels do."""
    return DType.F32 if dtype in (DType.F16, DType.BF16) else dtype


def tt(dtype: DType, shape: Sequence[Dim]) -> TensorType:
    return TensorType(dtype, tuple(shape))
