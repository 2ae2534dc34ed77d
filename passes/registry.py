"""Pass registration: a kebab-case name, typed options, a one-line doc, the analyses a pass preserves.

Options are the pass function's keyword-only parameters (or its class's `__init__` ones); their annotations
give the types (int, float, bool, str, tuple[str, ...], or a `Literal[...]` of choices) and their defaults the
defaults. Data that pipeline text cannot spell (a calibration table) reaches a pass through the context's typed
channel, `ctx.need(CalibrationTable)`. A lossy pass declares its `budget`; the numeric check holds it to that
instead of float-rounding tolerances:

>>> from graphopt.ir import OpRef
>>> from graphopt.passes import register_pass, PassResult, get_pass
>>> RELU = OpRef("relu")  # checked now: a typo fails here, not by never matching
>>> @register_pass("count-relus", replace=True)
... def count_relus(graph, ctx, *, verbose: bool = False) -> PassResult:
...     '''Count relu nodes (an analysis-only example).'''
...     return PassResult(changed=False, stats={"relus": sum(RELU.of(n) for n in graph)})
>>> get_pass("count-relus").options["verbose"].type
<class 'bool'>
>>> from typing import Literal
>>> @register_pass("round-weights", budget=Budget(cosine=0.9999), replace=True)
... def round_weights(graph, ctx, *, to: Literal["bf16", "f16"] = "bf16") -> PassResult:
...     "Round float weights through a narrower type (a lossy example)."
...     return PassResult(changed=False)
>>> info = get_pass("round-weights")
>>> info.options["to"].choices, info.exact, str(info.budget)
(('bf16', 'f16'), False, 'cosine >= 0.9999')
"""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from graphopt.errors import PipelineError

if TYPE_CHECKING:
    from graphopt.ir import Graph

    from .context import PassContext

__all__ = ["PassResult", "PassInfo", "Option", "Budget", "register_pass", "get_pass", "registered_passes", "ALL"]

ALL = "all"
"""`preserves=ALL`: the pass changes nothing any analysis depends on."""


Row = dict[str, Any]


@dataclass
class PassResult:
    """What a pass returns: whether it changed the graph, statistics for reports (counts, and floats such as an
    error or a sparsity), named tables (one row per layer: its scale, its error), and for functional passes the new
    graph."""

    changed: bool
    stats: Mapping[str, int | float] = field(default_factory=dict)
    graph: Graph | None = None
    tables: dict[str, list[Row]] = field(default_factory=dict)


