"""Symbolic dims: a dim is an int, a symbol (`batch`) or an integer expression over symbols (`batch*seq`).

Expressions are kept as canonical strings (sympy's printing of the simplified expression), so two dims are
equal exactly when their strings are, hashing stays cheap, and the text form stays readable. sympy does the
algebra; results are cached because the same few expressions recur thousands of times in a transformer.

>>> from graphopt.ir.symbolic import dim_mul, dim_add, evaluate, free_symbols
>>> d = dim_mul("batch", "seq", 12)
>>> d, dim_add(d, "batch*seq"), evaluate(d, {"batch": 2, "seq": 8}), sorted(free_symbols(d))
('12*batch*seq', '13*batch*seq', 192, ['batch', 'seq'])
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Mapping
from typing import Union

import sympy

__all__ = ["Dim", "canon", "dim_add", "dim_sub", "dim_mul", "dim_floordiv", "dim_ceildiv", "divide",
           "evaluate", "free_symbols", "is_symbol", "to_sympy"]

Dim = Union[int, str]

IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# What may appear in an expression dim; anything else is rejected before sympy sees it (no eval of input).
_EXPR_RE = re.compile(r"[A-Za-z0-9_*+\-/() ,]+\Z")
_FUNCS = {"floor": sympy.floor, "ceiling": sympy.ceiling, "Max": sympy.Max, "Min": sympy.Min, "Mod": sympy.Mod}


def is_symbol(dim: object) -> bool:
    """True for a plain symbol like `batch` (not an int, not a compound expression)."""
    return isinstance(dim, str) and IDENT_RE.match(dim) is not None


@functools.lru_cache(maxsize=65536)
def to_sympy(dim: Dim) -> sympy.Expr:
    """The sympy expression of a dim. Symbols are positive integers."""
    if isinstance(dim, int):
        return sympy.Integer(dim)
    if not _EXPR_RE.match(dim):
        raise ValueError(f"{dim!r} is not a dim expression (ints, symbols, + - * /, floor, ceiling)")
    names = {n: sympy.Symbol(n, integer=True, positive=True) for n in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", dim)
             if n not in _FUNCS}
    try:
        expr = sympy.sympify(dim, locals={**names, **_FUNCS}, rational=True)
    except (sympy.SympifyError, SyntaxError, TypeError) as e:
        raise ValueError(f"cannot parse dim expression {dim!r}: {e}") from None
    return expr


def from_sympy(expr: sympy.Expr) -> Dim:
    """Canonical dim of a sympy expression: an int when it is constant, else its printed form."""
    expr = sympy.simplify(expr) if not (expr.is_Symbol or expr.is_Integer) else expr
    if expr.is_Integer:
        return int(expr)
    if not expr.free_symbols:
        raise ValueError(f"dim {expr} is not an integer")
    return str(expr).replace(" ", "")


@functools.lru_cache(maxsize=65536)
def canon(dim: Dim) -> Dim:
    """The canonical form of a dim: ints stay ints, `seq*batch` becomes `batch*seq`, `2*4` becomes 8."""
    if isinstance(dim, int) or IDENT_RE.match(dim):
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


@functools.lru_cache(maxsize=4096)
def _compiled(dim: str):
    expr = to_sympy(dim)
    args = sorted(expr.free_symbols, key=lambda s: s.name)
    fn = sympy.lambdify(args, expr, modules=[{"floor": math.floor, "ceiling": math.ceil}, "math"])
    return [a.name for a in args], fn


def evaluate(dim: Dim, bindings: Mapping[str, int]) -> int:
    """The int value of a dim given the symbols' sizes. KeyError names the first unbound symbol."""
    if isinstance(dim, int):
        return dim
    if IDENT_RE.match(dim):
        return int(bindings[dim])
    names, fn = _compiled(dim)
    return int(fn(*(int(bindings[n]) for n in names)))
