"""The op registry: every op registered once with its schema, type inference, numpy kernel and cost.

The verifier, the reference interpreter, the text parser and the cost model all read this one table, so
adding an op is one decorated function:

>>> import numpy as np
>>> from graphopt.ir import register_op, Attr, same_as_input
>>> @register_op("scale_by", inputs=["x"], attrs={"factor": Attr("float")}, infer=same_as_input,
...              flops=lambda i, o, a: o[0].numel, doc="x * factor", replace=True)
... def scale_by(x, *, factor):
...     return (x * factor).astype(x.dtype)
>>> get_op("scale_by").kernel(np.ones(2, np.float32), factor=3.0)
array([3., 3.], dtype=float32)
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from graphopt.errors import UnsupportedOpError

from ..dtypes import DType
from ..symbolic import canon
from ..types import TensorType
from .traits import DimFlowFn, Trait

__all__ = [
    "Attr",
    "OpDef",
    "ShapeError",
    "ConcreteType",
    "register_op",
    "get_op",
    "registered_ops",
    "same_as_input",
    "REQUIRED",
    "OpRef",
    "op_names",
    "ops_with",
]


class ShapeError(ValueError):
    """Raised by type-inference functions; the caller adds the node to the message."""


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

_KINDS = ("int", "float", "bool", "str", "dtype", "ints", "floats", "dim", "dims")


@dataclass(frozen=True)
class Attr:
    """Schema of one attribute.

    Kinds: int, float, bool, str, dtype, ints, floats (tuples), dim (int or symbol), dims (tuple of int,
    symbol or -1). `optional=True` allows None.
    """

    kind: str
    default: Any = REQUIRED
    choices: tuple[Any, ...] | None = None
    optional: bool = False

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown attribute kind {self.kind!r}; kinds: {', '.join(_KINDS)}")

    def coerce(self, value: Any) -> Any:
        """Check `value` against this schema and return its canonical (immutable) form."""
        if value is None:
            if self.optional:
                return None
            raise TypeError("must not be None")
        k = self.kind
        if k == "int":
            out: Any = _as_int(value)
        elif k == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
                raise TypeError(f"expected a float, got {value!r}")
            out = float(value)
        elif k == "bool":
            if not isinstance(value, bool):
                raise TypeError(f"expected true or false, got {value!r}")
            out = value
        elif k == "str":
            if not isinstance(value, str):
                raise TypeError(f"expected a string, got {value!r}")
            out = value
        elif k == "dtype":
            out = value if isinstance(value, DType) else DType.parse(str(value))
        elif k == "ints":
            out = tuple(_as_int(v) for v in _as_seq(value))
        elif k == "floats":
            out = tuple(float(v) for v in _as_seq(value))
        elif k == "dim":
            out = _as_dim(value)
        else:  # dims
            out = tuple(_as_dim(v) for v in _as_seq(value))
        if self.choices is not None and out not in self.choices:
            raise TypeError(f"expected one of {', '.join(map(repr, self.choices))}, got {out!r}")
        return out


def _as_int(v: Any) -> int:
    if isinstance(v, bool) or not hasattr(v, "__index__"):
        raise TypeError(f"expected an int, got {v!r}")
    return int(v)


def _as_dim(v: Any) -> int | str:
    if isinstance(v, str):
        try:
            return canon(v)
        except ValueError as e:
            raise TypeError(f"expected an int, a symbol or a dim expression: {e}") from None
    return _as_int(v)


def _as_seq(v: Any) -> Sequence[Any]:
    if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
        raise TypeError(f"expected a list, got {v!r}")
    return list(v)


@dataclass(frozen=True)
class ConcreteType:
    """A tensor type with every symbol bound: what cost functions see."""

    dtype: DType
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


InferFn = Callable[[list[TensorType], Mapping[str, Any]], "TensorType | Sequence[TensorType]"]
CompleteFn = Callable[[list[TensorType], Mapping[str, Any]], Mapping[str, Any]]
FlopsFn = Callable[[list[ConcreteType], list[ConcreteType], Mapping[str, Any]], int]
# (input types, output types, attrs, removed indices per axis) -> the attrs that change when they are removed;
# ValueError with the reason when they cannot be (see `register_op`'s `resize`)
ResizeFn = Callable[[Sequence[TensorType], Sequence[TensorType], Mapping[str, Any], Mapping[Any, Sequence[int]]],
                    Mapping[str, Any]]


@dataclass(eq=False)
class OpDef:
    """One registered op. Nodes point at their OpDef; compare with `is`."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Attr]
    kernel: Callable[..., Any]
    infer: InferFn
    flops: FlopsFn
    doc: str = ""
    pure: bool = True
    variadic_outputs: Callable[[Mapping[str, Any], int], int] | None = None
    traits: frozenset[Trait] = frozenset()
    dim_flow: DimFlowFn | None = None
    complete: CompleteFn | None = None
    resize: ResizeFn | None = None
    _min_inputs: int = field(init=False, default=0)
    _max_inputs: float = field(init=False, default=0)

    def __post_init__(self) -> None:
        required = [i for i in self.inputs if not i.endswith(("?", "*"))]
        self._min_inputs = len(required) + sum(1 for i in self.inputs if i.endswith("*"))
        self._max_inputs = math.inf if any(i.endswith("*") for i in self.inputs) else len(self.inputs)

    def check_arity(self, n: int) -> str | None:
        """None if `n` inputs fit the schema, else the reason."""
        if self._min_inputs <= n <= self._max_inputs:
            return None
        want = f"{self._min_inputs}" if self._min_inputs == self._max_inputs else (
            f"at least {self._min_inputs}" if self._max_inputs == math.inf
            else f"{self._min_inputs} to {self._max_inputs}"
        )
        return f"{self.name} takes {want} inputs ({', '.join(self.inputs)}), got {n}"

    def check_attrs(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        """Coerce `attrs` to the schema, fill defaults; TypeError naming the attribute otherwise."""
        for key in attrs:
            if key not in self.attrs:
                hint = difflib.get_close_matches(key, list(self.attrs), n=1)
                extra = f"; did you mean {hint[0]!r}?" if hint else f"; it has {', '.join(self.attrs) or 'none'}"
                raise TypeError(f"{self.name} has no attribute {key!r}{extra}")
        out = {}
        for key, spec in self.attrs.items():
            if key in attrs:
                try:
                    out[key] = spec.coerce(attrs[key])
                except (TypeError, ValueError) as e:
                    raise TypeError(f"attribute {key!r} of {self.name}: {e}") from None
            elif spec.default is REQUIRED:
                raise TypeError(f"{self.name} requires attribute {key!r} ({spec.kind})")
            else:
                out[key] = spec.default
        return out

    @property
    def commutative(self) -> bool:
        """f(a, b) = f(b, a): the COMMUTATIVE trait (patterns try both operand orders, CSE sorts them)."""
        return Trait.COMMUTATIVE in self.traits

    def has(self, trait: Trait) -> bool:
        """Whether the op declares `trait`."""
        return trait in self.traits

    def complete_attrs(self, types: Sequence[TensorType | None], attrs: dict[str, Any]) -> dict[str, Any]:
        """Fill the defaults that depend on the inputs (a conv's strides, pads and dilations from the kernel's rank;
        a slice's axes and steps), so two nodes that mean the same have the same attributes and no consumer has to
        know the default. Unchanged when an input type is unknown."""
        if self.complete is None or any(t is None for t in types):
            return attrs
        try:
            filled = self.complete(list(types), attrs)  # type: ignore[arg-type]
        except (ArithmeticError, ValueError, IndexError, KeyError, TypeError):
            return attrs  # a malformed node: type inference reports it, naming the node
        return {**attrs, **{k: self.attrs[k].coerce(v) for k, v in filled.items()}}

    def num_outputs(self, attrs: Mapping[str, Any], n_inputs: int) -> int:
        if self.variadic_outputs is not None:
            return self.variadic_outputs(attrs, n_inputs)
        return len(self.outputs)

    def infer_types(self, types: list[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
        """Output types from input types. Raises ShapeError with the reason."""
        reason = self.check_arity(len(types))
        if reason:
            raise ShapeError(reason)
        try:
            out = self.infer(types, attrs)
        except ShapeError:
            raise
        except (ArithmeticError, ValueError, IndexError, KeyError, TypeError) as e:
            # A malformed node (stride 0, an axis out of range, a wrong-length attribute) must read as a
            # verification failure naming the node, not escape as a raw exception from the inference function.
            raise ShapeError(f"{self.name} cannot infer its output type ({type(e).__name__}: {e})") from None
        return [out] if isinstance(out, TensorType) else list(out)

    def __repr__(self) -> str:
        return f"OpDef({self.name})"


_REGISTRY: dict[str, OpDef] = {}


def _default_flops(i: list[ConcreteType], o: list[ConcreteType], a: Mapping[str, Any]) -> int:
    return 0


def register_op(
    name: str,
    *,
    inputs: Sequence[str],
    infer: InferFn,
    outputs: Sequence[str] = ("y",),
    attrs: Mapping[str, Attr] | None = None,
    flops: FlopsFn = _default_flops,
    doc: str | None = None,
    pure: bool = True,
    commutative: bool = False,
    variadic_outputs: Callable[[Mapping[str, Any], int], int] | None = None,
    traits: Iterable[Trait] = (),
    dim_flow: DimFlowFn | None = None,
    complete: CompleteFn | None = None,
    resize: ResizeFn | None = None,
    replace: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register an op whose numpy kernel is the decorated function.

    `inputs` are names; a trailing `?` marks an optional trailing input, `*` a variadic one. The kernel takes
    the input arrays positionally and the attributes as keywords, and returns an array (or a tuple for
    multi-output ops). `flops(inputs, outputs, attrs)` gets ConcreteTypes. `traits` (see `Trait`) and
    `dim_flow` (see `graphopt.ir.ops.traits.Tie`) are what passes ask instead of the op's name; `complete` fills
    attribute defaults that depend on the input types when a node is made; `resize` rewrites attributes that hold
    sizes (a reshape's shape, a split's sizes, a depthwise conv's groups) when structured pruning removes indices
    along tied axes — pruning stops at an op with `dims` attributes and no `resize`. Registering a name twice is an
    error unless `replace=True`.
    """
    if not name or not name.replace("_", "a").isalnum() or not name[0].isalpha():
        raise ValueError(f"op name {name!r} must be a lowercase identifier like 'layer_norm'")

    traits = tuple(traits)
    for t in traits:
        if not isinstance(t, Trait):
            raise TypeError(f"traits of {name} must be graphopt.ir.Trait members, got {t!r}")

    def decorator(kernel: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY and not replace:
            raise ValueError(f"op {name!r} is already registered; pass replace=True to override it")
        _REGISTRY[name] = OpDef(
            name=name,
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            attrs=dict(attrs or {}),
            kernel=kernel,
            infer=infer,
            flops=flops,
            doc=doc if doc is not None else (kernel.__doc__ or "").strip().split("\n")[0],
            pure=pure,
            variadic_outputs=variadic_outputs,
            traits=frozenset(traits) | ({Trait.COMMUTATIVE} if commutative else set()),
            dim_flow=dim_flow,
            complete=complete,
            resize=resize,
        )
        return kernel

    return decorator


def get_op(name: str) -> OpDef:
    """The registered op called `name`; UnsupportedOpError with a did-you-mean suggestion otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        hint = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        extra = f"; did you mean {' or '.join(repr(h) for h in hint)}?" if hint else ""
        raise UnsupportedOpError(
            f"unknown op {name!r}{extra} Register new ops with graphopt.ir.register_op (see README, 'Adding an op')."
        ) from None


def registered_ops() -> dict[str, OpDef]:
    """A snapshot of the registry, by name."""
    return dict(_REGISTRY)


def same_as_input(types: list[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    """Type inference for ops whose output has the type of their first input."""
    return types[0]


def op_names(*names: str) -> frozenset[str]:
    """A set of registered op names, checked now: a misspelled name fails where the set is made (at import),
    instead of silently never matching in `node.op.name in ...`."""
    return frozenset(get_op(name).name for name in names)


def ops_with(trait: Trait) -> frozenset[str]:
    """The names of the ops registered now that declare `trait`."""
    return frozenset(name for name, op in _REGISTRY.items() if trait in op.traits)


@dataclass(frozen=True)
class OpRef:
    """A checked reference to a registered op, made at import so a typo fails there.

    It compares by name, so an op re-registered with `replace=True` still matches:

    >>> RELU = OpRef("relu")
    >>> from graphopt.ir import parse
    >>> g = parse("graph @g(%x: f32[2]) { %y: f32[2] = relu(%x) return %y }")
    >>> RELU.of(next(iter(g))), RELU.produced(g.outputs[0])
    (True, True)
    """

    name: str

    def __post_init__(self) -> None:
        get_op(self.name)

    def of(self, node: Any) -> bool:
        """Whether `node` applies this op."""
        return node is not None and node.op.name == self.name

    def produced(self, value: Any) -> bool:
        """Whether `value` is an output of a node applying this op."""
        return value.producer is not None and value.producer.op.name == self.name