@dataclass(frozen=True)
class Budget:
    """How far a lossy pass may move the outputs, per output, against the outputs before it ran: cosine
    similarity at least `cosine`, signal-to-quantization-noise at least `sqnr_db` decibels, max error relative to
    the output's largest magnitude at most `max_rel_error`. Every bound given must hold.

    `capacity=True` marks passes that remove model capacity by a ratio the user chose (pruning, low-rank): their
    bound is what the numeric check holds a real model to, but no pass can promise it on an arbitrary graph, so the
    differential fuzzer checks them by running the transformed graph on every target against the reference
    interpreter (and the output shapes against the original's) instead."""

    cosine: float | None = None
    sqnr_db: float | None = None
    max_rel_error: float | None = None
    capacity: bool = False

    def __post_init__(self) -> None:
        if self.cosine is None and self.sqnr_db is None and self.max_rel_error is None:
            raise ValueError("a Budget needs at least one bound: cosine, sqnr_db or max_rel_error")

    def measure(self, want: np.ndarray, have: np.ndarray) -> dict[str, float]:
        """The metrics this budget bounds, for one output pair (NaN where they cannot be computed)."""
        w, h = want.astype(np.float64).ravel(), have.astype(np.float64).ravel()
        finite = np.isfinite(w) & np.isfinite(h)
        if not np.array_equal(np.where(finite, 0, w), np.where(finite, 0, h), equal_nan=True):
            return dict.fromkeys(("cosine", "sqnr_db", "max_rel_error"), float("nan"))  # NaN or inf moved
        w, h = w[finite], h[finite]
        noise = float(np.sum((w - h) ** 2))
        nw, nh = float(np.linalg.norm(w)), float(np.linalg.norm(h))
        scale = float(np.max(np.abs(w))) if w.size else 0.0
        return {
            "cosine": 1.0 if nw == nh == 0 else float(w @ h) / (nw * nh) if nw and nh else 0.0,
            "sqnr_db": float("inf") if noise == 0 else 10 * float(np.log10(max(nw * nw, 1e-300) / noise)),
            "max_rel_error": float(np.max(np.abs(w - h))) / scale if scale else float(np.max(np.abs(h), initial=0)),
        }

    def violation(self, metrics: dict[str, float]) -> str | None:
        """The first bound `metrics` break, in words, or None. NaN breaks every bound."""
        if self.cosine is not None and not metrics["cosine"] >= self.cosine:
            return f"cosine {metrics['cosine']:.6f} < {self.cosine}"
        if self.sqnr_db is not None and not metrics["sqnr_db"] >= self.sqnr_db:
            return f"SQNR {metrics['sqnr_db']:.2f} dB < {self.sqnr_db} dB"
        if self.max_rel_error is not None and not metrics["max_rel_error"] <= self.max_rel_error:
            return f"max relative error {metrics['max_rel_error']:.3g} > {self.max_rel_error}"
        return None

    def __str__(self) -> str:
        parts = []
        if self.cosine is not None:
            parts.append(f"cosine >= {self.cosine}")
        if self.sqnr_db is not None:
            parts.append(f"SQNR >= {self.sqnr_db} dB")
        if self.max_rel_error is not None:
            parts.append(f"max relative error <= {self.max_rel_error}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Option:
    """A typed pass option. `name` is the kebab-case spelling used in pipelines."""

    name: str
    param: str
    type: type
    default: Any
    choices: tuple[Any, ...] | None = None  # a Literal[...] annotation: the only values allowed

    def parse(self, text: str) -> Any:
        """Convert pipeline text to the option's type; ValueError with the reason otherwise."""
        return self.check(self._convert(text))

    def check(self, value: Any) -> Any:
        """`value` if it is one of the choices (when there are choices); ValueError naming them otherwise."""
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"expected one of {', '.join(map(str, self.choices))}, got {value!r}")
        return value

    def _convert(self, text: str) -> Any:
        if self.type is bool:
            if text not in ("true", "false"):
                raise ValueError(f"expected true or false, got {text!r}")
            return text == "true"
        if self.type is int:
            return int(text, 0)
        if self.type is float:
            return float(text)
        if self.type is tuple:
            return tuple(part.strip() for part in text.split(",") if part.strip())
        return text

    def format(self, value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, tuple):
            return ",".join(value)
        return str(value)


