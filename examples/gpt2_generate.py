"""Greedy generation with a GPT-2 compiled by graphopt: the same tokens as eager PyTorch, and how fast.

The GPT-2 comes from a transformers config (random weights: no model hub here). The model is traced once with a
symbolic sequence length, so every generation step (a longer prompt each time, no KV cache) reuses one compiled
artifact. Run: python examples/gpt2_generate.py [--layers 4] [--width 256] [--new-tokens 24]
[--precision int8-dynamic|int8-weight-only|int4-weight-only|bf16] (low precision: token agreement with eager instead of equality)
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import torch
from torch.export import Dim

import graphopt
from graphopt.report import fidelity, measure_latency


def build(layers: int = 4, width: int = 256, heads: int = 4, vocab: int = 2048, seed: int = 0) -> torch.nn.Module:
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(n_embd=width, n_layer=layers, n_head=heads, vocab_size=vocab, n_positions=256,
                                  use_cache=False, attn_implementation="eager", tie_word_embeddings=False,
                                  initializer_range=0.1)  # untied and wider: random weights that do not just repeat
    return transformers.GPT2LMHeadModel(cfg).eval()


def model() -> tuple[torch.nn.Module, tuple[torch.Tensor, ...], None, tuple[dict[int, Dim]]]:
    """Factory for the CLI: `graphopt compile examples.gpt2_generate:model -o out/gpt2 --input-shape input_ids=1x64`."""
    prompt = torch.randint(0, 2048, (1, 16), generator=torch.Generator().manual_seed(1))
    return build(), (prompt,), None, ({1: Dim("seq", min=2, max=255)},)


def greedy(step: Callable[[torch.Tensor], torch.Tensor], prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
    ids = prompt
    for _ in range(new_tokens):
        logits = step(ids)
        ids = torch.cat([ids, logits[:, -1:].argmax(-1)], dim=1)
    return ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--new-tokens", type=int, default=24)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "int8-dynamic", "int8-weight-only", "int4-weight-only", "bf16"))
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.export's pytree deprecation notes
    gpt2 = build(args.layers, width=args.width)
    prompt = torch.randint(0, 2048, (1, 8), generator=torch.Generator().manual_seed(1))

    t0 = time.perf_counter()
    calib = [(torch.randint(0, 2048, (1, n), generator=torch.Generator().manual_seed(n)),) for n in (8, 24, 32)]
    compiled = graphopt.compile(gpt2, (prompt,), dynamic_shapes=({1: Dim("seq", min=2, max=255)},), pipeline="O2",
                                quantize=None if args.precision == "fp32" else args.precision,
                                calibration=[tuple(t.numpy() for t in c) for c in calib])
    print(f"compiled {compiled} in {time.perf_counter() - t0:.1f} s")
    if compiled.layers:
        low = sum(r["precision"] != "fp32" for r in compiled.layers)
        print(f"{args.precision}: {low} of {len(compiled.layers)} layers in low precision "
              f"(the others measured slower, or kept for the accuracy budget; compiled.report() says which)")

    def eager_step(ids: torch.Tensor) -> torch.Tensor:
        return gpt2(ids).logits

    with torch.inference_mode():
        want = greedy(eager_step, prompt, args.new_tokens)
        got = greedy(compiled, prompt, args.new_tokens)
        f = fidelity(compiled(want), eager_step(want))
        lat = measure_latency({"eager": lambda: greedy(eager_step, prompt, args.new_tokens),
                               "graphopt": lambda: greedy(compiled, prompt, args.new_tokens)}, repeats=5)
    same = torch.equal(want, got)
    agree = float((want[0, prompt.shape[1]:] == got[0, prompt.shape[1]:]).float().mean())
    print(f"eager tokens:    {want[0, prompt.shape[1]:].tolist()}")
    print(f"graphopt tokens: {got[0, prompt.shape[1]:].tolist()}")
    print(f"same tokens: {same} ({agree:.0%} agree); logits on the full sequence: max abs error {f['max_abs']:.2e}, "
          f"cosine {f['cosine']:.8f}")
    e, g = lat["eager"]["median"], lat["graphopt"]["median"]
    print(f"{args.new_tokens} greedy steps (median of 5 interleaved): eager {e:.1f} ms, graphopt {g:.1f} ms, "
          f"speedup {e / g:.2f}x")
    if not same and args.precision == "fp32":
        raise SystemExit("generated tokens differ from eager")


if __name__ == "__main__":
    main()
