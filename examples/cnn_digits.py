"""A small CNN trained for a few seconds on scikit-learn's digits, compiled by graphopt: accuracy and speed vs eager.

The digits (1,797 real 8x8 handwritten images) ship inside scikit-learn, so nothing is downloaded.
Run: python examples/cnn_digits.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from torch import nn
from torch.export import Dim

import graphopt
from graphopt.report import fidelity, measure_latency


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    xtr, xte, ytr, yte = train_test_split(x, digits.target, test_size=0.3, random_state=seed, stratify=digits.target)
    return torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte), torch.from_numpy(yte)


def train(seconds: float = 5.0, seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    xtr, ytr, xte, yte = data(seed)
    net = DigitsCNN()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for idx in torch.randperm(len(xtr)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xtr[idx]), ytr[idx]).backward()
            opt.step()
    return net.eval(), xte, yte


def model() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """Factory for the CLI: `graphopt compile examples.cnn_digits:model -o out/digits` (trains for 2 s)."""
    net, xte, _ = train(2.0)
    return net, (xte[:32],)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.export's pytree deprecation notes
    torch.set_num_threads(2)
    net, xte, yte = train(args.seconds)
    compiled = graphopt.compile(net, (xte[:8],), dynamic_shapes=({0: Dim("batch")},), pipeline="O2")
    with torch.inference_mode():
        eager_logits, comp_logits = net(xte), compiled(xte)
    acc_e = float((eager_logits.argmax(1) == yte).float().mean())
    acc_c = float((comp_logits.argmax(1) == yte).float().mean())
    agree = float((eager_logits.argmax(1) == comp_logits.argmax(1)).float().mean())
    f = fidelity(comp_logits, eager_logits)
    print(f"compiled: {compiled}")
    print(f"test accuracy on {len(yte)} held-out digits: eager {acc_e:.4f}, graphopt {acc_c:.4f} "
          f"(predictions agree on {agree:.2%}); logits max abs error {f['max_abs']:.2e}, cosine {f['cosine']:.8f}")
    # static int8: activation scales calibrated on training images (not the test set), int8 convolutions where
    # this CPU runs them faster than f32, accuracy budget cosine >= 0.999 on the calibration batches
    xtr = data()[0]
    calib = [(xtr[i:i + 64],) for i in range(0, 256, 64)]
    int8 = graphopt.compile(net, (xte[:8],), dynamic_shapes=({0: Dim("batch")},), quantize="int8-static",
                            calibration=calib, budget=0.999)
    with torch.inference_mode():
        int8_logits = int8(xte)
    acc_q = float((int8_logits.argmax(1) == yte).float().mean())
    n_int8 = sum(r["precision"] == "int8" for r in int8.layers)
    print(f"static int8 ({n_int8} of {len(int8.layers)} layers int8, the rest measured slower or too small here): "
          f"test accuracy {acc_q:.4f} vs fp32 {acc_e:.4f} ({100 * (acc_q - acc_e):+.2f} points), "
          f"logits cosine {fidelity(int8_logits, eager_logits)['cosine']:.6f}")
    # the accuracy cost alone: every eligible layer int8 whatever this CPU's speed, no budget search
    every = graphopt.compile(net, (xte[:8],), dynamic_shapes=({0: Dim("batch")},), quantize="int8-static",
                             calibration=calib, budget=None, kernel_choice="always")
    with torch.inference_mode():
        every_logits = every(xte)
    acc_all = float((every_logits.argmax(1) == yte).float().mean())
    n_all = sum(r["precision"] == "int8" for r in every.layers)
    print(f"static int8, all {n_all} eligible layers: test accuracy {acc_all:.4f} ({100 * (acc_all - acc_e):+.2f} "
          f"points vs fp32), logits cosine {fidelity(every_logits, eager_logits)['cosine']:.6f}")
    one = xte[:1]
    with torch.inference_mode():
        lat = {n: measure_latency({"eager": lambda b=b: net(b), "graphopt": lambda b=b: compiled(b),
                                   "int8": lambda b=b: int8(b)}, repeats=30)
               for n, b in (("batch 1", one), (f"batch {len(xte)}", xte))}
    for name, m in lat.items():
        e, g, q = m["eager"]["median"], m["graphopt"]["median"], m["int8"]["median"]
        print(f"latency {name} (median of 30 interleaved): eager {e:.3f} ms, graphopt {g:.3f} ms ({e / g:.2f}x), "
              f"graphopt int8 {q:.3f} ms ({e / q:.2f}x)")


if __name__ == "__main__":
    main()
