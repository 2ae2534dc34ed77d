"""Differential fuzzing: random valid graphs through every pass and pipeline on every target, against the reference.

Each graph is built from a seed (so every finding reproduces from `graphopt fuzz --seed S --graphs 1`), with ops
chosen where passes have work to do: elementwise chains, broadcasts, reductions, layout ops that cancel, linears
and convolutions with constant weights, batch norms, attention written in the orders exporters use, and float
attributes like -0.0 that compare equal to 0.0. The reference interpreter on the untouched graph is the truth; a
run is `ok` (matches within float rounding, NaN and infinities in the same places), `refused` (a GraphoptError:
a clean refusal), `mismatch` (a silently wrong answer — a miscompile), or `crash` (any other exception).

>>> report = fuzz(graphs=3, seed=0, pipelines=["O1"], targets=["reference"])
>>> report.counts["mismatch"], report.counts["crash"]
(0, 0)
"""

from __future__ import annotations

import random
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphopt.errors import GraphoptError
from graphopt.ir import DType, Graph, TensorType, Value

__all__ = ["fuzz", "random_graph", "check", "bisect", "shrink", "replay", "FuzzReport", "Finding"]

# exp is left out: chained, it overflows or feeds sin/floor arguments of 1e9, where every library rounds its own
# way (ill-conditioned, not miscompiled). reciprocal is left out for the reason given at _BINARY.
# floor is left out: of a computed value it turns a one-ulp difference in a GEMM's summation order into a
# difference of 1 (found by `graphopt fuzz`, seed 102578: floor(tanh(q·k·W)) near 0); it runs on graph inputs only.
_UNARY = ["relu", "neg", "tanh", "sigmoid", "abs", "gelu", "silu", "sqrt", "erf", "identity", "sin", "log1p"]
# `div` by a computed value is left out: 1/x near a zero crossing amplifies one-ulp kernel differences (gelu in numpy
# vs torch) past any tolerance; division appears by constants, and as 1/x after leaky_relu where exact zeros are
# the point (the sign of zero)
# the point (the sign of zero). maximum/minimum of +0.0 and -0.0 is left unspecified by IEEE 754 and differs between
# numpy, torch and ONNX Runtime; they are drawn only where no zero can reach them ("minmax")
_BINARY = ["add", "sub", "mul"]


@dataclass
class Finding:
    """One run that did not end `ok` or `refused`: enough to reproduce it, bisected and shrunk when asked."""

    seed: int
    pipeline: str
    target: str
    kind: str  # mismatch | crash
    detail: str
    graph: str
    first_bad: str = ""  # the first pass whose prefix of the pipeline fails ("" before bisection; "(none)": target)
    reproducer: str = ""  # path of the shrunk .gir written for it

    def __str__(self) -> str:
        text = f"[{self.kind}] seed {self.seed}, pipeline {self.pipeline!r}, target {self.target}: {self.detail}"
        if self.first_bad:
            text += (f"\n  first failing pass: {self.first_bad}" if self.first_bad != "(none)" else
                     f"\n  fails with no pass at all: a bug of the {self.target} target")
        if self.reproducer:
            return text + (f"\n  reproduce: graphopt fuzz --replay {self.reproducer} --seed {self.seed} --pipelines "
                           f"'{self.pipeline}' --targets {self.target}")
        return text + (f"\n  reproduce: graphopt fuzz --seed {self.seed} --graphs 1 --pipelines '{self.pipeline}' "
                       f"--targets {self.target}")


@dataclass
class FuzzReport:
    graphs: int = 0
    runs: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    by_run: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (pipeline, target, kind)
    findings: list[Finding] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{self.graphs} graphs, {self.runs} runs: " + ", ".join(f"{k} {self.counts[k]}" for k in
                                                                          ("ok", "refused", "mismatch", "crash"))]
        for f in self.findings[:20]:
            lines.append(str(f))
        return "\n".join(lines)


