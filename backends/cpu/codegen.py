"""Graph → readable Python source calling PyTorch CPU kernels, one statement per node.

The source defines `make(W)`, which binds the weights (a list of tensors) to locals of a closure and returns
`forward(*inputs)`. Symbolic dims are read from the inputs' shapes at the top of `forward`, so one compiled
function serves every batch size and sequence length. Values are deleted after their last use, so
intermediate buffers are freed as early as the eager model would free them.
"""

from __future__ import annotations

import keyword
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from graphopt.ir import DType, Graph, Node, OpRef, Value
from graphopt.ir.symbolic import free_symbols, is_symbol

from .emit import EMITTERS, INFIX, PREPARE, legal_operands

_CONV = OpRef("conv")

_RESERVED = {"torch", "F", "rt", "W", "make", "forward", "floor", "ceiling", "Max", "Min", "Mod", "inf", "nan"}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Names:
    def __init__(self) -> None:
        self.taken: set[str] = set(_RESERVED)

    def claim(self, want: str, fallback: str) -> str:
        name = want if _IDENT.fullmatch(want) and not keyword.iskeyword(want) else fallback
        base, k = name, 1
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name


def channels_last_inputs(graph: Graph) -> list[Value]:
    """4-D graph inputs that feed a 2-D convolution: the ones a channels-last layout would start from."""
    return [v for v in graph.inputs if v.type.rank == 4 and v.type.dtype.is_float
            and any(_CONV.of(u) and u.inputs[0] is v for u in v.users)]


