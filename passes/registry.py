"""Pass registration: a kebab-case name, typed options, a one-line doc, the analyses a pass preserves.

Options are the pass function's keyword-only parameters (or its class's `__init__` ones); their annotations
give the types (int, float, bool, str, tuple[str, ...]) and their defaults the defaults:

>>> from graphopt.passes import register_pass, PassResult, get_pass
>>> @register_pass("count-relus", replace=True)
... def count_relus(graph, ctx, *, verbose: bool = False) -> PassResult:
...     '''Count relu nodes (an analysis-only example).'''
...     return PassResult(changed=False, stats={"relus": sum(n.op.name == "relu" for n in graph)})
>>> get_pass("count-relus").options["verbose"].type
<class 'bool'>
"""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from graphopt.errors import PipelineError

if TYPE_CHECKING:
    from graphopt.ir import Graph

    from .context import PassContext

__all__ = ["PassResult", "PassInfo", "Option", "register_pass", "get_pass", "registered_passes", "ALL"]

ALL = "all"
"""`preserves=ALL`: the pass changes nothing any analysis depends on."""


@dataclass
class PassResult:
    """What a pass returns: whether it changed the graph, counters for reports, and for functional passes the
    new graph."""

    changed: bool
    stats: dict[str, int] = field(default_factory=dict)
    graph: Graph | None = None


@dataclass(frozen=True)
class Option:
    """A typed pass option. `name` is the kebab-case spelling used in pipelines."""

    name: str
    param: str
    type: type
    default: Any

    def parse(self, text: str) -> Any:
        """Convert pipeline text to the option's type; ValueError with the reason otherwise."""
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

    def instantiate(self, options: Mapping[str, Any]) -> Callable[[Graph, PassContext], PassResult]:
        kwargs = {self.options[k].param: v for k, v in options.items()}
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
        base = typing.get_origin(hint) or hint
        if base not in (int, float, bool, str, tuple):
            raise TypeError(f"pass option {p.name!r} has type {hint}; options are int, float, bool, str or "
                            "tuple[str, ...]")
        kebab = p.name.replace("_", "-")
        options[kebab] = Option(kebab, p.name, base, p.default)
    return options


def register_pass(
    name: str,
    *,
    preserves: Iterable[str] | str = (),
    inplace: bool = True,
    doc: str | None = None,
    replace: bool = False,
) -> Callable[[Any], Any]:
    """Register a pass function `(graph, ctx, *, options...) -> PassResult` or a class whose instances are.

    `preserves` names the analyses the pass keeps valid (or ALL). In-place passes mutate `graph`; functional
    ones (`inplace=False`) return the new graph in `PassResult.graph`, and the manager checks which it is.
    """
    if name != name.lower() or " " in name or "_" in name or not name:
        raise ValueError(f"pass name {name!r} must be kebab-case, like 'fold-constants'")

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
            preserves=preserves if isinstance(preserves, str) else frozenset(preserves),
            inplace=inplace,
            is_class=is_class,
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
