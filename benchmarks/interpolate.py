"""F.interpolate as single-op models: eager vs graphopt's cpu target (torch's kernel or per-axis GEMMs, as chosen
by measuring at compile time), medians of shuffled interleaved rounds with a pause between variants.

    python benchmarks/interpolate.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F

import graphopt

CASES = {"bicubic down 64->4": ((1, 3, 64, 64), {"size": (4, 4), "mode": "bicubic"}),
         "bilinear up x2 64": ((1, 16, 64, 64), {"scale_factor": 2, "mode": "bilinear"}),
         "bicubic up x2 32": ((1, 8, 32, 32), {"scale_factor": 2, "mode": "bicubic"}),
         "nearest up x2 64": ((1, 16, 64, 64), {"scale_factor": 2, "mode": "nearest"})}


class Resize(torch.nn.Module):
    def __init__(self, kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.kwargs = kwargs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, **self.kwargs)


def _mean_s(fn: Any, x: torch.Tensor, n: int = 50) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn(x)
    return (time.perf_counter() - start) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(2)
    runs = {}
    for name, (shape, kwargs) in CASES.items():
        x, model = torch.randn(shape), Resize(kwargs).eval()
        compiled = graphopt.compile(model, (x,), target="cpu")
        kernel = "gemms" if "interpolate_matrix" in (compiled.source or "") else "torch"
        runs[name] = (x, model, compiled, kernel, [], [])
    with torch.inference_mode():
        for _ in range(args.rounds):
            for name in random.sample(list(runs), len(runs)):
                x, model, compiled, _, eager_s, ours_s = runs[name]
                eager_s.append(_mean_s(model, x))
                time.sleep(0.05)
                ours_s.append(_mean_s(compiled, x))
                time.sleep(0.05)
    for name, (_, _, _, kernel, eager_s, ours_s) in runs.items():
        e, o = statistics.median(eager_s), statistics.median(ours_s)
        print(f"{name:20s} kernel={kernel:5s} eager {e * 1e6:8.1f} us  graphopt {o * 1e6:8.1f} us  {e / o:.2f}x")


if __name__ == "__main__":
    main()