def generate(graph: Graph, channels_last: bool = False) -> tuple[str, list[np.ndarray]]:
    """The module source and the weights (in the order `make(W)` expects them).

    With `channels_last`, the inputs that feed convolutions are converted to NHWC on entry; torch's kernels keep
    that layout from op to op (values are the same; only the memory order and the speed differ).
    """
    names = _Names()
    local: dict[int, str] = {}
    inputs = [names.claim(v.name, f"in{i}") for i, v in enumerate(graph.inputs)]
    local.update({id(v): n for v, n in zip(graph.inputs, inputs)})

    symbols: dict[str, str] = {}
    bind_lines: list[str] = []
    for v, n in zip(graph.inputs, inputs):
        for axis, d in enumerate(v.type.shape):
            if is_symbol(d) and d not in symbols:
                symbols[d] = names.claim(d, f"sym_{d}")
                bind_lines.append(f"{symbols[d]} = {n}.shape[{axis}]")
    if channels_last:
        for v in channels_last_inputs(graph):
            bind_lines.append(f"{local[id(v)]} = {local[id(v)]}.contiguous(memory_format=torch.channels_last)")

    weights: list[np.ndarray] = []
    weight_lines: list[str] = []
    inline: dict[int, str] = {}
    for c in weight_values(graph):
        w = names.claim(f"w{len(weights)}", f"w{len(weights)}")
        local[id(c)] = w
        weight_lines.append(f"{w} = W[{len(weights)}]  # @{_comment(c.name)}: {c.type}")
        weights.append(c.const)  # type: ignore[arg-type]
        if c.type.rank == 0 and c.type.dtype != DType.BOOL and not c.type.dtype.is_wide_unsigned:
            inline[id(c)] = _literal(c.const.item())  # type: ignore[union-attr]

    from .delegate import regions

    nodes = list(graph)
    delegated = regions(graph)  # runs of nodes measured faster as one ONNX Runtime call (recurrent layers)
    at_end = {id(n): pos for pos, n in enumerate(nodes)}  # a delegated node computes where its region's last one is
    for r in set(delegated.values()):
        at_end.update({id(n): at_end[id(r.nodes[-1])] for n in r.nodes})
    last_use: dict[int, int] = {}
    for node in nodes:
        for v in node.inputs:
            last_use[id(v)] = max(last_use.get(id(v), -1), at_end[id(node)])
    keep = {id(v) for v in graph.outputs} | {id(v) for v in graph.inputs} | {id(c) for c in graph.constants.values()}

    body: list[str] = []
    prepared: dict[tuple[int, str], str] = {}
    origin = ""
    sessions: dict[int, str] = {}
    for pos, node in enumerate(nodes):
        region = delegated.get(node)
        if region is not None:
            if node is not region.nodes[-1]:
                continue  # computed with the region's last node
            session = names.claim(f"ort_{_stem(node.outputs[0].name)}", f"ort{len(sessions)}")
            sessions[id(region)] = session
            consts = ", ".join(f"{name!r}: {local[id(c)]}" for name, c in region.constants)
            weight_lines.append(f"{session} = rt.OrtNode({region.text!r}, {{{consts}}}, threads={region.threads})")
            expr = f"{session}({', '.join(local[id(v)] for v in region.fed)})"
            consumed: Sequence[Value] = region.fed
            outs = [names.claim(f"v{_stem(o.name)}", f"v{pos}_{i}") for i, o in enumerate(node.outputs)]
            local.update({id(o): n for o, n in zip(node.outputs, outs)})
            body.append(f"# {', '.join(dict.fromkeys(_comment(n.origin) for n in region.nodes if n.origin))} "
                        f"({len(region.nodes)} nodes on ONNX Runtime, measured faster here)")
            origin = ""
            body.append(f"{', '.join(outs)}, = {expr}")
            _free(body, consumed, node, pos, outs, local, last_use, keep)
            continue
        args = [_operand(node, i, v, local, inline) for i, v in enumerate(node.inputs)]
        prep = PREPARE[node.op.name](node) if node.op.name in PREPARE else None
        if prep is not None:  # a constant input transformed once, in make(), not on every call
            i, template = prep
            setup = template.format(args[i], a=args)  # `{a[2]}` names another input (a scale, a bias)
            key = (id(node.inputs[i]), setup)
            if key not in prepared:
                prepared[key] = names.claim(f"{args[i]}_packed", f"p{len(prepared)}")
                weight_lines.append(f"{prepared[key]} = {setup}")
            args.append(prepared[key])  # the emitter finds it after the node's own inputs
        attrs = _render_attrs(node, symbols)
        args, cast_back = legal_operands(node, args)
        try:
            expr = EMITTERS[node.op.name](node, args, attrs)
        except NotImplementedError as e:
            raise NotImplementedError(f"{node.describe()}: {e}") from None
        if cast_back is not None:
            expr = f"({expr}).to({cast_back})"
        outs = [names.claim(f"v{_stem(o.name)}", f"v{pos}_{i}") for i, o in enumerate(node.outputs)]
        local.update({id(o): n for o, n in zip(node.outputs, outs)})
        if node.origin != origin:
            origin = node.origin
            body.append(f"# {_comment(origin) if origin else '(no module)'}")
        target = outs[0] if len(outs) == 1 and node.op.variadic_outputs is None else ", ".join(outs) + (
            "," if len(outs) == 1 else "")
        body.append(f"{target} = {expr}")
        for o, name in zip(node.outputs, outs):  # data-dependent sizes (nonzero's count): bound where computed
            for axis, d in enumerate(o.type.shape if o.type is not None else ()):
                if is_symbol(d) and d not in symbols:
                    symbols[d] = names.claim(d, f"sym_{d}")
                    body.append(f"{symbols[d]} = {name}.shape[{axis}]")
        _free(body, node.inputs, node, pos, outs, local, last_use, keep)

    returned = ", ".join(local[id(v)] for v in graph.outputs)
    # The whole graph one ONNX Runtime call, on the graph's inputs and returning its outputs (the LSTM classifier):
    # the executable calls the session itself, without this function's frame or torch's inference mode — no torch
    # op runs — which were 10-15% of such a model's time in single calls here.
    whole = None
    if len(sessions) == 1 and len(delegated) == len(nodes) and not bind_lines:
        region = next(iter(delegated.values()))
        if list(region.fed) == list(graph.inputs) and list(region.nodes[-1].outputs) == list(graph.outputs):
            whole = next(iter(sessions.values()))
    lines = [
        f"# Generated by graphopt from graph @{_comment(graph.name)}: {len(nodes)} nodes, {len(weights)} weights"
        f"{', channels-last activations' if channels_last else ''}.",
        "# One statement per IR node; comments give the module each node came from.",
        "import torch",
        "import torch.nn.functional as F",
        "from math import floor, ceil as ceiling, inf, nan",
        "from graphopt.backends.cpu import runtime as rt",
        "Max, Min, Mod = max, min, lambda a, b: a % b",
        "",
        "",
        "def make(W):",
        *("    " + ln for ln in weight_lines),
        "",
        f"    def forward({', '.join(inputs)}):",
        *("        " + ln for ln in bind_lines + body),
        f"        return [{returned}]",
        "",
        *([f"    forward.whole_graph_session = {whole}"] if whole else []),
        "    return forward",
        "",
    ]
    return "\n".join(lines), weights


