"""PyTorch op coverage: PyTorch's own OpInfo database (float32, CPU, the first sample of each entry) through
torch.export → graphopt → cpu target, each compared with eager (rtol 1e-4). Writes benchmarks/OPINFO.md.

    python benchmarks/opinfo.py            # every entry (a few minutes)
    python benchmarks/opinfo.py --ops add,sin,group_norm

The denominator is what torch.export handles: an entry whose sample torch.export cannot export (or that returns
no tensor) is counted apart, not as a graphopt failure. Outside the scope, as the issue defines it: linalg, fft,
special, sparse and random sampling entries — by name prefix, plus the torch.* entries that are those
families' functions under older names (`ALIASES`: torch.cholesky is torch.linalg.cholesky, torch.lgamma is
torch.special.gammaln) and the pooling that samples at random (fractional max pooling).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT_OF_SCOPE_PREFIXES = ("linalg.", "fft.", "special.", "sparse.", "_refs.", "nn.functional.dropout")
RANDOM = {"bernoulli", "normal", "rand_like", "randn_like", "randint_like", "randint", "multinomial", "uniform",
          "exponential", "geometric", "log_normal", "cauchy", "random_", "nn.functional.alpha_dropout",
          "nn.functional.feature_alpha_dropout", "nn.functional.rrelu", "randn", "rand", "empty", "empty_like",
          "empty_strided", "new_empty", "new_empty_strided", "empty_permuted", "nn.functional.gumbel_softmax"}


# torch.* entries that are torch.linalg / torch.special / torch.fft / torch.sparse functions under an older name
# (torch.cholesky is torch.linalg.cholesky, torch.lgamma is torch.special.gammaln, ...): in the excluded families
ALIASES = {
    "linalg": {"cholesky", "cholesky_inverse", "cholesky_solve", "lu", "lu_solve", "lu_unpack", "qr", "svd", "geqrf",
               "ormqr", "pinverse", "matrix_exp", "logdet", "det", "slogdet", "inverse", "triangular_solve",
               "norm.nuc", "pca_lowrank", "svd_lowrank", "symeig", "eig", "lstsq"},
    "special": {"digamma", "lgamma", "polygamma", "mvlgamma", "i0", "igamma", "igammac", "erfinv", "xlogy", "erfcx"},
    "fft": {"stft", "istft"},
    "sparse": {"to_sparse"},
}
_ALIASED = set().union(*ALIASES.values())


def in_scope(name: str) -> bool:
    base = name.split(".")[0] if not name.startswith(("nn.", "masked.")) else name
    return (not name.startswith(OUT_OF_SCOPE_PREFIXES) and name not in RANDOM and "dropout" not in name
            and name not in _ALIASED and base not in _ALIASED and "fractional_max_pool" not in name)


def entries(only: set[str] | None = None) -> list[Any]:
    from torch.testing._internal.common_methods_invocations import op_db

    return [op for op in op_db if in_scope(op.name) and (only is None or op.name in only)
            and any(str(d) == "torch.float32" for d in op.supported_dtypes("cpu"))]


def check(op: Any) -> tuple[str, str]:
    """(status, detail): status is one of pass, mismatch, graphopt-fails, not-exportable, no-sample."""
    import numpy as np
    import torch
    from torch.utils import _pytree as pytree

    import graphopt

    try:
        sample = next(iter(op.sample_inputs("cpu", torch.float32, requires_grad=False)))
    except Exception as e:  # noqa: BLE001 - an entry without a float32 CPU sample is not counted
        return "no-sample", f"{type(e).__name__}: {e}"[:160]
    flat, spec = pytree.tree_flatten((sample.input, sample.args, sample.kwargs))
    is_t = [isinstance(x, torch.Tensor) for x in flat]
    tensors = tuple(x for x, t in zip(flat, is_t) if t)
    fixed = [None if t else x for x, t in zip(flat, is_t)]

    class Call(torch.nn.Module):
        def forward(self, *ts: Any) -> Any:
            it = iter(ts)
            vals = [next(it) if t else f for t, f in zip(is_t, fixed)]
            inp, args, kwargs = pytree.tree_unflatten(vals, spec)
            return op.op(inp, *args, **kwargs)

    m = Call().eval()
    try:
        with torch.no_grad():
            want = m(*[t.clone() for t in tensors])
        want_flat = [w for w in pytree.tree_leaves(want) if isinstance(w, torch.Tensor)]
        if not want_flat or not tensors:
            return "no-sample", "no tensor in or out"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.export.export(m, tuple(t.clone() for t in tensors))
    except Exception as e:  # noqa: BLE001 - torch.export's limits are not graphopt's
        return "not-exportable", f"{type(e).__name__}: {' '.join(str(e).split())[:160]}"
    try:
        c = graphopt.compile(m, tuple(t.clone() for t in tensors), target="cpu")
        got = c(*[t.clone() for t in tensors])
        got_flat = [g for g in pytree.tree_leaves(got) if isinstance(g, torch.Tensor) or hasattr(g, "shape")]
        if len(got_flat) != len(want_flat):
            return "mismatch", f"{len(got_flat)} outputs, eager has {len(want_flat)}"
        for g, w in zip(got_flat, want_flat):
            g = torch.as_tensor(np.asarray(g)) if not isinstance(g, torch.Tensor) else g
            if tuple(g.shape) != tuple(w.shape):
                return "mismatch", f"shape {tuple(g.shape)} vs eager {tuple(w.shape)}"
            if w.dtype.is_floating_point or w.dtype.is_complex:
                if not torch.allclose(g.to(w.dtype), w, rtol=1e-4, atol=1e-5, equal_nan=True):
                    err = (g.to(torch.float64) - w.to(torch.float64)).abs().nan_to_num().max().item()
                    return "mismatch", f"max abs error {err:.3g}"
            elif not torch.equal(g.to(w.dtype), w):
                return "mismatch", "integer/bool values differ"
    except Exception as e:  # noqa: BLE001 - the error is the result
        return "graphopt-fails", f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
    return "pass", ""


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", help="comma-separated OpInfo names (default: all in scope)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "OPINFO.md"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows = []
    for op in entries(set(args.ops.split(",")) if args.ops else None):
        name = op.name + (f".{op.variant_test_name}" if op.variant_test_name else "")
        status, detail = check(op)
        rows.append((name, status, detail))
        if status not in ("pass", "not-exportable", "no-sample"):
            print(f"{name}: {status}: {detail}", flush=True)
    counts = Counter(s for _, s, _ in rows)
    handled = counts["pass"] + counts["mismatch"] + counts["graphopt-fails"]
    import transformers  # noqa: F401 - only for the version line's sibling packages being importable

    lines = ["# PyTorch OpInfo coverage: torch.export → graphopt → cpu", "",
             f"Produced by `python benchmarks/opinfo.py` ({time.perf_counter() - t0:.0f} s); do not edit by hand. "
             f"torch {torch.__version__}. One float32 CPU sample per OpInfo entry (the first), outside "
             "linalg/fft/special/sparse/random sampling (by prefix, and these older names of their functions: "
             + "; ".join(f"{k}: {', '.join(sorted(v))}" for k, v in ALIASES.items())
             + "); compared with eager at rtol 1e-4, atol 1e-5.", "",
             f"**{counts['pass']} of {handled} entries that torch.export handles pass "
             f"({100 * counts['pass'] / max(handled, 1):.1f}%).** {counts['not-exportable']} entries are not "
             f"exportable by torch.export and {counts['no-sample']} have no usable sample; both are left out of the "
             "denominator.", "", "| status | entries |", "|---|---:|"]
    lines += [f"| {s} | {counts[s]} |" for s in ("pass", "mismatch", "graphopt-fails", "not-exportable", "no-sample")]
    bad = [(n, s, d) for n, s, d in rows if s in ("mismatch", "graphopt-fails")]
    if bad:
        lines += ["", "## What fails", "", "| entry | status | detail |", "|---|---|---|"]
        lines += [f"| {n} | {s} | {d.replace('|', '/')} |" for n, s, d in bad]
    text = "\n".join(lines) + "\n"
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, args.out)
    print(f"{counts['pass']}/{handled} pass; wrote {args.out}")


if __name__ == "__main__":
    main()
