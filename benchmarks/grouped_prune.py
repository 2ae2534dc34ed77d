"""Pruning whole groups of grouped convolutions: latency and parameters before and after, on the cpu target.

Four ResNeXt-style bottleneck blocks (1x1 → grouped 3x3 with 32 groups → 1x1, batch norms, residual), 256 channels
at 28x28, random weights. `prune-structured{ratio=0.5 scope=channels}` removes half of each block's groups (the
residual stream reaches the graph's input and output, so it stays). One process, variants interleaved in shuffled
rounds (graphopt.report.measure_latency), medians.

    python benchmarks/grouped_prune.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import platform

import torch
from torch import nn

import graphopt
from graphopt.backends import get_backend
from graphopt.passes import PassManager
from graphopt.report import measure_latency


class Block(nn.Module):
    def __init__(self, channels: int = 256, width: int = 256, groups: int = 32) -> None:
        super().__init__()
        self.a, self.ba = nn.Conv2d(channels, width, 1), nn.BatchNorm2d(width)
        self.b, self.bb = nn.Conv2d(width, width, 3, padding=1, groups=groups), nn.BatchNorm2d(width)
        self.c, self.bc = nn.Conv2d(width, channels, 1), nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bb(self.b(torch.relu(self.ba(self.a(x))))))
        return torch.relu(x + self.bc(self.c(y)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    torch.manual_seed(0)
    net = nn.Sequential(*[Block() for _ in range(4)]).eval()
    x = torch.randn(1, 256, 28, 28)
    dense = graphopt.to_graph(net, (x,))
    PassManager.parse("O2").run(dense)
    pruned = dense.copy()
    stats = PassManager.parse("prune-structured{ratio=0.5 scope=channels}").run(pruned).records[-1].stats
    groups = sorted({n.attrs["groups"] for n in pruned if n.op.name == "conv" and n.attrs["groups"] > 1})
    cpu = get_backend("cpu")
    fa, fb = cpu.compile(dense), cpu.compile(pruned)
    xn = x.numpy()
    with torch.no_grad():
        res = measure_latency({"eager": lambda: net(x), "graphopt": lambda: fa(xn), "graphopt pruned": lambda: fb(xn)},
                              repeats=args.repeats)
    print(f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"parameters {stats['params-before']} -> {stats['params-after']}, grouped convs now {groups} groups")
    for name, r in res.items():
        print(f"{name:16s} {r['median']:.3f} ms")
    print(f"pruned vs unpruned graphopt: {res['graphopt']['median'] / res['graphopt pruned']['median']:.2f}x")


if __name__ == "__main__":
    main()
