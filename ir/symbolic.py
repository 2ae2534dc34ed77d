"""Symbolic dims: a dim is an int, a symbol (`batch`) or an integer expression over symbols (`batch*seq`).

Expressions are kept as canonical strings (sympy's printing of the simplified expression), so two dims are
equal exactly when their strings are, hashing stays cheap, and the text form stays readable. sympy does the
algebra; results are cached because the same few expressions recur thousands of times in a transformer.

Dim text comes from model files, so it is never handed to `sympify` (which calls `eval`): `dimexpr.py` parses
it with a small grammar straight into sympy objects, and `evaluate` walks those objects instead of compiling
them with `lambdify`.

>>> from graphopt.ir.symbolic import dim_mul, dim_add, evaluate, free_symbols
>>> d = dim_mul("batch", "seq", 12)
>>> d, dim_add(d, "batch*seq"), evaluate(d, {"batch": 2, "seq": 8}), sorted(free_symbols(d))
('12*batch*seq', '13*batch*seq', 192, ['batch', 'seq'])
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Union

from .lazy import lazy_module
from .dimexpr import evaluate_expr, parse_dim, symbol

if TYPE_CHECKING:
    import sympy
else:
    sympy = lazy_module("sympy")  # 0.4 s to import: loaded when an expression is first parsed or simplified

__all__ = ["Dim", "canon", "dim_add", "dim_sub", "dim_mul", "dim_floordiv", "dim_ceildiv", "divide", "dim_max",
           "dim_min", "dim_compare",
           "evaluate", "free_symbols", "is_symbol", "to_sympy"]

Dim = Union[int, str]

IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def is_symbol(dim: object) -> bool:
    """True for a plain symbol like `batch` (not an int, not a compound expression)."""
    return isinstance(dim, str) and IDENT_RE.match(dim) is not None


@functools.lru_cache(maxsize=65536)
def to_sympy(dim: Dim) -> sympy.Expr:
    """The sympy expression of a dim (parsed by `dimexpr`'s grammar, never evaluated). Symbols are positive ints."""
    if isinstance(dim, int):
        return sympy.Integer(dim)
    return parse_dim(dim)


def from_sympy(expr: sympy.Expr) -> Dim:
    """Canonical dim of a sympy expression: an int when it is constant, else its printed form."""
    expr = sympy.simplify(expr) if not (expr.is_Symbol or expr.is_Integer) else expr
    if expr.is_Integer:
        return int(expr)
    if not expr.free_symbols:
        raise ValueError(f"dim {expr} is not an integer")
    text = str(expr).replace(" ", "")
    parse_dim(text)  # what the text form cannot read back (an unknown function) fails here, not at load time
    return text


@functools.lru_cache(maxsize=65536)
def canon(dim: Dim) -> Dim:
    """The canonical form of a dim: ints stay ints, `seq*batch` becomes `batch*seq`, `2*4` becomes 8."""
    if isinstance(dim, int):
        return dim
    if IDENT_RE.match(dim):
        symbol(dim)  # the grammar's rules for names: no keywords, no dunders
        return dim
    return from_sympy(to_sympy(dim))


def _fold(op, dims: tuple[Dim, ...]) -> Dim:
    if all(isinstance(d, int) for d in dims):
        return functools.reduce(op, dims)  # type: ignore[arg-type]
    return _fold_sym(op.__name__, dims)


@functools.lru_cache(maxsize=65536)
def _fold_sym(name: str, dims: tuple[Dim, ...]) -> Dim:
    exprs = [to_sympy(d) for d in dims]
    if name == "add":
        return from_sympy(sympy.Add(*exprs))
    if name == "mul":
        return from_sympy(sympy.Mul(*exprs))
    if name == "sub":
        return from_sympy(exprs[0] - exprs[1])
    if name == "floordiv":
        return from_sympy(sympy.floor(exprs[0] / exprs[1]))
    raise AssertionError(name)


def dim_add(*dims: Dim) -> Dim:
    return _fold(operator.add, dims)


def dim_sub(a: Dim, b: Dim) -> Dim:
    return _fold(operator.sub, (a, b))


def dim_mul(*dims: Dim) -> Dim:
    return _fold(operator.mul, dims) if dims else 1


def dim_floordiv(a: Dim, b: Dim) -> Dim:
    return _fold(operator.floordiv, (a, b))


def dim_ceildiv(a: Dim, b: Dim) -> Dim:
    return dim_floordiv(dim_add(a, dim_sub(b, 1)), b)


def dim_max(*dims: Dim) -> Dim:
    if all(isinstance(d, int) for d in dims):
        return max(dims)  # type: ignore[type-var]
    return from_sympy(sympy.Max(*(to_sympy(d) for d in dims)))


def dim_min(*dims: Dim) -> Dim:
    if all(isinstance(d, int) for d in dims):
        return min(dims)  # type: ignore[type-var]
    return from_sympy(sympy.Min(*(to_sympy(d) for d in dims)))


_RELATIONS = {"eq": operator.eq, "lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge}


def dim_compare(relation: str, a: Dim, b: Dim) -> bool | None:
    """`a <relation> b` (eq, lt, le, gt, ge) when the dims alone decide it, else None. Symbols are positive
    integers, so `seq == -1` is False and `seq >= 1` is True, while `seq == 1` is undecided.

    >>> dim_compare("eq", "seq", -1), dim_compare("ge", "2*seq", "seq"), dim_compare("eq", "seq", 1)
    (False, True, None)
    """
    if isinstance(a, int) and isinstance(b, int):
        return bool(_RELATIONS[relation](a, b))
    x, y = to_sympy(a), to_sympy(b)
    rel = sympy.Eq(x, y) if relation == "eq" else _RELATIONS[relation](x, y)
    if rel is sympy.true or rel is sympy.false:
        return bool(rel)
    diff = sympy.simplify(x - y)  # sympy decides `2*seq - seq > 0` but not always `2*seq > seq` directly
    sign = {"eq": diff.is_zero, "lt": diff.is_negative, "le": diff.is_nonpositive, "gt": diff.is_positive,
            "ge": diff.is_nonnegative}[relation]
    if sign is None and relation == "eq":
        sign = None if diff.is_nonzero is None else False
    return None if sign is None else bool(sign)


def divide(a: Dim, b: Dim) -> Dim | None:
    """a / b when it is exactly an integer (polynomial) dim, else None."""
    if isinstance(a, int) and isinstance(b, int):
        return a // b if b and a % b == 0 else None
    q = sympy.cancel(to_sympy(a) / to_sympy(b))
    num, den = sympy.fraction(q)
    if den != 1 or not (q.is_Integer or q.free_symbols):
        return None
    return from_sympy(q)


def free_symbols(dim: Dim) -> set[str]:
    if isinstance(dim, int):
        return set()
    if IDENT_RE.match(dim):
        return {dim}
    return {s.name for s in to_sympy(dim).free_symbols}


def evaluate(dim: Dim, bindings: Mapping[str, int]) -> int:
    """The int value of a dim given the symbols' sizes. KeyError names the first unbound symbol."""
    if isinstance(dim, int):
        return dim
    if IDENT_RE.match(dim):
        return int(bindings[dim])
    return evaluate_expr(to_sympy(dim), bindings)
