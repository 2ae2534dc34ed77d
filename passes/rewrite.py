"""Rewrite rules as data, applied by one greedy worklist driver to a fixpoint.

    X = Var("x")
    RULES = [
        Rule("mul-one", Pat("mul", X, Const(1.0)), lambda rw, m: m.x, check=same_type("x")),  # x*1 -> x
    ]
    stats = apply_rules(graph, RULES, ctx)

A rule is (name, pattern, replacement, check) with a benefit (higher is tried first); commuted variants of
the pattern are generated. The replacement builds new nodes through the Rewriter `rw` (inserted before the
matched root, inheriting its origin) and returns the value(s) replacing the root's outputs, or None to
decline. `check(m)` returns True/None to accept, or False/a reason string to reject; with
`PassContext(explain=True)` every rejection is recorded with its reason.

The driver never loops silently: past `max_rewrites` it raises RewriteLimitError naming the rules that kept
firing. Each rewrite costs O(matched nodes + uses of the replaced values).
"""

from __future__ import annotations

import itertools
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from graphopt.errors import PassError, RewriteLimitError
from graphopt.ir import Builder, DType, Graph, Node, Value

from .context import PassContext
from .pattern import Const, Match, MatchFailure, Pattern, Var

__all__ = ["Rule", "Rewriter", "param_name", "apply_rules", "RewriteStats", "same_type", "erase_if_dead"]

Replacement = Callable[["Rewriter", Match], "Value | Sequence[Value] | None"]
Verdict = Union[bool, str, Callable[[], str], None]  # a reason may be a callable: built only when explaining
Check = Callable[[Match], Verdict]


@dataclass(eq=False)
class Rule:
    """One rewrite: `pattern` -> `replace(rw, match)` when `check(match)` accepts."""

    name: str
    pattern: Pattern
    replace: Replacement
    check: Check | None = None
    benefit: int = 1
    doc: str = ""
    commute: bool = True
    variants: list[Pattern] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.variants = list(self.pattern.variants()) if self.commute else [self.pattern]
        root = self.variants[0]
        if not hasattr(root, "op"):
            raise TypeError(f"rule {self.name!r}: the pattern's root must be a Pat (an op), got {root!r}")


def same_type(name: str) -> Check:
    """A check: the bound value `name` has exactly the root's output type (so it can replace it)."""

    def check(m: Match) -> bool | Callable[[], str]:
        v, out = m[name], m.root.outputs[0]
        if v.type != out.type:  # the reason is spelled out only if someone asks (explain): printing types is slow
            return lambda: f"%{v.name} is {v.type} but the result is {out.type}; replacing would change the type"
        return True

    return check


def param_name(v: Value) -> str:
    """The parameter name a derived weight descends from: `q.weight` for `q.weight.folded_1`."""
    return v.name.split(".folded")[0]


class Rewriter(Builder):
    """Builds replacement nodes before the matched root (the IR's one `Builder` API). Created nodes inherit the
    root's origin."""

    def __init__(self, graph: Graph, root: Node, memo: dict[Any, tuple[Value, Value]] | None = None) -> None:
        super().__init__(graph)
        self.root = root
        self.memo = memo if memo is not None else {}  # shared by every rewrite of one apply_rules run

    def const(self, data: Any, dtype: DType | None = None, *, name: str | None = None,
              like: Value | None = None) -> Value:
        """Add a constant; `like` names it after the weight it was made from, so a fused model's weights keep
        their parameter names instead of `c_17`."""
        if like is not None and name is None:
            name = self.graph.fresh_name(param_name(like))
        return super().const(data, dtype, name=name)

    def derived(self, source: Value, how: str, make: Callable[[], Any]) -> Value:
        """The constant `make()` computes from `source` (a transposed weight, a reshaped bias), made once per
        source and `how` in this run: a weight shared by several layers stays one weight."""
        key = (id(source), how)
        hit = self.memo.get(key)  # (source, derived): holding the source keeps its id from being reused
        if hit is None or hit[0] is not source or hit[1].graph is not self.graph:
            hit = self.memo[key] = (source, self.const(make(), like=source))
        return hit[1]


@dataclass
class RewriteStats:
    """How many times each rule fired, and how many matches were rejected."""

    fired: Counter[str] = field(default_factory=Counter)
    rejected: int = 0
    erased: int = 0

    @property
    def total(self) -> int:
        return sum(self.fired.values())

    def as_stats(self) -> dict[str, int]:
        out = {f"rule:{k}": v for k, v in sorted(self.fired.items())}
        if self.erased:
            out["erased"] = self.erased
        return out


def erase_if_dead(graph: Graph, node: Node) -> int:
    """Erase `node` if pure and unread, then its producers that became dead. Returns how many were erased."""
    erased = 0
    stack = [node]
    while stack:
        n = stack.pop()
        if n.graph is not graph or not n.op.pure:  # an erased node has no graph
            continue
        if not all(o.is_dead for o in n.outputs):
            continue
        producers = [v.producer for v in n.inputs if v.producer is not None]
        graph.remove_node(n)
        erased += 1
        stack.extend(producers)
    return erased


_ANY = None
_MAX_KEYED_INPUTS = 4  # nodes with more inputs try every variant of their op (2**k keys would cost more)


def _input_key(p: Pattern) -> Any:
    """What a pattern demands of one input's producer: an op name, a constant, or nothing (None)."""
    if isinstance(p, Var):
        return _ANY
    if isinstance(p, Const):
        return "<const>"
    return p.op.name  # type: ignore[attr-defined]


