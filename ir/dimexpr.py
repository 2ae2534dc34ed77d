"""A small grammar for dim expressions: text from model files → sympy objects, and sympy objects → ints.

Dims arrive as text from `.gir` files, artifacts and ONNX/torch symbol names, so this text is untrusted.
`sympy.sympify` would `eval` it (a generator expression inside `Max(...)` reaches Python's builtins), and a
dim such as `9**9**9**9` would never finish. This parser accepts only

    expr  := term (('+' | '-') term)*
    term  := unary (('*' | '/' | '//') unary)*
    unary := '-' unary | power
    power := atom ('**' INT)?                 exponent a literal of at most MAX_EXPONENT
    atom  := INT | SYMBOL | FUNC '(' expr (',' expr)* ')' | '(' expr ')'
    FUNC  := Max | Min | Mod | floor | ceiling

with bounded text length, nesting depth and integer size, and builds the sympy objects directly. `/` is exact
division (what sympy prints inside `floor(batch/2)`); `//` is floor division.

>>> parse_dim("floor((batch + 1)/2)*seq")
seq*floor(batch/2 + 1/2)
>>> evaluate_expr(parse_dim("Max(batch, 2*seq) - 1"), {"batch": 3, "seq": 5})
9
"""

from __future__ import annotations

import functools
import keyword
import math
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import TYPE_CHECKING

from .lazy import lazy_module

if TYPE_CHECKING:
    import sympy
else:
    sympy = lazy_module("sympy")  # 0.4 s to import: loaded when an expression is first parsed or simplified

__all__ = ["MAX_LENGTH", "parse_dim", "evaluate_expr", "DimSyntaxError"]

MAX_LENGTH = 2000  # characters of one dim expression
MAX_DEPTH = 64  # nested parentheses / unary minus / calls
MAX_EXPONENT = 8  # `x**k`: sympy prints seq*seq as seq**2; nothing larger appears in real shapes
MAX_INT = 2**63  # literals beyond int64 are not sizes
# function name -> (sympy attribute, arity; -1: any); looked up when called, so sympy loads on first use
_FUNCS: dict[str, tuple[str, int]] = {"Max": ("Max", -1), "Min": ("Min", -1), "Mod": ("Mod", 2),
                                      "floor": ("floor", 1), "ceiling": ("ceiling", 1)}
