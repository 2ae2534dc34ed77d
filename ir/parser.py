"""Parse the text form back into a Graph. Errors carry line and column.

>>> from graphopt.ir import parse
>>> g = parse('''
... graph @f(%x: f32[2]) {
...   const @one: f32[] = 1.0
...   %0: f32[2] = mul(%x, @one)
...   return %0
... }''')
>>> [n.op.name for n in g]
['mul']
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, NamedTuple, NoReturn

import numpy as np

from graphopt.errors import GraphoptError, ParseError, VerificationError

from .dtypes import DType
from .graph import Graph
from .ops.registry import get_op
from .types import TensorType
from .value import Value

__all__ = ["parse"]


class _Tok(NamedTuple):
    kind: str
    text: str
    pos: int


_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\n]+|\#[^\n]*|//[^\n]*)
  | (?P<vname>%(?:[A-Za-z0-9_.]+|"(?:[^"\\]|\\.)*"))
  | (?P<cname>@(?:[A-Za-z0-9_.]+|"(?:[^"\\]|\\.)*"))
  | (?P<num>-?(?:\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\.\d+(?:[eE][-+]?\d+)?|\d+|inf\b|nan\b))
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[()\[\]{},:=?])
    """,
    re.VERBOSE,
)


class _Parser:
    def __init__(self, text: str, constants: Mapping[str, Any]) -> None:
        self.text = text
        self.constants = constants
        self.toks = self._lex()
        self.i = 0

    # -- lexing and positions --------------------------------------------------------------------------
    def _lex(self) -> list[_Tok]:
        toks: list[_Tok] = []
        pos = 0
        for m in _TOKEN.finditer(self.text):
            if m.start() != pos:  # finditer skipped something no token matches
                break
            pos = m.end()
            kind = m.lastgroup
            if kind != "ws":
                toks.append(_Tok(kind, m.group(), m.start()))  # type: ignore[arg-type]
        if pos != len(self.text):
            self._fail(f"unexpected character {self.text[pos]!r}", pos)
        toks.append(_Tok("eof", "", len(self.text)))
        return toks

    def _fail(self, message: str, pos: int) -> NoReturn:
        line = self.text.count("\n", 0, pos) + 1
        start = self.text.rfind("\n", 0, pos) + 1
        end = self.text.find("\n", pos)
        source = self.text[start:end if end >= 0 else len(self.text)]
        raise ParseError(message, line, pos - start + 1, source)

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def next(self) -> _Tok:
        tok = self.toks[self.i]
        if tok.kind != "eof":  # eof is sticky
            self.i += 1
        return tok

    def expect(self, kind: str, text: str | None = None) -> _Tok:
        tok = self.next()
        if tok.kind != kind or (text is not None and tok.text != text):
            want = repr(text) if text is not None else kind
            got = repr(tok.text) if tok.text else "end of input"
            self._fail(f"expected {want}, got {got}", tok.pos)
        return tok

    def accept(self, text: str) -> bool:
        if self.peek().text == text and self.peek().kind in ("punct", "ident"):
            self.next()
            return True
        return False

    # -- grammar ---------------------------------------------------------------------------------------
    def parse_graph(self) -> Graph:
        self.expect("ident", "graph")
        graph = Graph(_name(self.expect("cname").text))
        self.graph = graph
        self.expect("punct", "(")
        if not self.accept(")"):
            while True:
                tok = self.expect("vname")
                self.expect("punct", ":")
                t = self.parse_type()
                if t is None:
                    self._fail("graph inputs need a type", tok.pos)
                self._guard(tok, lambda: graph.add_input(_name(tok.text), t))  # noqa: B023 (called at once)
                if self.accept(")"):
                    break
                self.expect("punct", ",")
        self.expect("punct", "{")
        while self.peek().text == "const":
            self.parse_const()
        while not (self.peek().kind == "ident" and self.peek().text == "return"):
            if self.peek().kind != "vname":
                tok = self.peek()
                self._fail(f"expected a node (%name: type = op(...)) or 'return', got "
                           f"{repr(tok.text) if tok.text else 'end of input'}", tok.pos)
            self.parse_node()
        self.next()
        outs: list[Value] = []
        if self.peek().text != "}":
            outs.append(self.parse_operand())
            while self.accept(","):
                outs.append(self.parse_operand())
        graph.set_outputs(outs)
        self.expect("punct", "}")
        self.expect("eof")
        return graph

    def parse_type(self) -> TensorType | None:
        if self.accept("?"):
            return None
        tok = self.expect("ident")
        try:
            dtype = DType.parse(tok.text)
        except ValueError as e:
            self._fail(str(e), tok.pos)
        self.expect("punct", "[")
        dims: list[int | str] = []
        if not self.accept("]"):
            while True:
                d = self.next()
                if d.kind == "num" and d.text.isdigit():
                    dims.append(int(d.text))
                elif d.kind == "ident":
                    dims.append(d.text)
                elif d.kind == "str":
                    dims.append(json.loads(d.text))
                else:
                    self._fail(f"expected a dim (an int or a symbol), got {d.text!r}", d.pos)
                if self.accept("]"):
                    break
                self.expect("punct", ",")
        try:
            return TensorType(dtype, tuple(dims))
        except (TypeError, ValueError) as e:
            self._fail(str(e), tok.pos)

    def parse_const(self) -> None:
        self.next()
        tok = self.expect("cname")
        name = _name(tok.text)
        self.expect("punct", ":")
        t = self.parse_type()
        if t is None or not t.is_static:
            self._fail("a constant needs a static type", tok.pos)
        assert t is not None
        self.expect("punct", "=")
        body = self.peek()
        if body.kind == "ident" and body.text == "external":
            self.next()
            if name not in self.constants:
                self._fail(f"constant @{name} is external but no data was given; pass constants={{{name!r}: array}}",
                           tok.pos)
            data = np.asarray(self.constants[name])
        else:
            try:
                data = np.array(self.parse_attr_value(), dtype=t.dtype.numpy)
            except (TypeError, ValueError) as e:
                self._fail(f"bad literal for @{name}: {e}", body.pos)
        if data.shape != t.shape or data.dtype != t.dtype.numpy:
            self._fail(f"@{name} is declared {t} but its data is {DType.from_numpy(data.dtype)}"
                       f"[{','.join(map(str, data.shape))}]", tok.pos)
        self._guard(tok, lambda: self.graph.add_constant(data, name))

    def parse_operand(self) -> Value:
        tok = self.next()
        if tok.kind not in ("vname", "cname"):
            self._fail(f"expected a value (%name or @name), got {tok.text!r}", tok.pos)
        name = _name(tok.text)
        try:
            value = self.graph.value(name)
        except KeyError:
            self._fail(f"use of undefined value {tok.text}", tok.pos)
        if value.is_constant != (tok.kind == "cname"):
            self._fail(f"{tok.text} is a {'constant' if value.is_constant else 'value'}; "
                       f"write {'@' if value.is_constant else '%'}{name}", tok.pos)
        return value

    def parse_node(self) -> None:
        first = self.peek()
        names, types = [], []
        while True:
            tok = self.expect("vname")
            self.expect("punct", ":")
            names.append(_name(tok.text))
            types.append(self.parse_type())
            if not self.accept(","):
                break
        self.expect("punct", "=")
        op_tok = self.expect("ident")
        try:
            op = get_op(op_tok.text)
        except GraphoptError as e:
            self._fail(str(e), op_tok.pos)
        self.expect("punct", "(")
        inputs: list[Value] = []
        if not self.accept(")"):
            while True:
                inputs.append(self.parse_operand())
                if self.accept(")"):
                    break
                self.expect("punct", ",")
        attrs: dict[str, Any] = {}
        attr_pos = self.peek().pos
        if self.accept("{"):
            if not self.accept("}"):
                while True:
                    key = self.expect("ident")
                    self.expect("punct", "=")
                    attrs[key.text] = self.parse_attr_value()
                    if self.accept("}"):
                        break
                    self.expect("punct", ",")
        origin = ""
        if self.peek().text == "loc" and self.peek().kind == "ident":
            self.next()
            self.expect("punct", "(")
            origin = json.loads(self.expect("str").text)
            self.expect("punct", ")")
        try:
            attrs = op.check_attrs(attrs)
        except TypeError as e:
            self._fail(str(e), attr_pos)
        reason = op.check_arity(len(inputs))
        if reason:
            self._fail(reason, op_tok.pos)
        if len(names) != op.num_outputs(attrs, len(inputs)):
            self._fail(f"{op.name} produces {op.num_outputs(attrs, len(inputs))} results, {len(names)} named",
                       first.pos)
        self._guard(first, lambda: self.graph.add_node(op, inputs, attrs, types=types, names=names, origin=origin))

    def parse_attr_value(self) -> Any:
        tok = self.next()
        if tok.kind == "num":
            text = tok.text
            is_float = any(c in text for c in ".eEn") or text.endswith("inf")
            return float(text) if is_float else int(text)
        if tok.kind == "str":
            return json.loads(tok.text)
        if tok.kind == "ident":
            return {"true": True, "false": False, "none": None}.get(tok.text, tok.text)
        if tok.text == "[":
            items: list[Any] = []
            if self.accept("]"):
                return items
            while True:
                items.append(self.parse_attr_value())
                if self.accept("]"):
                    return items
                self.expect("punct", ",")
        return self._fail(f"expected a value, got {tok.text or 'end of input'!r}", tok.pos)

    def _guard(self, tok: _Tok, action: Any) -> Any:
        try:
            return action()
        except (VerificationError, ValueError, TypeError) as e:
            self._fail(str(e), tok.pos)


def _name(token: str) -> str:
    body = token[1:]
    return json.loads(body) if body.startswith('"') else body


def parse(text: str, constants: Mapping[str, Any] | None = None) -> Graph:
    """Build a Graph from its text form. `constants` supplies the data of constants printed as `external`.

    Raises ParseError (with `.line` and `.column`) on malformed text, unknown ops or attributes, and
    undefined or redefined values. Types are taken as written; call `graph.verify()` to check them.
    """
    return _Parser(text, constants or {}).parse_graph()
