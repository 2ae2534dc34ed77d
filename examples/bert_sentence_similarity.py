"""Sentence similarity with the real all-MiniLM-L6-v2: eager PyTorch vs graphopt-compiled, side by side.

Run: python examples/bert_sentence_similarity.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.export import Dim

sys.path.insert(0, str(Path(__file__).parent))
import graphopt  # noqa: E402
from graphopt.report import fidelity, measure_latency  # noqa: E402
from minilm import SENTENCES, encode, load  # noqa: E402


def embed(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean pooling + L2 normalisation, as sentence-transformers does for this model."""
    m = mask.unsqueeze(-1).float()
    e = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(e, dim=-1)


def main() -> None:
    torch.manual_seed(0)
    bert, tok = load()
    inputs = encode(tok, SENTENCES)
    dyn = {k: {0: Dim("batch"), 1: Dim("seq", max=512)} for k in inputs}
    compiled = graphopt.compile(bert, example_kwargs=inputs, dynamic_shapes=dyn, pipeline="O2", target="cpu")
    with torch.inference_mode():
        eager_h = bert(**inputs).last_hidden_state
    comp_h = compiled(**inputs)
    e_eager, e_comp = embed(eager_h, inputs["attention_mask"]), embed(comp_h, inputs["attention_mask"])
    print(f"{'pair':<62} {'eager':>8} {'graphopt':>9}")
    for i, j in [(0, 1), (2, 3), (0, 2), (1, 4)]:
        pair = f"{SENTENCES[i][:28]!r} ~ {SENTENCES[j][:28]!r}"
        print(f"{pair:<62} {float(e_eager[i] @ e_eager[j]):8.4f} {float(e_comp[i] @ e_comp[j]):9.4f}")
    f = fidelity(comp_h, eager_h)
    print(f"fidelity: max abs error {f['max_abs']:.2e}, cosine {f['cosine']:.8f}")
    other = encode(tok, ["Dynamic shapes: a different batch and sequence length, no recompiling."])
    with torch.inference_mode():
        f2 = fidelity(compiled(**other), bert(**other).last_hidden_state)
    print(f"new shape {list(other['input_ids'].shape)}: max abs error {f2['max_abs']:.2e}")
    with torch.inference_mode():
        lat = measure_latency({"eager": lambda: bert(**inputs), "graphopt": lambda: compiled(**inputs)}, repeats=20)
    print(f"latency (batch {len(SENTENCES)}, median of 20 interleaved): eager {lat['eager']['median']:.2f} ms, "
          f"graphopt {lat['graphopt']['median']:.2f} ms, speedup {lat['eager']['median'] / lat['graphopt']['median']:.2f}x")


if __name__ == "__main__":
    main()