_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z_][A-Za-z0-9_]*)|(\*\*|//|[-+*/(),]))")


class DimSyntaxError(ValueError):
    """The text is not a dim expression of the grammar above."""


@functools.lru_cache(maxsize=65536)
def symbol(name: str) -> sympy.Symbol:
    """The sympy symbol of a dim name: a positive integer. Keywords and dunder names are refused."""
    if keyword.iskeyword(name) or name.startswith("__"):
        raise DimSyntaxError(f"{name!r} cannot name a dim")
    return sympy.Symbol(name, integer=True, positive=True)


def parse_dim(text: str) -> sympy.Expr:
    """Parse one dim expression into sympy objects; DimSyntaxError says what is wrong and where."""
    if not isinstance(text, str):
        raise DimSyntaxError(f"a dim expression must be text, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise DimSyntaxError(f"dim expression is {len(text)} characters long; at most {MAX_LENGTH} are allowed")
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []  # (kind, text, position)
        pos = 0
        while pos < len(text):
            if text[pos:].isspace():
                break
            m = _TOKEN.match(text, pos)
            if m is None:
                raise DimSyntaxError(f"unexpected character {text[pos]!r} at {pos} in dim {text!r}")
            kind = "int" if m.group(1) else "name" if m.group(2) else "op"
            self.tokens.append((kind, m.group(m.lastindex or 0), m.start(m.lastindex or 0)))
            pos = m.end()
        self.i = 0
        self.depth = 0

    def parse(self) -> sympy.Expr:
        if not self.tokens:
            raise DimSyntaxError("empty dim expression")
        out = self.expr()
        if self.i != len(self.tokens):
            self.fail("unexpected")
        return out

    # -- helpers ------------------------------------------------------------------------------------------
    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, text: str) -> bool:
        tok = self.peek()
        if tok is not None and tok[0] == "op" and tok[1] == text:
            self.i += 1
            return True
        return False

    def fail(self, what: str) -> None:
        tok = self.peek()
        where = f"{tok[1]!r} at {tok[2]}" if tok else "the end"
        raise DimSyntaxError(f"{what} {where} in dim expression {self.text!r}")

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise DimSyntaxError(f"dim expression nests deeper than {MAX_DEPTH}")

    # -- grammar ------------------------------------------------------------------------------------------
    def expr(self) -> sympy.Expr:
        out = self.term()
        while True:
            if self.take("+"):
                out = out + self.term()
            elif self.take("-"):
                out = out - self.term()
            else:
                return out

    def term(self) -> sympy.Expr:
        out = self.unary()
        while True:
            if self.take("*"):
                out = out * self.unary()
            elif self.take("//"):
                out = sympy.floor(out / self._divisor())
            elif self.take("/"):
                out = out / self._divisor()
            else:
                return out

    def _divisor(self) -> sympy.Expr:
        d = self.unary()
        if d == 0:
            raise DimSyntaxError(f"division by zero in dim expression {self.text!r}")
        return d

    def unary(self) -> sympy.Expr:
        if self.take("-"):
            self.nest()
            out = -self.unary()
            self.depth -= 1
            return out
        return self.power()

    def power(self) -> sympy.Expr:
        base = self.atom()
        if not self.take("**"):
            return base
        tok = self.peek()
        if tok is None or tok[0] != "int" or int(tok[1]) > MAX_EXPONENT:
            self.fail(f"an exponent must be an integer literal of at most {MAX_EXPONENT}, not")
        self.i += 1
        out = base ** int(tok[1])  # type: ignore[index]
        if out.is_Integer and abs(int(out)) >= MAX_INT:
            raise DimSyntaxError(f"dim expression {self.text!r} exceeds int64")
        return out

    def atom(self) -> sympy.Expr:
        tok = self.peek()
        if tok is None:
            self.fail("expected a number, a symbol or '(' at")
        kind, text, _ = tok  # type: ignore[misc]
        if kind == "int":
            self.i += 1
            value = int(text)
            if value >= MAX_INT:
                raise DimSyntaxError(f"integer {text[:30]} in dim expression exceeds int64")
            return sympy.Integer(value)
        if kind == "name":
            self.i += 1
            return self.call(text) if text in _FUNCS else symbol(text)
        if self.take("("):
            self.nest()
            out = self.expr()
            if not self.take(")"):
                self.fail("expected ')' at")
            self.depth -= 1
            return out
        self.fail("expected a number, a symbol or '(' at")
        raise AssertionError  # unreachable: fail raises

    def call(self, name: str) -> sympy.Expr:
        fn, arity = _FUNCS[name]
        if not self.take("("):
            self.fail(f"expected '(' after {name} at")
        self.nest()
        args = [self.expr()]
        while self.take(","):
            args.append(self.expr())
        if not self.take(")"):
            self.fail("expected ')' at")
        self.depth -= 1
        if arity >= 0 and len(args) != arity:
            raise DimSyntaxError(f"{name} takes {arity} argument(s), got {len(args)} in {self.text!r}")
        return getattr(sympy, fn)(*args)  # type: ignore[no-any-return]


def evaluate_expr(expr: sympy.Expr, bindings: Mapping[str, int]) -> int:
    """The int value of a dim's sympy expression under `bindings`, in exact rational arithmetic.

    Walks the expression tree (no `lambdify`, so no generated code); KeyError names an unbound symbol.
    """
    value = _eval(expr, bindings)
    if value.denominator != 1:
        raise ValueError(f"dim {expr} is not an integer for {dict(bindings)}")
    return int(value)


def _eval(e: sympy.Expr, b: Mapping[str, int]) -> Fraction:
    if e.is_Integer:
        return Fraction(int(e))
    if e.is_Rational:
        return Fraction(int(e.p), int(e.q))
    if e.is_Symbol:
        return Fraction(int(b[e.name]))
    args = [_eval(a, b) for a in e.args]
    if isinstance(e, sympy.Add):
        return sum(args, Fraction(0))
    if isinstance(e, sympy.Mul):
        return math.prod(args, start=Fraction(1))
    if isinstance(e, sympy.Pow):
        return args[0] ** int(args[1])
    if isinstance(e, sympy.floor):
        return Fraction(math.floor(args[0]))
    if isinstance(e, sympy.ceiling):
        return Fraction(math.ceil(args[0]))
    if isinstance(e, sympy.Max):
        return max(args)
    if isinstance(e, sympy.Min):
        return min(args)
    if isinstance(e, sympy.Mod):
        return args[0] % args[1]
    raise ValueError(f"cannot evaluate dim expression {e} ({type(e).__name__})")
