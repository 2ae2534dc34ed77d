"""IR scale benchmark: parse, print, verify and O1 on synthetic transformer-like graphs of 1k, 10k, 100k nodes.

Each block mimics an exported encoder layer (matmul, bias add, reshape/transpose chains, softmax, a dropout, a
`* 1`, duplicated subexpressions) so that every O1 pass has work. Times are medians over repeats; ratios show
how cost grows with size (linear growth = ratio 10 per 10x nodes).

    python benchmarks/ir_scale.py [--sizes 1000,10000,100000] [--repeats 3] [--out benchmarks/IR_SCALE.md]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

from graphopt.ir import DType, Graph, TensorType, parse
from graphopt.passes import PassManager


def build(target_nodes: int) -> Graph:
    g = Graph("synthetic")
    x = g.add_input("x", TensorType(DType.F32, ("batch", 16, 32)))
    w = g.add_constant(np.zeros((32, 32), np.float32), "w")
    b = g.add_constant(np.zeros((32,), np.float32), "b")
    one = g.add_constant(np.float32(1.0), "one")
    while len(g) < target_nodes:
        wt = g.add("transpose", [w], {"perm": [1, 0]})
        h = g.add("add", [g.add("matmul", [x, wt]), b])
        h = g.add("reshape", [g.add("reshape", [h], {"shape": ["batch", 16, 4, 8]})], {"shape": ["batch", 16, 4, 8]})
        h = g.add("transpose", [g.add("transpose", [h], {"perm": [0, 2, 1, 3]})], {"perm": [0, 2, 1, 3]})
        h = g.add("reshape", [h], {"shape": ["batch", 16, 32]})
        dup = g.add("relu", [h])
        h = g.add("add", [g.add("relu", [h]), dup])
        h = g.add("mul", [g.add("dropout", [h]), one])
        x = g.add("softmax", [h], {"axis": -1})
    g.set_outputs([x])
    return g


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="write a markdown table here")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for n in sizes:
        g = build(n)
        text = str(g)
        constants = {c.name: c.const for c in g.constants.values()}
        t_parse = median_time(lambda: parse(text, constants), args.repeats)  # noqa: B023
        t_print = median_time(lambda: str(g), args.repeats)  # noqa: B023
        t_verify = median_time(g.verify, args.repeats)
        copies = [g.copy() for _ in range(args.repeats)]
        pm = PassManager.parse("O1")
        o1_times, after = [], 0
        for c in copies:
            start = time.perf_counter()
            pm.run(c)
            o1_times.append(time.perf_counter() - start)
            after = len(c)
        rows.append((len(g), after, t_parse, t_print, t_verify, statistics.median(o1_times)))
        print(f"{len(g):>7} nodes: parse {t_parse:.3f}s  print {t_print:.3f}s  verify {t_verify:.3f}s  "
              f"O1 {rows[-1][5]:.3f}s ({len(g)} -> {after} nodes)", flush=True)
    lines = [
        f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}; "
        f"median of {args.repeats} repeats.",
        "",
        "| nodes | after O1 | parse (s) | print (s) | verify (s) | O1 (s) | O1 µs/node |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, after, tp, tpr, tv, to in rows:
        lines.append(f"| {n} | {after} | {tp:.3f} | {tpr:.3f} | {tv:.3f} | {to:.3f} | {to / n * 1e6:.1f} |")
    if len(rows) > 1:
        lines += ["", "Growth per step (time ratio / node ratio; 1.0 = linear):", ""]
        for (n0, _, *t0), (n1, _, *t1) in zip(rows, rows[1:]):
            ratio = n1 / n0
            parts = [f"{name} {b / a / ratio:.2f}" for name, a, b in zip(("parse", "print", "verify", "O1"), t0, t1)]
            lines.append(f"- {n0} -> {n1}: " + ", ".join(parts))
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write("# IR scale benchmark\n\nProduced by `python benchmarks/ir_scale.py --out benchmarks/IR_SCALE.md`.\n\n"
                    + table + "\n")


if __name__ == "__main__":
    main()