class _Builder:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.g = Graph("fuzz")
        self.values: list[Value] = []

    def pick(self, rank: int | None = None) -> Value:
        pool = [v for v in self.values if rank is None or v.type.rank == rank]
        return self.rng.choice(pool or self.values)

    def const(self, shape: tuple[int, ...], scale: float = 1.0) -> Value:
        data = np.asarray(np.random.default_rng(self.rng.randrange(1 << 30)).standard_normal(shape) * scale,
                          np.float32)
        return self.g.add_constant(data)

    def scalar(self, value: float) -> Value:
        return self.g.add_constant(np.float32(value))

    def add(self, op: str, inputs: list[Value | None], attrs: dict[str, Any] | None = None) -> Value | None:
        if any(v is None for v in inputs):
            return None  # an operand could not be built
        try:
            v = self.g.add(op, [v for v in inputs if v is not None], attrs or {})
        except GraphoptError:
            return None  # the IR refuses this combination (a shape mismatch): draw again
        if isinstance(v, tuple):
            v = v[0]
        self.values.append(v)
        return v


def _step(b: _Builder) -> None:
    r = b.rng
    kind = r.choice(["unary", "unary", "binary", "binary", "scalar", "reduce", "softmax", "layout", "linear",
                     "conv", "attention", "slope", "cast", "concat", "minmax", "norm", "gelu", "mlp", "bmm",
                     "recurrent", "recurrent"])
    x = b.pick()
    if kind == "unary":
        op = r.choice(_UNARY)
        if op in ("sqrt", "log1p"):  # kept off their singular points: sqrt at 0 and log1p at -1 turn a one-ulp
            x = b.add("add", [b.add("abs", [x]), b.scalar(1.0)]) or x  # difference upstream (ORT's sigmoid tail,
        if op == "sin":                                                  # tanh at -1) into 1e-4 (seeds 108943, 109374)
            x = b.add("tanh", [x]) or x  # sin(1e7) turns a one-ulp difference upstream into O(1) (seed 95448: (x+c)⁶)
        b.add(op, [x])
    elif kind == "minmax":  # operands kept away from zero (see _BINARY)
        y = b.add("add", [b.add("sigmoid", [b.pick(x.type.rank)]) or x, b.scalar(1.0)])
        z = b.add("add", [b.add("sigmoid", [x]) or x, b.scalar(1.0)])
        if y is not None and z is not None and y.type.shape == z.type.shape:
            b.add(r.choice(["maximum", "minimum"]), [z, y])
    elif kind == "binary":
        y = b.pick(x.type.rank)
        if y.type.shape != x.type.shape and r.random() < 0.5:  # a broadcast against a row
            y = b.const((x.type.shape[-1],) if x.type.rank and isinstance(x.type.shape[-1], int) else ())
        b.add(r.choice(_BINARY), [x, y] if r.random() < 0.5 else [y, x])
    elif kind == "scalar":
        c = b.scalar(r.choice([0.0, -0.0, 1.0, 0.5, -2.0, 3.0]))
        op = r.choice(["add", "mul", "sub", "div"])
        if op == "div" and float(c.const) == 0.0:  # x / 0 feeds infinities to GEMMs, whose inf - inf differs by
            op = "mul"                              # library (numpy NaN, ONNX Runtime's MLAS inf): out of scope
        b.add(op, [x, c] if op == "div" or r.random() < 0.7 else [c, x])  # x / c, never c / x (see _BINARY)
    elif kind == "reduce" and x.type.rank:
        b.add(r.choice(["reduce_sum", "reduce_mean", "reduce_max"]), [x],
              {"axes": [r.randrange(x.type.rank)], "keepdims": r.random() < 0.5})
    elif kind == "softmax" and x.type.rank:
        b.add("softmax", [x], {"axis": -1})
    elif kind == "layout" and x.type.rank >= 2:
        perm = list(range(x.type.rank))
        perm[-1], perm[-2] = perm[-2], perm[-1]
        t = b.add("transpose", [x], {"perm": perm})
        if t is not None and r.random() < 0.5:
            b.add("transpose", [t], {"perm": perm})
    elif kind == "linear" and x.type.rank >= 3 and all(isinstance(d, int) for d in x.type.shape) \
            and r.random() < 0.5:
        _flat_linear(b, x)
    elif kind == "linear" and x.type.rank >= 2 and isinstance(x.type.shape[-1], int):
        n_in, n_out = x.type.shape[-1], r.choice([3, 4, 8])
        w = b.const((n_in, n_out), 0.5)
        h = b.add("matmul", [x, w])
        if h is not None and r.random() < 0.6:
            h = b.add("add", [h, b.const((n_out,))])
        if h is not None and r.random() < 0.5:
            b.add(r.choice(["relu", "gelu", "tanh"]), [h])
    elif kind == "mlp" and x.type.rank >= 2 and isinstance(x.type.shape[-1], int):
        _mlp(b, x)
    elif kind == "bmm":
        _bmm(b)
    elif kind == "recurrent" and x.type.rank in (2, 3) and x.type.dtype == DType.F32 \
            and isinstance(x.type.shape[-1], int):
        _recurrent(b, x)
    elif kind == "conv":
        _conv_block(b)
    elif kind == "attention":
        _attention(b)
    elif kind == "norm" and x.type.rank:
        _norm(b, x)
    elif kind == "gelu":
        _gelu(b, x)
    elif kind == "slope":  # twins differing only in the sign of a zero attribute, made visible by tanh(1/x)
        # on a graph input (floored: exact integers and signed zeros): of a computed value, a softmax or sigmoid
        # that underflows gives a denormal in numpy and +0.0 where a library flushes denormals to zero (ONNX
        # Runtime), and the slope then turns one of them into -0.0 — a sign chosen by the FPU mode, not a
        # miscompile (found by `graphopt fuzz`, seed 100429)
        x = b.add("floor", [r.choice(b.g.inputs)]) or x
        for slope in (0.0, r.choice([-0.0, 0.1])):  # (tanh: ±1 at ±inf, and no amplified rounding near 0)
            y = b.add("leaky_relu", [x], {"negative_slope": slope})
            if y is not None:  # 1/y itself stays out of the pool: exposed, it amplifies rounding (see _BINARY)
                b.add("tanh", [b.g.add("div", [b.scalar(1.0), y])])
    elif kind == "cast":
        b.add("cast", [x], {"dtype": r.choice([DType.F64, DType.F16, DType.F32])})
    elif kind == "concat":
        y = b.pick(x.type.rank)
        if y.type.rank and y.type.dtype == x.type.dtype:
            b.add("concat", [x, y], {"axis": 0})


