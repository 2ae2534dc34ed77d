"""An embedding + LSTM text classifier, compiled by graphopt (the LSTM runs as the IR's `lstm` op, not skipped).

The task is synthetic but learnable: a "review" is a sequence of word ids, a few of which carry positive or negative
sentiment; the label is which kind dominates. The model trains for a few seconds, then eager and compiled are
compared on held-out reviews. The batch is a symbolic dim; torch.export specializes nn.LSTM to the example's
sequence length, so the compiled model takes reviews of that length (32 words). It is then compiled in int8
(`quantize="int8-dynamic"`): the LSTM's GEMMs in integers where this CPU measures that faster, with the accuracy and
speed of each.
Run: python examples/lstm_classifier.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from torch import nn
from torch.export import Dim

import graphopt
from graphopt.report import fidelity, measure_latency

VOCAB, POSITIVE, NEGATIVE, LENGTH = 200, range(10, 20), range(20, 30), 32


class LSTMClassifier(nn.Module):
    def __init__(self, vocab: int = VOCAB, dim: int = 32, hidden: int = 64, classes: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(self.embed(tokens))
        return self.head(h[-1])


def reviews(n: int, length: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(30, VOCAB, (n, length), generator=gen)
    pos = torch.randint(0, 4, (n,), generator=gen)
    neg = torch.randint(0, 4, (n,), generator=gen)
    neg = torch.where(neg == pos, (neg + 1) % 4, neg)
    for i in range(n):
        where = torch.randperm(length, generator=gen)[: int(pos[i] + neg[i])]
        words = [POSITIVE[int(j)] for j in torch.randint(0, 10, (int(pos[i]),), generator=gen)]
        words += [NEGATIVE[int(j)] for j in torch.randint(0, 10, (int(neg[i]),), generator=gen)]
        tokens[i, where] = torch.tensor(words, dtype=tokens.dtype)
    return tokens, (pos > neg).long()


def train(seconds: float = 5.0, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = LSTMClassifier()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        x, y = reviews(64, LENGTH, gen)
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


def model() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """Factory for the CLI: `graphopt compile examples.lstm_classifier:model -o out/lstm` (trains for 2 s)."""
    return train(2.0), (reviews(4, LENGTH, torch.Generator().manual_seed(1))[0],)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.export's pytree deprecation notes
    warnings.filterwarnings("ignore", message=".*were assigned during export")  # nn.LSTM's flat weights
    torch.set_num_threads(2)
    net = train(args.seconds)
    example = reviews(4, LENGTH, torch.Generator().manual_seed(1))[0]
    compiled = graphopt.compile(net, (example,), dynamic_shapes=({0: Dim("batch")},), pipeline="O2")
    ops = sorted({n.op.name for n in compiled.graph})
    print(f"compiled: {compiled}; ops: {', '.join(ops)}")
    x, y = reviews(1000, LENGTH, torch.Generator().manual_seed(2))
    with torch.inference_mode():
        eager_logits, comp_logits = net(x), compiled(x)
    acc_e = float((eager_logits.argmax(1) == y).float().mean())
    acc_c = float((comp_logits.argmax(1) == y).float().mean())
    f = fidelity(comp_logits, eager_logits)
    print(f"held-out accuracy (1000 reviews of {LENGTH} words): eager {acc_e:.4f}, graphopt {acc_c:.4f}; "
          f"logits max abs error {f['max_abs']:.2e}, cosine {f['cosine']:.8f}")
    # int8: the LSTM's weights rounded per gate row, its GEMMs in integers (ONNX Runtime's int8 LSTM) — where this
    # CPU measures that faster than the f32 LSTM at this shape; the layer table says which and why
    int8 = graphopt.compile(net, (example,), dynamic_shapes=({0: Dim("batch")},), pipeline="O2",
                            quantize="int8-dynamic")
    for row in int8.layers:
        print(f"  int8 layer table: {row['layer']}: {row['precision']} ({row['reason']})")
    with torch.inference_mode():
        q_logits = int8(x)
    acc_q = float((q_logits.argmax(1) == y).float().mean())
    print(f"int8: held-out accuracy {acc_q:.4f} ({100 * (acc_q - acc_c):+.2f} points vs f32), logits cosine vs eager "
          f"{fidelity(q_logits, eager_logits)['cosine']:.6f}")
    one = x[:1]
    with torch.inference_mode():
        lat = measure_latency({"eager": lambda: net(one), "graphopt": lambda: compiled(one),
                               "graphopt int8": lambda: int8(one)}, repeats=50)
    e, g, q = (lat[k]["median"] for k in ("eager", "graphopt", "graphopt int8"))
    print(f"latency batch 1, {LENGTH} words (median of 50 interleaved): eager {e:.3f} ms, graphopt {g:.3f} ms "
          f"({e / g:.2f}x), graphopt int8 {q:.3f} ms ({e / q:.2f}x)")


if __name__ == "__main__":
    main()
