"""ONNX backend-test conformance: every node case in the installed `onnx` wheel through graphopt, ORT beside it.

Runs each case through ONNX Runtime (the baseline, on the untouched model), `import_onnx` → O0 → `reference` and
`import_onnx` → O2 → `cpu`, then writes

- `benchmarks/ONNX_CONFORMANCE.md`: counts per target, the pass rate over the cases ONNX Runtime passes, and a
  per-op table;
- `tests/onnx_known_failures.json` (with `--update-known`): the cases each graphopt target fails today, with the
  reason, which `tests/test_onnx_conformance.py` holds the suite to (a new failure or a fixed case both fail it).

    python benchmarks/onnx_conformance.py [--update-known] [--out benchmarks/ONNX_CONFORMANCE.md]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from graphopt.conformance import STATUSES, CaseResult, node_cases, run_case, run_ort, summarize
from graphopt.fileio import write_text_atomic

ROOT = Path(__file__).resolve().parent.parent
KNOWN = ROOT / "tests" / "onnx_known_failures.json"
TARGETS = {"reference": "O0", "cpu": "O2"}


def run_all() -> tuple[list[CaseResult], float]:
    cases = node_cases()
    t0 = time.perf_counter()
    results = [run_ort(c) for c in cases]
    for target, pipeline in TARGETS.items():
        results += [run_case(c, target, pipeline) for c in cases]
    return results, time.perf_counter() - t0


def markdown(results: list[CaseResult], seconds: float) -> str:
    import onnx
    import onnxruntime

    s = summarize(results)
    lines = [
        "# ONNX backend-test conformance",
        "",
        "Produced by `python benchmarks/onnx_conformance.py`; do not edit by hand.",
        "",
        f"onnx {onnx.__version__} node test cases (generated locally from `onnx.backend.test.case.node`), "
        f"onnxruntime {onnxruntime.__version__}, {platform.machine()}, {seconds:.0f} s for all runs. "
        "`reference` = `import_onnx` → O0 → reference interpreter; `cpu` = `import_onnx` → O2 → generated torch "
        "code; `onnxruntime` = ONNX Runtime on the untouched case model (the baseline).",
        "",
        "| target | cases | pass | fail | unsupported | error | pass among ORT's passes | of which specialized on call |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = {r.case for r in results if r.target == "onnxruntime" and r.status == "pass"}
    for target, t in s["targets"].items():
        on_call = sum(r.target == target and r.status == "pass" and r.detail.startswith("specialized") and
                      r.case in base for r in results)
        lines.append(f"| {target} | {t['cases']} | {t['pass']} | {t['fail']} | {t['unsupported']} | {t['error']} | "
                     f"{t['of_baseline']} ({100 * t['of_baseline_rate']:.1f}%) | {on_call} |")
    lines += [
        "",
        "*fail* = ran and gave a wrong answer; *unsupported* = refused at import or compile with a clear error "
        "(an op or dtype graphopt does not have); *error* = crashed while running. Every case is taken as given (no "
        "`constants=`). *Specialized on call*: graphopt compiles static shape arithmetic, so a case that feeds "
        "shape-like arguments (Reshape targets, Resize scales, reduction axes, TopK's k) as graph inputs runs as "
        "a `SpecializingModel`, which compiles once per distinct value of exactly those inputs when called and "
        "caches each specialization under a guard on the values (as torch.compile specializes on Python ints).",
        "",
        "## By op",
        "",
        "| op | onnxruntime | reference | cpu |",
        "|---|---:|---:|---:|",
    ]
    for op, row in s["ops"].items():
        lines.append(f"| {op} | {row.get('onnxruntime', '')} | {row.get('reference', '')} | {row.get('cpu', '')} |")
    return "\n".join(lines) + "\n"


def known_failures(results: list[CaseResult]) -> dict[str, object]:
    """What the test holds graphopt to: the onnx version, every case name it knows, each target's failures."""
    import onnx

    out: dict[str, dict[str, str]] = {t: {} for t in TARGETS}
    for r in results:
        if r.target in TARGETS and r.status != "pass":
            out[r.target][r.case] = f"{r.status}: {r.detail}"
    cases = sorted({r.case for r in results})
    return {"onnx": onnx.__version__, "cases": cases, "pipelines": TARGETS,
            "known_failures": {t: dict(sorted(v.items())) for t, v in out.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "ONNX_CONFORMANCE.md")
    ap.add_argument("--update-known", action="store_true", help=f"rewrite {KNOWN.relative_to(ROOT)}")
    args = ap.parse_args()
    results, seconds = run_all()
    write_text_atomic(args.out, markdown(results, seconds), overwrite=True)
    if args.update_known:
        write_text_atomic(KNOWN, json.dumps(known_failures(results), indent=1) + "\n", overwrite=True)
    for target, t in summarize(results)["targets"].items():
        print(f"{target:12s} " + " ".join(f"{k}={t[k]}" for k in (*STATUSES, "of_baseline")))


if __name__ == "__main__":
    main()