def _recurrent(b: _Builder, x: Value) -> None:
    """An LSTM (what int8 pipelines turn into quantized_lstm) or GRU over x read as [steps, batch, features] or
    batch-first (a matrix as steps of one row), with weights of torch's init scale and non-zero initial states."""
    r = b.rng
    batch_first = r.random() < 0.5
    if x.type.rank == 2:  # rows (a symbolic count too) as the steps of a batch of one
        y = b.add("reshape", [x], {"shape": [1, -1, x.type.shape[1]] if batch_first else [-1, 1, x.type.shape[1]]})
        if y is None:
            return
        x = y
    batch, features = x.type.shape[0 if batch_first else 1], x.type.shape[2]
    if not isinstance(batch, int):
        return  # the initial states are constants: the batch must be known
    op, hidden = r.choice(["lstm", "lstm", "gru"]), r.choice([3, 4, 8])
    gates, scale = (4 if op == "lstm" else 3), 1 / np.sqrt(hidden)
    states = [b.const((1, batch, hidden), 0.5) for _ in range(2 if op == "lstm" else 1)]
    weights = [b.const((gates * hidden, features), scale), b.const((gates * hidden, hidden), scale),
               b.const((gates * hidden,), scale), b.const((gates * hidden,), scale)]
    b.add(op, [x, *states, *weights], {"batch_first": batch_first})


def _flat_linear(b: _Builder, x: Value) -> None:
    """A linear on rows flattened from [*lead, in] (how torch.export writes nn.Linear on 3-D input), read back by
    one or two reshapes or another such matmul: fuse-linear's unflattening rules."""
    r = b.rng
    lead, n_in = list(x.type.shape[:-1]), x.type.shape[-1]
    rows, n_out = int(np.prod(lead)), r.choice([3, 4])
    h = b.add("matmul", [b.add("reshape", [x], {"shape": [rows, n_in]}), b.const((n_in, n_out), 0.5)])
    if h is not None and r.random() < 0.4:
        h = b.add("matmul", [h, b.const((n_out, n_out), 0.5)]) or h
    for _ in range(r.choice([1, 2])):
        b.add("reshape", [h], {"shape": [*lead, n_out] if r.random() < 0.6 else [*lead, n_out, 1]})


