"""What passes may assume about an op: traits, and how its dimensions flow from inputs to outputs.

Passes ask these instead of comparing op names, so a new op that declares `Trait.ELEMENTWISE` is seen by every
pass that handles elementwise ops, and a misspelled trait fails at import (it is an enum member, not a string).

Dimension flow is what structured pruning walks (as Torch-Pruning's DepGraph does, but declared per op instead of
traced): a `Tie` says two sets of axes index the same thing, so removing index k from one means removing it from
the other. `linear(x[..., in], w[out, in], b[out])` ties `x[-1]` to `w[1]` (a contraction) and `y[-1]` to `w[0]`
and `b[0]`:

>>> from graphopt.ir import parse
>>> g = parse('''
... graph @g(%x: f32[2,4], %w: f32[3,4]) {
...   %y: f32[2,3] = linear(%x, %w)
...   return %y
... }''')
>>> for tie in dim_flow(next(iter(g))):
...     print(tie)
out0[0] = in0[0]
in0[1] = in1[1]
out0[1] = in1[0]
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..types import TensorType

if TYPE_CHECKING:
    from ..node import Node

__all__ = ["Trait", "AxisRef", "Tie", "DimFlowFn", "dim_flow", "I", "O", "tie", "elementwise_flow"]


class Trait(enum.Enum):
    """Properties an op declares at registration (`register_op(..., traits={Trait.ELEMENTWISE})`)."""

    #: output[i] depends only on the inputs at i after broadcasting; no other element
    ELEMENTWISE = "elementwise"
    #: moves, views or repeats elements without computing new values (transpose, reshape, slice, concat, ...)
    LAYOUT = "layout"
    #: f(c·x, c·y, ...) = c·f(x, y, ...) for every c > 0, all float inputs scaled: quantization scales pass through
    SCALE_TRANSPARENT = "scale-transparent"
    #: a GEMM or convolution whose weights and activations integer kernels can take (int8 lowering exists)
    QUANTIZABLE = "quantizable"
    #: f(a, b) = f(b, a)
    COMMUTATIVE = "commutative"
    #: accumulates over many elements (sums, norms, softmax): keep it in f32 when lowering precision
    PRECISION_SENSITIVE = "precision-sensitive"
    #: only float inputs make sense (transcendental functions; torch has no integer kernel)
    FLOAT_COMPUTE = "float-compute"


@dataclass(frozen=True)
class AxisRef:
    """One axis of one input (`side="in"`) or output (`side="out"`) of a node."""

    side: str
    index: int
    axis: int

    def __str__(self) -> str:
        return f"{self.side}{self.index}[{self.axis}]"


def I(index: int, axis: int) -> AxisRef:  # noqa: E743, N802 - reads like the math: I(0, 1) is input 0, axis 1
    return AxisRef("in", index, axis)


def O(index: int, axis: int) -> AxisRef:  # noqa: E743, N802
    return AxisRef("out", index, axis)


@dataclass(frozen=True)
class Tie:
    """`a` and `b` index the same thing: element k of `b` (row-major over its axes) is element k + offset of `a`.

    Most ties are one axis each. A reshape that splits heads ties `[out0[2], out0[3]]` to `[in0[2]]`; a concat ties
    each input's axis to a window of the output's (`offset`). `exact=False` marks axes that are coupled but whose
    removal changes the remaining values (the normalized axes of a norm, softmax's axis, an attention head size
    that sets the default scale): pruning them is allowed, but it is lossy.

    `blocks=g` ties one axis on each side by blocks: each axis is g equal blocks (of different sizes on the two
    sides), block k of `a` is block k of `b`, and a block goes only as a whole. A grouped convolution's input and
    output channels are tied so (group k reads input block k and writes output block k); with blocks of one
    element (a depthwise convolution) it is the one-to-one tie.
    """

    a: tuple[AxisRef, ...]
    b: tuple[AxisRef, ...]
    offset: int = 0
    exact: bool = True
    blocks: int = 0

    def __str__(self) -> str:
        def side(refs: tuple[AxisRef, ...]) -> str:
            return str(refs[0]) if len(refs) == 1 else "(" + ", ".join(map(str, refs)) + ")"

        extra = ((f" + {self.offset}" if self.offset else "") + (f"  (by {self.blocks} blocks)" if self.blocks else "")
                 + ("" if self.exact else "  (lossy)"))
        return f"{side(self.a)} = {side(self.b)}{extra}"


DimFlowFn = Callable[[Sequence[TensorType], Sequence[TensorType], Mapping[str, Any]], list[Tie]]


def tie(a: AxisRef | Sequence[AxisRef], b: AxisRef | Sequence[AxisRef], offset: int = 0, exact: bool = True,
        blocks: int = 0) -> Tie:
    as_tuple = lambda r: (r,) if isinstance(r, AxisRef) else tuple(r)  # noqa: E731
    if blocks and (len(as_tuple(a)) != 1 or len(as_tuple(b)) != 1 or offset):
        raise ValueError("a tie by blocks joins one axis on each side, without an offset")
    return Tie(as_tuple(a), as_tuple(b), offset, exact, blocks)


def elementwise_flow(ins: Sequence[TensorType], outs: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[Tie]:
    """Broadcasting elementwise ops: each output axis is the aligned axis of every input that is not broadcast."""
    out = outs[0]
    ties = []
    for ax in range(out.rank):
        for i, t in enumerate(ins):
            a = ax - (out.rank - t.rank)
            if a >= 0 and t.shape[a] == out.shape[ax]:
                ties.append(tie(O(0, ax), I(i, a)))
    return ties


def identity_flow(ins: Sequence[TensorType], outs: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[Tie]:
    """Every output's axis k is input 0's axis k (same shape)."""
    return [tie(O(k, ax), I(0, ax)) for k, o in enumerate(outs) for ax in range(o.rank)]


def dim_flow(node: Node) -> list[Tie] | None:
    """The node's ties with axes made non-negative, or None if its op declares no dimension flow."""
    rule = node.op.dim_flow
    if rule is None:
        return None
    ins = [v.type for v in node.inputs]
    outs = [v.type for v in node.outputs]
    if any(t is None for t in (*ins, *outs)):
        return None

    def norm(r: AxisRef) -> AxisRef:
        rank = (ins if r.side == "in" else outs)[r.index].rank  # type: ignore[union-attr]
        if not -rank <= r.axis < rank:
            raise ValueError(f"dimension flow of {node.op.name} names axis {r} outside rank {rank}")
        return AxisRef(r.side, r.index, r.axis % rank)

    return [Tie(tuple(map(norm, t.a)), tuple(map(norm, t.b)), t.offset, t.exact, t.blocks)
            for t in rule(ins, outs, node.attrs)]  # type: ignore[arg-type]