class _RuleIndex:
    """Variants of the rules by root op and by what feeds each input, so a node tries only the variants whose
    first level it can match: commuted variants of nested patterns run into the hundreds (GELU has 96 rooted
    at `mul`), and trying each one at every `mul` cost 0.3 ms per node."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.by_key: dict[tuple[Any, ...], list[tuple[int, Rule, Pattern]]] = {}
        self.by_op: dict[str, list[tuple[int, Rule, Pattern]]] = {}
        self.cache: dict[tuple[Any, ...], list[tuple[Rule, Pattern]]] = {}
        order = 0
        for rule in sorted(rules, key=lambda r: -r.benefit):
            for variant in rule.variants:
                entry = (order, rule, variant)
                order += 1
                op = variant.op.name  # type: ignore[attr-defined]
                self.by_op.setdefault(op, []).append(entry)
                key = (op, len(variant.inputs), *(_input_key(p) for p in variant.inputs))  # type: ignore[attr-defined]
                self.by_key.setdefault(key, []).append(entry)

    def candidates(self, node: Node) -> list[tuple[Rule, Pattern]]:
        entries = self.by_op.get(node.op.name)
        if not entries:
            return []
        if len(node.inputs) > _MAX_KEYED_INPUTS:
            return [(r, p) for _, r, p in entries]
        have = tuple([v.producer.op.name if v.producer is not None else "<const>" if v.const is not None else _ANY
                      for v in node.inputs])
        key = (node.op.name, have)
        if key not in self.cache:  # the same few (op, producers) shapes recur at every layer
            options = [(_ANY,) if h is _ANY else (_ANY, h) for h in have]
            found: list[tuple[int, Rule, Pattern]] = []
            for combo in itertools.product(*options):
                found += self.by_key.get((node.op.name, len(have), *combo), ())
            found.sort(key=lambda e: e[0])
            self.cache[key] = [(r, p) for _, r, p in found]
        return self.cache[key]


def apply_rules(graph: Graph, rules: Sequence[Rule], ctx: PassContext | None = None, *,
                max_rewrites: int | None = None) -> RewriteStats:
    """Apply `rules` greedily until none matches. Rules are tried per node by root op, highest benefit first."""
    ctx = ctx if ctx is not None else PassContext()
    index = _RuleIndex(rules)
    stats = RewriteStats()
    memo: dict[Any, tuple[Value, Value]] = {}
    limit = max_rewrites if max_rewrites is not None else 10 * len(graph) + 1000
    worklist: deque[Node] = deque(graph)
    queued = {id(n) for n in worklist}
    while worklist:
        node = worklist.popleft()
        queued.discard(id(node))
        if node.is_erased or node.graph is not graph:
            continue
        for rule, pattern in index.candidates(node):
            new_nodes = _try_rule(graph, node, rule, pattern, ctx, stats, memo)
            if new_nodes is None:
                continue
            if stats.total > limit:
                top = ", ".join(f"{name} ({n}x)" for name, n in stats.fired.most_common(3))
                raise RewriteLimitError(f"rewriting did not converge after {stats.total} rewrites in pass "
                                        f"{ctx.current_pass or '?'}; rules that kept firing: {top}. Two rules may undo "
                                        "each other.")
            for m in new_nodes:
                if id(m) not in queued:
                    queued.add(id(m))
                    worklist.append(m)
            break
    return stats


def _try_rule(graph: Graph, node: Node, rule: Rule, pattern: Pattern, ctx: PassContext, stats: RewriteStats,
              memo: dict[Any, tuple[Value, Value]]) -> list[Node] | None:
    """Match, check and apply one rule at `node`. Returns the nodes to revisit, or None if it did not apply."""
    try:
        m = pattern.match(node.outputs[0])
    except MatchFailure as f:
        # A near miss: the root and at least one op below it matched. Failing right under the root is no
        # candidate (every `add` is not a residual LayerNorm), and reporting those would drown the real ones.
        if f.progress >= 2:
            stats.rejected += 1
            ctx.reject(rule.name, node, f.reason)
        return None
    if rule.check is not None:
        verdict = rule.check(m)
        if verdict is not True and verdict is not None:
            stats.rejected += 1
            if ctx.explain:
                reason = verdict() if callable(verdict) else verdict
                ctx.reject(rule.name, node, reason if isinstance(reason, str) else "the rule's check failed")
            return None
    rw = Rewriter(graph, node, memo)
    with graph.inserting_before(node):
        result = rule.replace(rw, m)
    if result is None:
        for n in reversed(rw.created):
            erase_if_dead(graph, n)
        ctx.reject(rule.name, node, "the replacement declined")
        return None
    new_values = [result] if isinstance(result, Value) else list(result)
    if len(new_values) != len(node.outputs):
        raise PassError(f"rule {rule.name!r} returned {len(new_values)} values for {len(node.outputs)} outputs of "
                        f"{node.describe()}")
    for old, new in zip(node.outputs, new_values):
        if old.type is not new.type and old.type is not None and new.type is not None and old.type != new.type:
            raise PassError(f"rule {rule.name!r} would change %{old.name} from {old.type} to {new.type} at "
                            f"{node.describe()}; add a check (e.g. same_type) to the rule")
    inputs = [v.producer for v in node.inputs if v.producer is not None]
    for old, new in zip(node.outputs, new_values):
        old.replace_all_uses_with(new)
    stats.erased += max(0, erase_if_dead(graph, node) - 1)
    for p in inputs:
        stats.erased += erase_if_dead(graph, p)
    stats.fired[rule.name] += 1
    # New nodes, and whoever now reads the new values, may match further rules.
    revisit = [n for n in rw.created if not n.is_erased]
    revisit += [u for v in new_values for u in v.users]
    return revisit