def _bmm(b: _Builder) -> None:
    """A 4-D matmul as torch.export writes it: bmm over [batch*heads, ...] between reshapes (bmm-unflatten)."""
    r = b.rng
    q = b.g.add_input(f"q{len(b.g.inputs)}", TensorType(DType.F32, (2, 3, 4, 5)))
    k = b.const((2, 15, 4), 0.5) if r.random() < 0.5 else b.g.add_input(
        f"k{len(b.g.inputs)}", TensorType(DType.F32, (2, 3, 5, 4)))
    a = b.add("reshape", [q], {"shape": [6, 4, 5]})
    c = b.add("reshape", [k], {"shape": [6, 5, 4]})
    m = b.add("matmul", [a, c])
    b.add("reshape", [m], {"shape": [2, 3, 4, 4] if r.random() < 0.8 else [3, 2, 4, 4]})


def _mlp(b: _Builder, x: Value) -> None:
    """x → matmul/linear → activation → matmul back to x's width (+ x): a prunable hidden layer, as in a transformer's
    FFN, in the matmul form (weight [in, out]) that exporters emit before fusion."""
    r = b.rng
    n, hidden = x.type.shape[-1], r.choice([4, 6, 8])
    h = b.add("matmul", [x, b.const((n, hidden), 0.5)])
    if h is not None and r.random() < 0.6:
        h = b.add("add", [h, b.const((hidden,))]) or h
    if h is not None and r.random() < 0.7:
        h = b.add(r.choice(["relu", "gelu", "tanh"]), [h]) or h
    y = b.add("matmul", [h, b.const((hidden, n), 0.5)]) if h is not None else None
    if y is not None and r.random() < 0.5:
        b.add("add", [x, y])


def _conv_block(b: _Builder) -> None:
    r = b.rng
    x = b.g.add_input(f"img{len(b.g.inputs)}", TensorType(DType.F32, (1, 2, 5, 5)))
    h = b.add("conv", [x, b.const((2, 2, 3, 3), 0.5), b.const((2,))], {"pads": [1, 1, 1, 1]})
    if h is None:
        return
    if r.random() < 0.5:
        other = b.add("conv", [x, b.const((2, 2, 1, 1))], {}) if r.random() < 0.5 else x
        if other is not None:
            h = b.add("add", [h, other] if r.random() < 0.5 else [other, h]) or h
    if r.random() < 0.6:
        h = b.add("relu", [h]) or h
    if r.random() < 0.6:
        var = b.g.add_constant(np.abs(np.random.default_rng(r.randrange(1 << 30)).standard_normal(2)).astype(
            np.float32) + 0.5)
        h = b.add("batch_norm", [h, b.const((2,)), b.const((2,)), b.const((2,)), var], {"eps": 1e-5}) or h
    if r.random() < 0.4:
        mode = r.choice(["nearest", "linear", "cubic"])
        b.add("interpolate", [h], {"mode": mode, "sizes": r.choice([[10, 10], [3, 4], [7, 5]]),
                                   "align_corners": mode != "nearest" and r.random() < 0.5})


def _norm(b: _Builder, x: Value) -> None:
    """LayerNorm or RMSNorm written out the ways exporters write them (pow or x·x, sqrt-div or rsqrt-mul), sometimes
    with γ and β, sometimes over the wrong axis or with a γ of the wrong length — the near-misses the fusions must
    leave alone."""
    r = b.rng
    axis = -1 if r.random() < 0.8 else 0
    if not isinstance(x.type.shape[axis], int) or x.type.shape[axis] < 2:
        return
    # A spread row added first: normalizing a nearly constant row (sigmoid of small values) divides rounding noise
    # by its own size, and a fused kernel that sums in another order then differs by 1e-4 (`graphopt fuzz`, seed
    # 104890). Real activations are not constant rows; the near-constant case is ill-conditioned, not miscompiled.
    shape = [1] * x.type.rank
    shape[axis] = x.type.shape[axis]
    x = b.add("add", [x, b.g.add_constant(np.linspace(-1, 1, shape[axis], dtype=np.float32).reshape(shape))]) or x
    mean = lambda v: b.add("reduce_mean", [v], {"axes": [axis], "keepdims": True})  # noqa: E731
    d = x if r.random() < 0.4 else b.add("sub", [x, mean(x)])  # rms or layer
    if d is None:
        return
    sq = b.add("pow", [d, b.scalar(2.0)]) if r.random() < 0.5 else b.add("mul", [d, d])
    var = b.add("add", [mean(sq), b.scalar(r.choice([1e-5, 1e-6, 0.0]))]) if sq is not None else None
    if var is None:
        return
    if r.random() < 0.5:
        y = b.add("div", [d, b.add("sqrt", [var])])
    else:
        y = b.add("mul", [d, b.add("rsqrt", [var])])
    n = x.type.shape[-1]
    if y is not None and isinstance(n, int) and r.random() < 0.6:
        y = b.add("mul", [y, b.const((n if r.random() < 0.9 else 1,))]) or y
        if r.random() < 0.6:
            b.add("add", [y, b.const((n,))])