def _free(body: list[str], consumed: Sequence[Value], node: Node, pos: int, outs: list[str], local: dict[int, str],
          last_use: dict[int, int], keep: set[int]) -> None:
    """`del` the values whose last use was at `pos`, and `node`'s outputs nothing uses."""
    dead = [local[id(v)] for v in dict.fromkeys(consumed) if last_use.get(id(v)) == pos and id(v) not in keep]
    dead += [n for o, n in zip(node.outputs, outs) if o.num_uses == 0 and id(o) not in keep]
    if dead:
        body.append(f"del {', '.join(dead)}")


def weight_values(graph: Graph) -> list[Value]:
    """The constants `make(W)` takes, in order: those a node or an output reads."""
    return [c for c in graph.constants.values() if c.num_uses or c.output_refs]


def _comment(text: str) -> str:
    """Model-file text (names, origins) made safe for a `#` comment: escaped as repr() escapes it, so a newline,
    carriage return or line separator in a crafted ONNX node name cannot end the comment and start a statement."""
    return repr(str(text))[1:-1]


def _stem(name: str) -> str:
    return name if re.fullmatch(r"[0-9]+", name) else re.sub(r"[^A-Za-z0-9_]", "_", name)


def _literal(x: Any) -> str:
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
    return repr(x)


def _operand(node: Node, i: int, v: Value, local: dict[int, str], inline: dict[int, str]) -> str:
    """A local's name, or a Python scalar where torch's scalar rules give the IR's dtype."""
    if id(v) in inline and node.op.name in INFIX and len(node.inputs) == 2:
        other = node.inputs[1 - i]
        if id(other) not in inline and other.type.rank > 0:
            d, o = v.type.dtype, other.type.dtype
            if (d.is_float and o.is_float) or (d.is_int and (o.is_int or o.is_float)):
                text = inline[id(v)]
                return f"({text})" if text.startswith("-") else text
    return local[id(v)]


def _render_attrs(node: Node, symbols: dict[str, str]) -> dict[str, Any]:
    attrs = dict(node.attrs)
    for key, spec in node.op.attrs.items():
        if spec.kind == "dim":
            attrs[key] = _dim(attrs[key], symbols)
        elif spec.kind == "dims" and attrs[key] is not None:
            attrs[key] = tuple(_dim(d, symbols) for d in attrs[key])
    return attrs


def _dim(d: Any, symbols: dict[str, str]) -> Any:
    if isinstance(d, int):
        return d
    missing = free_symbols(d) - set(symbols)  # parses `d` with the dim grammar: nothing else reaches the source
    if missing:
        raise NotImplementedError(f"dim {d} uses {', '.join(sorted(missing))}, which no graph input binds")
    return _IDENT.sub(lambda m: symbols.get(m.group(0), m.group(0)), d)


def compile_source(source: str, weights: Sequence[Any], filename: str) -> Any:
    """exec the generated module (registered with linecache so tracebacks show the generated line)."""
    return load_make(source, filename)(list(weights))


def load_make(source: str, filename: str) -> Any:
    """The generated module's `make(W) -> forward`, for callers that rebuild forward from new weights."""
    import linecache

    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace: dict[str, Any] = {"__name__": filename}
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - our own generated code
    return namespace["make"]
