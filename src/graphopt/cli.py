"""The `graphopt` command line.

    graphopt compile MODEL -o DIR [--pipeline O2] [--target cpu] [--input-shape name=1x128]
    graphopt run DIR [--inputs file.npz]
    graphopt show MODEL [--pipeline P] [--format text|dot|svg]
    graphopt opt MODEL.gir [--pipeline O1] [--numeric-check] [--verify-each] [--timing] [-o OUT.gir]
    graphopt passes

`opt` works like mlir-opt: IR text in, optimized IR text out. Constants printed as `external` are read from
`MODEL.npz` beside the file (or `--weights FILE.npz`), loaded with allow_pickle=False.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from graphopt.errors import GraphoptError
from graphopt.fileio import write_text_atomic
from graphopt.ir import Graph
from graphopt.passes import (
    DumpToDirectory,
    NumericCheck,
    PassContext,
    PassManager,
    PRESETS,
    PrintIR,
    VerifyEach,
    load_pass,
    registered_passes,
)

__all__ = ["main"]


def _load_graph(model: str, weights: str | None) -> Graph:
    """MODEL as a graph: IR text with its weights beside it, or any model file `graphopt compile` takes."""
    from graphopt.api import read_gir, to_graph

    if Path(model).suffix == ".gir":
        return read_gir(model, weights)
    return to_graph(model)


def _cmd_opt(args: argparse.Namespace) -> int:
    graph = _load_graph(args.model, args.weights)
    pm = PassManager.parse(args.pipeline)
    instruments = []
    if args.verify_each:
        instruments.append(VerifyEach())
    if args.print_ir_before or args.print_ir_after_change:
        instruments.append(PrintIR(sys.stderr, before=args.print_ir_before, after_change=args.print_ir_after_change))
    if args.dump_dir:
        instruments.append(DumpToDirectory(args.dump_dir))
    check = NumericCheck() if args.numeric_check else None
    if check:
        instruments.append(check)
    ctx = PassContext(instruments=instruments, explain=args.explain)
    result = pm.run(graph, ctx)
    if args.output:
        try:
            write_text_atomic(args.output, str(result.graph) + "\n", overwrite=args.overwrite)
        except FileExistsError as e:
            raise GraphoptError(f"{e}; pass --overwrite to replace it") from None
    elif not args.quiet:
        print(result.graph)
    if args.timing:
        print(f"pipeline: {pm}", file=sys.stderr)
        print(result.table(), file=sys.stderr)
    if check:
        worst = max(check.max_error.values(), default=0.0)
        print(f"numeric check: exact passes within float rounding (max abs error {worst:.3g})", file=sys.stderr)
        for name, metrics in check.metrics.items():
            shown = ", ".join(f"{k} {v:.6g}" for k, v in metrics.items())
            print(f"numeric check: lossy pass {name} within its budget ({shown})", file=sys.stderr)
    for r in ctx.rejections:
        print(f"rejected: {r}", file=sys.stderr)
    return 0


def _cmd_passes(args: argparse.Namespace) -> int:
    import textwrap

    for name, info in registered_passes().items():  # graphopt's own, --load-pass ones and entry-point plugins
        lines = textwrap.wrap(info.doc, 94) or [""]
        print(f"{name:24s} {lines[0]}")
        for line in lines[1:]:
            print(f"{'':24s} {line}")
        if info.budget is not None:
            print(f"{'':24s}   lossy, budget: {info.budget}")
        for opt in info.options.values():
            kind = " | ".join(map(str, opt.choices)) if opt.choices else opt.type.__name__
            print(f"{'':24s}   {opt.name}: {kind} = {opt.default!r}")
    print("\npresets:")
    for name, text in PRESETS.items():
        print(f"  {name:22s} {text or '(no passes)'}")
    return 0


def _cmd_fuzz(args: argparse.Namespace) -> int:
    from .fuzz import fuzz, replay

    pipelines = args.pipelines.split(";") if args.pipelines else None
    if args.replay:
        bad = 0
        for pipeline in pipelines or ["O2"]:
            for target in args.targets.split(","):
                kind, detail = replay(args.replay, pipeline, target, args.seed)
                print(f"{pipeline} on {target}: {kind}{': ' + detail if detail else ''}")
                bad += kind in ("mismatch", "crash")
        return 1 if bad else 0
    report = fuzz(args.graphs, args.seed, pipelines=pipelines, targets=args.targets.split(","), size=args.size,
                  reproducers=args.reproducers)
    print(report.summary())
    return 1 if report.counts["mismatch"] or report.counts["crash"] else 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="graphopt", description="A compiler-style graph optimizer for DL models.")
    sub = p.add_subparsers(dest="command", required=True)
    opt = sub.add_parser("opt", help="optimize an IR text file with a pass pipeline")
    opt.add_argument("model", help="IR text file (.gir, weights from MODEL.npz beside it), or .onnx/.pt2")
    opt.add_argument("-p", "--pipeline", default="O1", help="pass pipeline text or preset (default O1)")
    opt.add_argument("-o", "--output", help="write the optimized IR here instead of stdout")
    opt.add_argument("--overwrite", action="store_true", help="allow replacing an existing --output file")
    opt.add_argument("--weights", help="npz with the data of `external` constants (default: MODEL.npz)")
    add_load_pass(opt)
    opt.add_argument("--verify-each", action="store_true", help="verify the IR after every changing pass")
    opt.add_argument("--numeric-check", action="store_true",
                     help="run the reference interpreter after every changing pass and name the first that drifts")
    opt.add_argument("--print-ir-before", action="store_true", help="print the IR before every pass (stderr)")
    opt.add_argument("--print-ir-after-change", action="store_true", help="print the IR after changing passes")
    opt.add_argument("--dump-dir", help="write the IR after every pass into this directory")
    opt.add_argument("--timing", action="store_true", help="print per-pass time and statistics (stderr)")
    opt.add_argument("--explain", action="store_true", help="print every rejected rewrite and why")
    opt.add_argument("-q", "--quiet", action="store_true", help="do not print the optimized IR")
    opt.set_defaults(fn=_cmd_opt)
    passes = sub.add_parser("passes", help="list every registered pass with its options")
    add_load_pass(passes)
    passes.set_defaults(fn=_cmd_passes)
    fz = sub.add_parser("fuzz", help="differential fuzzing: random graphs through every pass and target vs the "
                                     "reference interpreter; exits 1 on a mismatch or crash")
    fz.add_argument("--graphs", type=int, default=200, help="how many random graphs (default 200)")
    fz.add_argument("--seed", type=int, default=0, help="first seed; graph i uses seed+i (default 0)")
    fz.add_argument("--pipelines", help="comma-separated pipelines to try, ';' between them (default: every pass "
                                        "alone, O1, O2, O3, O2,O2)")
    fz.add_argument("--targets", default="reference,cpu,onnxruntime")
    fz.add_argument("--size", type=int, default=12, help="construction steps per graph (default 12)")
    fz.add_argument("--reproducers", default="fuzz-findings", metavar="DIR",
                    help="bisect and shrink each finding and write it here as a .gir (default fuzz-findings/)")
    fz.add_argument("--replay", metavar="FILE.gir", help="run one written reproducer again instead of fuzzing")
    add_load_pass(fz)
    fz.set_defaults(fn=_cmd_fuzz)
    from .cli_model import add_commands

    add_commands(sub)
    return p


def add_load_pass(parser: argparse.ArgumentParser) -> None:
    """--load-pass, on every command that takes a pipeline (and `passes`, to list them)."""
    parser.add_argument("--load-pass", action="append", default=[], metavar="MODULE:FUNCTION",
                        help="register a custom pass first: module:function or path/to/file.py:function "
                             "(repeatable; modules in the current folder are found)")


def main(argv: Sequence[str] | None = None) -> int:
    """Every user error ends in one `graphopt: error: ...` line and exit status 1; no tracebacks."""
    args = _parser().parse_args(argv)
    try:
        for spec in getattr(args, "load_pass", []):
            load_pass(spec)
        return int(args.fn(args))
    except (GraphoptError, OSError, ValueError) as e:
        if isinstance(e, BrokenPipeError):  # `graphopt show ... | head`: the reader left; nothing to report
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        print(f"graphopt: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