def _gelu(b: _Builder, x: Value) -> None:
    """0.5·x·(1 + erf(x/√2)) or the tanh form, in one of the groupings exporters emit — or with a wrong constant."""
    r = b.rng
    if x.type.dtype != DType.F32:
        return  # x³ of an f16 value overflows where ONNX Runtime, computing f16 in f32, does not (seed 108079)
    if r.random() < 0.5:
        inner = b.add("erf", [b.add("mul", [x, b.scalar(r.choice([0.7071067811865476, 0.7]))])])
    else:
        cube = b.add("pow", [x, b.scalar(3.0)])
        t = b.add("add", [x, b.add("mul", [cube, b.scalar(0.044715)])]) if cube is not None else None
        inner = b.add("tanh", [b.add("mul", [t, b.scalar(0.7978845608028654)])]) if t is not None else None
    one = b.add("add", [inner, b.scalar(1.0)]) if inner is not None else None
    if one is not None:
        half = b.scalar(r.choice([0.5, 0.5, 0.25]))
        if r.random() < 0.5:
            b.add("mul", [b.add("mul", [x, one]), half])
        else:
            b.add("mul", [b.add("mul", [x, half]), one])


def _attention(b: _Builder) -> None:
    """softmax(QKᵀ·s + M)·V in the orders exporters write it — and the one SDPA cannot (the scale after the add)."""
    r = b.rng
    seq = r.choice([4, "seq"])
    q, k, v = (b.g.add_input(f"{n}{len(b.g.inputs)}", TensorType(DType.F32, (1, 2, seq, 8))) for n in "qkv")
    kt = b.add("transpose", [k], {"perm": [0, 1, 3, 2]})
    s = b.add("matmul", [q, kt]) if kt is not None else None
    if s is None:
        return
    scale = b.scalar(r.choice([0.125, 0.5, 2.0]))
    mask = b.const((1, 1, 4, 4)) if seq == 4 else b.const((1, 1, 1, 1))
    if r.random() < 0.5:
        s = b.add(r.choice(["mul", "div"]), [s, scale])
        s = b.add("add", [s, mask]) if s is not None else None
    else:
        s = b.add("add", [s, mask])
        s = b.add("mul", [s, scale]) if s is not None else None
    p = b.add("softmax", [s], {"axis": -1}) if s is not None else None
    if p is not None:
        b.add("matmul", [p, v])


def random_graph(seed: int, size: int = 12) -> Graph:
    """A random valid graph from `seed` (the same seed gives the same graph)."""
    rng = random.Random(seed)
    b = _Builder(rng)
    for i in range(rng.randint(1, 2)):
        shape = rng.choice([(2, 3), (2, 4, 3), ("batch", 3), (3,), ("batch", "seq", 4)])
        b.values.append(b.g.add_input(f"x{i}", TensorType(DType.F32, shape)))
    for _ in range(size):
        _step(b)
    produced = [v for v in b.values if v.producer is not None] or b.values
    b.g.set_outputs(list(dict.fromkeys(rng.sample(produced[-6:], min(len(produced[-6:]), rng.randint(1, 3))))))
    from graphopt.passes import PassManager

    PassManager.parse("dce").run(b.g)
    return b.g