@dataclass(eq=False)
class PassInfo:
    """A registered pass. Call `instantiate(options)` to get a `(graph, ctx) -> PassResult` callable."""

    name: str
    target: Callable[..., Any]
    doc: str
    options: Mapping[str, Option]
    preserves: frozenset[str] | str
    inplace: bool = True
    is_class: bool = False
    budget: Budget | None = None  # None: the pass is exact (outputs change only by float rounding)

    @property
    def exact(self) -> bool:
        return self.budget is None

    def instantiate(self, options: Mapping[str, Any]) -> Callable[[Graph, PassContext], PassResult]:
        kwargs = {}
        for k, v in options.items():
            try:
                kwargs[self.check_option(k).param] = self.options[k].check(v)
            except ValueError as e:
                raise PipelineError(f"option {k!r} of pass {self.name!r}: {e}") from None
        if self.is_class:
            return self.target(**kwargs)  # type: ignore[no-any-return]
        target = self.target
        return lambda graph, ctx: target(graph, ctx, **kwargs)

    def check_option(self, key: str) -> Option:
        try:
            return self.options[key]
        except KeyError:
            if key.replace("_", "-") in self.options:  # the Python spelling of the option
                raise PipelineError(f"pass {self.name!r} has no option {key!r}; did you mean "
                                    f"{key.replace('_', '-')!r}? (options are kebab-case)") from None
            hint = difflib.get_close_matches(key, list(self.options), n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            known = ", ".join(self.options) or "none"
            raise PipelineError(f"pass {self.name!r} has no option {key!r}{extra} (options: {known})") from None


_PASSES: dict[str, PassInfo] = {}
_entry_points_loaded = False


def _options_of(target: Callable[..., Any], is_class: bool) -> dict[str, Option]:
    fn = target.__init__ if is_class else target  # type: ignore[misc]
    hints = typing.get_type_hints(fn)
    options = {}
    for p in inspect.signature(fn).parameters.values():
        if p.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        if p.default is inspect.Parameter.empty:
            raise TypeError(f"pass option {p.name!r} of {target.__name__} needs a default value")
        hint = hints.get(p.name, type(p.default))
        choices = None
        if typing.get_origin(hint) is Literal:
            choices = typing.get_args(hint)
            kinds = {type(c) for c in choices}
            if len(kinds) != 1 or not kinds <= {int, float, str}:
                raise TypeError(f"pass option {p.name!r}: a Literal of choices must hold ints, floats or strings of "
                                f"one type, got {choices}")
            hint = kinds.pop()
            if p.default not in choices:
                raise TypeError(f"pass option {p.name!r}: default {p.default!r} is not one of {choices}")
        base = typing.get_origin(hint) or hint
        if base not in (int, float, bool, str, tuple):
            raise TypeError(f"pass option {p.name!r} has type {hint}; options are int, float, bool, str, "
                            "tuple[str, ...] or a Literal of choices. Data pipeline text cannot spell goes through "
                            "the context: ctx.need(YourType)")
        kebab = p.name.replace("_", "-")
        options[kebab] = Option(kebab, p.name, base, p.default, choices)
    return options


def register_pass(
    name: str,
    *,
    preserves: Iterable[str] | str = (),
    inplace: bool = True,
    doc: str | None = None,
    budget: Budget | None = None,
    replace: bool = False,
) -> Callable[[Any], Any]:
    """Register a pass function `(graph, ctx, *, options...) -> PassResult` or a class whose instances are.

    `preserves` names the analyses the pass keeps valid (or ALL); each must be registered already. In-place
    passes mutate `graph`; functional ones (`inplace=False`) return the new graph in `PassResult.graph`, and the
    manager checks which it is. A lossy pass (quantization, pruning) declares its `budget`; without one a pass is
    exact.
    """
    if name != name.lower() or " " in name or "_" in name or not name:
        raise ValueError(f"pass name {name!r} must be kebab-case, like 'fold-constants'")
    if not isinstance(preserves, str):
        from .analysis import known_analyses

        preserves = frozenset(preserves)
        unknown = sorted(preserves - known_analyses())
        if unknown:
            hint = difflib.get_close_matches(unknown[0], sorted(known_analyses()), n=1)
            raise ValueError(f"pass {name!r} preserves unknown analyses {unknown}"
                             + (f"; did you mean {hint[0]!r}?" if hint else "")
                             + f" (registered: {', '.join(sorted(known_analyses()))})")
    elif preserves != ALL:
        raise ValueError(f"pass {name!r}: preserves must be a list of analysis names or ALL, got {preserves!r}")

    def decorator(target: Any) -> Any:
        if name in _PASSES and not replace:
            raise ValueError(f"a pass named {name!r} is already registered; pass replace=True to override it")
        is_class = inspect.isclass(target)
        text = doc if doc is not None else inspect.getdoc(target) or ""
        _PASSES[name] = PassInfo(
            name=name,
            target=target,
            doc=" ".join(text.strip().split("\n\n")[0].split()),  # the first paragraph: whole sentences
            options=_options_of(target, is_class),
            preserves=preserves,
            inplace=inplace,
            is_class=is_class,
            budget=budget,
        )
        target.__graphopt_pass__ = name
        return target

    return decorator


def get_pass(name: str) -> PassInfo:
    """The pass registered as `name`. Looks in the `graphopt.passes` entry points before giving up."""
    if name not in _PASSES:
        _load_entry_points_once()
    try:
        return _PASSES[name]
    except KeyError:
        hint = difflib.get_close_matches(name, list(_PASSES), n=1)
        extra = f"; did you mean {hint[0]!r}?" if hint else ""
        raise PipelineError(f"unknown pass {name!r}{extra} Run `graphopt passes` to list them, or load your own "
                            "with --load-pass module:function.") from None


def registered_passes() -> dict[str, PassInfo]:
    """A snapshot of every registered pass, by name, with the `graphopt.passes` entry points loaded."""
    _load_entry_points_once()
    return dict(sorted(_PASSES.items()))


def _load_entry_points_once() -> None:
    global _entry_points_loaded
    if not _entry_points_loaded:
        _entry_points_loaded = True
        from .plugins import load_entry_points

        load_entry_points()