def _inputs(graph: Graph, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes: dict[str, int] = {}  # one size per symbol, 1 included (where broadcasting and squeezing go wrong)
    out = []
    for v in graph.inputs:
        shape = tuple(d if isinstance(d, int) else sizes.setdefault(str(d), int(rng.integers(1, 4)))
                      for d in v.type.shape)
        a = rng.standard_normal(shape) * 2
        a[rng.random(shape) < 0.05] = 0.0  # zeros exercise the sign of zero and division
        out.append(a.astype(v.type.dtype.numpy))
    return out


def _same(got: Sequence[Any], want: Sequence[np.ndarray], low_precision: bool = False,
          slack: Sequence[np.ndarray] | None = None) -> str | None:
    """Why `got` is not `want` (None: it is), within 1e-4 relative (1e-2 in half precision) plus, per element,
    `slack`: how far the reference's own output moves when its inputs move by a rounding error."""
    if len(got) != len(want):
        return f"{len(got)} outputs, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        g = np.asarray(g.detach().numpy() if hasattr(g, "detach") else g)
        if g.shape != w.shape or g.dtype != w.dtype:
            return f"output {i} is {g.dtype}{list(g.shape)}, expected {w.dtype}{list(w.shape)}"
        gf, wf = g.astype(np.float64), w.astype(np.float64)
        # f16 anywhere in the graph: ONNX Runtime computes f16 ops in f32 and drops the f32->f16->f32 casts it
        # made, so intermediate roundings the reference does may be skipped; half precision is the tolerance
        tol = 1e-2 if low_precision or w.dtype == np.float16 else 1e-4
        if not np.array_equal(np.isnan(gf), np.isnan(wf)) or not np.array_equal(np.where(np.isinf(gf), gf, 0),
                                                                                np.where(np.isinf(wf), wf, 0)):
            return f"output {i}: NaN or infinities differ"
        finite = np.isfinite(wf) & np.isfinite(gf)
        with np.errstate(invalid="ignore"):
            err = np.abs(gf - wf)[finite]
        bound = tol * (1 + np.abs(wf[finite]))
        if slack is not None:
            bound = bound + _SLACK_FACTOR * np.nan_to_num(np.asarray(slack[i], np.float64), posinf=0.0)[finite]
        if err.size and (err > bound).any():
            return f"output {i}: max abs error {err.max():.3g}"
    return None


# A target may round differently from the reference inside the graph (ONNX Runtime's tanh, a fused kernel's
# summation order): a few ulps per op. Where the graph amplifies that (tanh(x) / mean(tanh(x)) with the mean near
# zero: a 1-ulp change of one tanh moves the output by 1e-3), the reference moves as much when every one of its
# own results is moved by a couple of ulps — the standard model of floating-point rounding.
_ROUNDING = 2.0**-22  # relative move of every float result (2 ulps of f32)
_SLACK_FACTOR = 16.0  # how many such moves a target's different rounding may add, element by element


def _sensitivity(graph: Graph, xs: list[np.ndarray], want: list[np.ndarray]) -> list[np.ndarray] | None:
    """Per output element, the largest change of the reference's outputs when every float result in the graph is
    moved by 2 ulps in random directions (twice): the graph's own conditioning at these inputs (None if the
    reference cannot run that)."""
    from graphopt.ir.interpreter import run

    rng = np.random.default_rng(0)

    def rounded(v: Value, a: np.ndarray) -> np.ndarray:
        if not np.issubdtype(a.dtype, np.floating) or a.dtype == np.float16 or not a.size:
            return a
        with np.errstate(over="ignore", invalid="ignore"):
            return (a * (1 + _ROUNDING * rng.choice([-1.0, 1.0], a.shape))).astype(a.dtype)

    moved: list[np.ndarray] = [np.zeros(np.shape(w)) for w in want]
    for _ in range(2):
        try:
            outs = run(graph, xs, transform=rounded)
        except GraphoptError:
            return None
        for k, (o, w) in enumerate(zip(outs, want)):
            if np.issubdtype(np.asarray(w).dtype, np.floating):
                with np.errstate(invalid="ignore", over="ignore"):
                    moved[k] = np.fmax(moved[k], np.abs(np.asarray(o, np.float64) - np.asarray(w, np.float64)))
    return moved


def _run_one(graph: Graph, pipeline: str, target: str, xs: list[np.ndarray], want: list[np.ndarray]
             ) -> tuple[str, str]:
    import graphopt

    try:
        if "int8-static" in pipeline:  # static quantization reads a calibration table: the fuzz inputs' own
            compiled = _compile_calibrated(graph, pipeline, target, xs)
        else:
            compiled = graphopt.compile(graph.copy(), pipeline=pipeline, target=target)
        out = compiled.executable(*[x.copy() for x in xs])
        budgets = _budgets(pipeline)
        if any(b.capacity for b in budgets):  # pruning: the pruned graph is the reference for the targets
            from graphopt.backends.reference import run

            if [np.shape(o) for o in out] != [np.shape(w) for w in want]:
                return "mismatch", f"output shapes {[np.shape(o) for o in out]} != {[np.shape(w) for w in want]}"
            want = run(compiled.graph, xs)
            budgets = []
    except GraphoptError as e:
        return "refused", str(e).splitlines()[0]
    except Exception as e:  # noqa: BLE001 - a crash is what the fuzzer reports
        where = traceback.extract_tb(e.__traceback__)[-1]
        return "crash", f"{type(e).__name__}: {str(e)[:200]} ({where.filename.rsplit('/', 1)[-1]}:{where.lineno})"
    if budgets:  # a lossy pass ran: its declared budget is the tolerance
        for w, o in zip(want, out):
            if not np.issubdtype(np.asarray(w).dtype, np.floating):
                continue
            for b in budgets:
                broken = b.violation(b.measure(np.asarray(w), np.asarray(o)))
                if broken and np.abs(np.asarray(w)).max(initial=0) > 1e-6:
                    return "mismatch", f"outside the lossy budget: {broken}"
        return "ok", ""
    low = any(v.type.dtype in (DType.F16, DType.BF16) for n in graph for v in (*n.inputs, *n.outputs))
    problem = _same(out, want, low)
    if problem:  # only then: is the graph ill-conditioned at these inputs, so that rounding alone explains it?
        problem = _same(out, want, low, _sensitivity(graph, xs, want))
    return ("mismatch", problem) if problem else ("ok", "")


def _compile_calibrated(graph: Graph, pipeline: str, target: str, xs: list[np.ndarray]) -> Any:
    """`pipeline` run with a CalibrationTable of `graph` on `xs` in its context, then compiled for `target`."""
    from graphopt.api import CompiledModel
    from graphopt.backends import get_backend
    from graphopt.passes import PassContext, PassManager
    from graphopt.quantization import calibrate

    g = graph.copy()
    result = PassManager.parse(pipeline).run(g, PassContext().provide(calibrate(g, [xs])))
    return CompiledModel(result.graph, get_backend(target).compile(result.graph), target=target, pipeline=pipeline)


def _budgets(pipeline: str) -> list[Any]:
    """The budgets of the lossy passes in `pipeline` (empty for an exact pipeline)."""
    from graphopt.passes import PassManager

    try:
        return [p.info.budget for p in PassManager.parse(pipeline).passes if p.info.budget is not None]
    except GraphoptError:
        return []


def check(graph: Graph, pipeline: str, target: str, seed: int) -> tuple[str, str]:
    """(kind, detail) of one run of `graph` through `pipeline` on `target`, inputs drawn from `seed`."""
    from graphopt.backends.reference import run

    xs = _inputs(graph, seed)
    try:
        want = run(graph, xs)
    except GraphoptError as e:
        return "refused", f"the reference cannot run the graph: {e}"
    return _run_one(graph, pipeline, target, xs, want)


def bisect(graph: Graph, pipeline: str, target: str, seed: int) -> str:
    """The first pass of `pipeline` after which the run fails ("(none)": it fails with no pass, on the target)."""
    from graphopt.passes import PassManager

    specs = [str(p) for p in PassManager.parse(pipeline).passes]
    for k in range(len(specs) + 1):
        if check(graph, ",".join(specs[:k]), target, seed)[0] in ("mismatch", "crash"):
            return specs[k - 1] if k else "(none)"
    return pipeline  # only the whole pipeline fails (nondeterminism): name it all


def shrink(graph: Graph, pipeline: str, target: str, seed: int, kind: str, *, budget: int = 300) -> Graph:
    """A smaller graph that still fails the same way: drop outputs, then cut nodes (each node's result becomes a
    graph input, or the node is bypassed by an input of its type), keeping every step that still fails."""
    def fails(g: Graph) -> bool:
        try:
            g.verify()
        except GraphoptError:
            return False
        return check(g, pipeline, target, seed)[0] == kind

    best = graph.copy()
    tries = 0
    for out in list(best.outputs):  # one failing output is enough
        trial = best.copy()
        trial.set_outputs([trial.value(out.name)])
        tries += 1
        if fails(trial):
            best = trial
            break
    changed = True
    while changed and tries < budget:
        changed = False
        for node in list(best):
            for variant in _cuts(best, node):
                tries += 1
                if fails(variant):
                    best, changed = variant, True
                    break
            if changed or tries >= budget:
                break
    return best


def _cuts(graph: Graph, node: Any) -> list[Graph]:
    """`graph` with `node` removed: its outputs read from new graph inputs, or bypassed by a same-typed input."""
    from graphopt.passes import PassManager

    out = []
    for how in ("input", "bypass"):
        g = graph.copy()
        n = next(m for m in g if m.outputs[0].name == node.outputs[0].name)
        if how == "input":
            for o in n.outputs:
                o.replace_all_uses_with(g.add_input(g.fresh_name("cut"), o.type))  # type: ignore[arg-type]
        else:
            same = [v for v in n.inputs if v.type == n.outputs[0].type and len(n.outputs) == 1]
            if not same:
                continue
            n.outputs[0].replace_all_uses_with(same[0])
        PassManager.parse("dce").run(g)
        g.inputs[:] = [v for v in g.inputs if v.num_uses or v.is_graph_output]
        out.append(g)
    return out


def fuzz(graphs: int = 100, seed: int = 0, *, pipelines: Sequence[str] | None = None,
         targets: Sequence[str] = ("reference", "cpu", "onnxruntime"), size: int = 12,
         progress: Callable[[int], None] | None = None, reproducers: str | None = None) -> FuzzReport:
    """Run `graphs` random graphs (seeds seed, seed+1, ...) through every pipeline on every target.

    With `reproducers` (a folder), each finding is bisected to its first failing pass, shrunk, and written there
    as a self-contained .gir with the command that replays it. Pipelines default to every pass of graphopt's alone plus O1, O2, O3 and the doubled O2,O2 (passes meeting
    their own output). Reference outputs come from the untouched graph on the reference interpreter."""
    from graphopt.backends.reference import run
    from graphopt.passes import registered_passes

    if pipelines is None:  # graphopt's own passes (a plugin's are fuzzed by naming them in `pipelines`)
        own = [name for name, info in registered_passes().items() if info.target.__module__.startswith("graphopt.")]
        pipelines = [*own, "O1", "O2", "O3", "O2,O2"]
    report = FuzzReport()
    for s in range(seed, seed + graphs):
        g = random_graph(s, size)
        xs = _inputs(g, s)
        try:
            want = run(g, xs)
        except GraphoptError:
            continue  # the reference cannot run it (an overflow-free draw failed): not a finding
        report.graphs += 1
        text = g.format(max_inline=-1)
        for pipeline in pipelines:
            for target in targets:
                kind, detail = _run_one(g, pipeline, target, xs, want)
                report.runs += 1
                report.counts[kind] += 1
                report.by_run[(pipeline, target, kind)] += 1
                if kind in ("mismatch", "crash"):
                    finding = Finding(s, pipeline, target, kind, detail, text)
                    if reproducers is not None:
                        _reproduce(finding, g, reproducers)
                    report.findings.append(finding)
        if progress is not None:
            progress(s)
    return report


def _reproduce(finding: Finding, graph: Graph, folder: str) -> None:
    from pathlib import Path

    from graphopt.fileio import write_text_atomic

    finding.first_bad = bisect(graph, finding.pipeline, finding.target, finding.seed)
    small = shrink(graph, finding.pipeline, finding.target, finding.seed, finding.kind)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in finding.pipeline)[:40]
    path = Path(folder) / f"fuzz-{finding.seed}-{safe}-{finding.target}.gir"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, small.format(max_inline=1 << 30) + "\n", overwrite=True)  # weights inline: one file
    finding.reproducer = str(path)


def replay(path: str, pipeline: str, target: str, seed: int) -> tuple[str, str]:
    """Run a reproducer written by `fuzz(..., reproducers=...)` again: (kind, detail)."""
    from graphopt.api import read_gir

    return check(read_gir(path), pipeline, target, seed)
