"""The model-zoo sweep: transformers families with small random configs, each through three ways in —
torch.export, the ONNX dynamo exporter and the TorchScript ("legacy") ONNX exporter with dynamic axes — compiled
by graphopt for the cpu target (O3), checked against eager PyTorch at a batch and length other than the one it
was exported with, and timed against eager. Writes benchmarks/ZOO.md.

    python benchmarks/zoo.py                      # every family (about 20 minutes on 2 cores)
    python benchmarks/zoo.py --families bert,gpt2 # a few
    python benchmarks/zoo.py --one bert           # one family, JSON on stdout (what the sweep runs per family)

Each family runs in its own process with a time limit, so a hang or a crash in one is a row, not the end of the
sweep. Configs are small (hidden 64, 2 layers) so the sweep measures coverage and correctness; the speedups of
models this small are dominated by per-op overhead, so read them as "not slower than eager", not as the speedup of
the full-size model (benchmarks/models.py measures those).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SMALL = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
             max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=2)
# family -> (transformers model_type, config overrides). Encoders first, then decoders.
FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "bert": ("bert", {}), "roberta": ("roberta", {}), "distilbert": ("distilbert", {"dim": 64, "hidden_dim": 128,
                                                                                    "n_layers": 2, "n_heads": 4}),
    "albert": ("albert", {"embedding_size": 32}), "electra": ("electra", {"embedding_size": 32}),
    "xlm-roberta": ("xlm-roberta", {}), "camembert": ("camembert", {}), "deberta": ("deberta", {}),
    "deberta-v2": ("deberta-v2", {}), "mpnet": ("mpnet", {}), "convbert": ("convbert", {}),
    "ernie": ("ernie", {}), "roformer": ("roformer", {"embedding_size": 64}), "megatron-bert": ("megatron-bert", {}),
    "mobilebert": ("mobilebert", {"embedding_size": 32, "intra_bottleneck_size": 32, "true_hidden_size": 32}),
    "data2vec-text": ("data2vec-text", {}), "xmod": ("xmod", {}), "rembert": ("rembert", {"input_embedding_size": 32,
                                                                                        "output_embedding_size": 32}),
    "nystromformer": ("nystromformer", {}), "squeezebert": ("squeezebert", {"embedding_size": 64}),
    "esm": ("esm", {"vocab_size": 33, "pad_token_id": 1, "mask_token_id": 32}), "splinter": ("splinter", {}),
    "big_bird": ("big_bird", {"attention_type": "original_full"}), "modernbert": ("modernbert", {}),
    "gpt2": ("gpt2", {}), "gpt_neo": ("gpt_neo", {"attention_types": [[["global", "local"], 1]],
                                                   "num_layers": 2, "window_size": 16}),
    "gptj": ("gptj", {"rotary_dim": 8}), "gpt_neox": ("gpt_neox", {}), "opt": ("opt", {"ffn_dim": 128,
                                                                                    "word_embed_proj_dim": 64}),
    "bloom": ("bloom", {"n_head": 4}), "llama": ("llama", {"num_key_value_heads": 2}),
    "mistral": ("mistral", {"num_key_value_heads": 2}), "qwen2": ("qwen2", {"num_key_value_heads": 2}),
    "qwen3": ("qwen3", {"num_key_value_heads": 2, "head_dim": 16}), "phi": ("phi", {}),
    "phi3": ("phi3", {"num_key_value_heads": 2}), "gemma": ("gemma", {"num_key_value_heads": 2, "head_dim": 16}),
    "gemma2": ("gemma2", {"num_key_value_heads": 2, "head_dim": 16}), "falcon": ("falcon", {}),
    "codegen": ("codegen", {"rotary_dim": 8, "n_ctx": 128}), "starcoder2": ("starcoder2", {"num_key_value_heads": 2}),
    "olmo": ("olmo", {}), "stablelm": ("stablelm", {"num_key_value_heads": 4}), "granite": ("granite", {}), "cohere": ("cohere", {}),
    "biogpt": ("biogpt", {}), "xglm": ("xglm", {"d_model": 64, "ffn_dim": 128, "attention_heads": 4,
                                                "num_layers": 2}),
    "gpt_bigcode": ("gpt_bigcode", {}), "mixtral": ("mixtral", {"num_key_value_heads": 2, "num_local_experts": 4}),
}
PATHS = ("torch.export", "onnx-dynamo", "onnx-legacy")
FUSED = ("linear", "scaled_dot_product_attention", "layer_norm", "rms_norm")


def build(family: str) -> Any:
    import torch
    import transformers as T

    model_type, extra = FAMILIES[family]
    torch.manual_seed(0)
    cfg = T.AutoConfig.for_model(model_type, **{**SMALL, **extra})
    cfg.use_cache = False
    model = T.AutoModel.from_config(cfg, attn_implementation="eager") if hasattr(cfg, "_attn_implementation") \
        else T.AutoModel.from_config(cfg)
    model.eval()
    if hasattr(model, "set_default_language"):  # X-MOD routes through per-language adapters
        model.set_default_language(list(cfg.languages)[0])

    class Hidden(torch.nn.Module):  # last_hidden_state only: no cache, no pooler, one output to compare
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            out = self.m(input_ids=input_ids, attention_mask=attention_mask)
            return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]

    return Hidden().eval()


def feeds(b: int, s: int, vocab: int = 33) -> tuple[Any, Any]:
    import torch

    g = torch.Generator().manual_seed(b * 1000 + s)
    ids = torch.randint(3, vocab, (b, s), generator=g)
    mask = torch.ones(b, s, dtype=torch.long)
    if b > 1:
        mask[-1, -2:] = 0  # a padded row: the mask path must be right, not just present
    return ids, mask


def _compile(path: str, model: Any, example: tuple[Any, Any], protos: dict[str, Any]) -> Any:
    import torch

    import graphopt

    if path == "torch.export":
        from torch.export import Dim

        batch, seq = Dim("batch", max=64), Dim("seq", min=3, max=120)
        return graphopt.compile(model, example, dynamic_shapes=({0: batch, 1: seq},) * 2, pipeline="O3")
    buf = io.BytesIO()
    names = ["input_ids", "attention_mask"]
    with warnings.catch_warnings(), _exporter_failures():
        warnings.simplefilter("ignore")
        if path == "onnx-dynamo":
            from torch.export import Dim

            batch, seq = Dim("batch", max=64), Dim("seq", min=3, max=120)
            prog = torch.onnx.export(model, example, input_names=names, dynamo=True, verbose=False,
                                     dynamic_shapes=({0: batch, 1: seq},) * 2)
            proto = prog.model_proto
        else:
            torch.onnx.export(model, example, buf, dynamo=False, opset_version=17, input_names=names,
                              output_names=["hidden"], dynamic_axes={n: {0: "batch", 1: "seq"} for n in
                                                                     (*names, "hidden")})
            import onnx

            proto = onnx.load_from_string(buf.getvalue())
    protos[path] = proto
    return graphopt.compile(proto, target="cpu", pipeline="O3")


class ExportFailed(Exception):
    """torch.onnx.export itself failed: the model has no ONNX file for graphopt to compile on this path."""


class _exporter_failures:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, e: Any, tb: Any) -> None:
        if e is not None and not isinstance(e, ExportFailed):
            raise ExportFailed(f"{type(e).__name__}: {' '.join(str(e).split())[:200]}") from e


def _ort_verdict(proto: Any, check: tuple[Any, Any], want: Any) -> str:
    """Whether ONNX Runtime runs the same file correctly: a file the exporter broke is not graphopt's failure."""
    import numpy as np
    import onnxruntime as ort

    try:
        feeds = {i.name: t.numpy() for i, t in zip(proto.graph.input, check)}
        got = ort.InferenceSession(proto.SerializeToString()).run(None, feeds)[0]
    except Exception as e:  # noqa: BLE001
        return f"ONNX Runtime fails on this file too: {' '.join(str(e).split())[:120]}"
    err = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-6))
    return "ONNX Runtime runs this file correctly" if err <= 1e-4 else f"ONNX Runtime is off too (rel err {err:.1e})"


def _median_ms(fn: Any, args: tuple[Any, ...], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def one(family: str) -> dict[str, Any]:
    """Every path for one family: {path: {status, error, rel_err, speedup, fused}}."""
    import numpy as np
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    row: dict[str, Any] = {"family": family}
    try:
        model = build(family)
    except Exception as e:  # noqa: BLE001 - a config transformers cannot build here is a row, not a crash
        return {**row, "build_error": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"}
    vocab = min(getattr(model.m.config, "vocab_size", 33) or 33, 120)
    example, check, timed = feeds(2, 8, vocab), feeds(3, 11, vocab), feeds(1, 32, vocab)
    try:
        with torch.no_grad():
            want = model(*check).numpy()
    except Exception as e:  # noqa: BLE001 - eager itself fails on this config: a row, not a crash
        return {**row, "build_error": f"eager: {type(e).__name__}: {str(e).splitlines()[0][:160]}"}
    compiled: dict[str, Any] = {}
    protos: dict[str, Any] = {}
    for path in PATHS:
        r: dict[str, Any] = {}
        try:
            t = time.perf_counter()
            c = _compile(path, model, example, protos)
            r["compile_s"] = round(time.perf_counter() - t, 2)
            got = np.asarray(c(*check))
            r["rel_err"] = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-6))
            r["status"] = "match" if r["rel_err"] <= 1e-4 else "mismatch"
            counts = Counter(n.op.name for n in c.graph)
            r["fused"] = {op: counts[op] for op in FUSED if counts[op]}
            compiled[path] = c
        except ExportFailed as e:  # no file to compile: the exporter's failure, not graphopt's
            r["status"] = "no export"
            r["error"] = f"the exporter failed: {e}"
        except Exception as e:  # noqa: BLE001 - the error is the result
            r["status"] = "fails"
            r["error"] = f"{type(e).__name__}: {' '.join(str(e).split())[:240]}"
        if path in protos and r["status"] != "match":
            r["ort"] = _ort_verdict(protos[path], check, want)
        row[path] = r
    if compiled:  # interleaved rounds: eager and every compiled path, in shuffled order
        import random

        fns = {"eager": model, **compiled}
        ms: dict[str, list[float]] = {k: [] for k in fns}
        with torch.no_grad():
            for f in fns.values():
                for _ in range(3):
                    f(*timed)
            for _ in range(7):
                order = list(fns)
                random.shuffle(order)
                for k in order:
                    ms[k].append(_median_ms(fns[k], timed, 5))
        eager = statistics.median(ms["eager"])
        for path in compiled:
            row[path]["speedup"] = round(eager / statistics.median(ms[path]), 2)
        row["eager_ms"] = round(eager, 3)
    return row


def sweep(families: list[str], timeout: int) -> list[dict[str, Any]]:
    rows = []
    for fam in families:
        t = time.perf_counter()
        try:
            out = subprocess.run([sys.executable, __file__, "--one", fam], capture_output=True, text=True,
                                 timeout=timeout, cwd=ROOT)
            line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
            row = json.loads(line[-1]) if line else {"family": fam, "build_error":
                                                      f"crashed (rc {out.returncode}): {out.stderr[-300:]}"}
        except subprocess.TimeoutExpired:
            row = {"family": fam, "build_error": f"timed out after {timeout} s"}
        row["seconds"] = round(time.perf_counter() - t, 1)
        rows.append(row)
        print(f"{fam:16s} " + "  ".join(f"{p}={row.get(p, {}).get('status', '-')}" for p in PATHS)
              + f"  ({row['seconds']} s)", flush=True)
    return rows


def _cell(r: dict[str, Any] | None) -> str:
    if not r:
        return "—"
    if r["status"] in ("fails", "no export"):
        return r["status"]
    return f"{r['status']} {r.get('speedup', '?')}x"


def report(rows: list[dict[str, Any]], seconds: float) -> str:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from models import _cpu

    import torch
    import transformers

    lines = ["# Model zoo: transformers families through torch.export and both ONNX exporters", "",
             f"Produced by `python benchmarks/zoo.py` ({seconds:.0f} s); do not edit by hand. Machine: {_cpu()}, "
             f"{torch.get_num_threads()} threads, torch {torch.__version__}, transformers {transformers.__version__}.",
             "", "Each family is built from a small random config (hidden 64, 2 layers, 4 heads; GQA where the family "
             "has it), exported at batch 2 × length 8 with dynamic batch and length, compiled by graphopt (O3, cpu "
             "target) and run at batch 3 × length 11 with one padded row: *match* means the largest error is within "
             "1e-4 of the output's largest magnitude against eager PyTorch. `x` is the speedup over eager at batch 1 "
             "× length 32 (median of interleaved shuffled rounds): these models are tiny, so it measures per-op "
             "overhead, not the full-size speedup. *fused* compares the O3 fused-op counts (linear, attention, "
             "norms) of each ONNX path with the torch.export path. *no export*: torch's exporter itself failed, so there is no "
             "file for graphopt on that path.", ""]
    ok = {p: sum(1 for r in rows if r.get(p, {}).get("status") == "match") for p in PATHS}
    lines += ["| path | families exported | graphopt compiles | matches eager |", "|---|---:|---:|---:|"]
    for p in PATHS:
        comp = sum(1 for r in rows if r.get(p, {}).get("status") in ("match", "mismatch"))
        exported = sum(1 for r in rows if p in r and r[p].get("status") != "no export")
        lines.append(f"| {p} | {exported}/{len(rows)} | {comp}/{exported} | {ok[p]}/{exported} |")
    lines += ["", "| family | torch.export | onnx-dynamo | onnx-legacy | fused alike (dynamo / legacy) |",
              "|---|---|---|---|---|"]
    for r in rows:
        if "build_error" in r:
            lines.append(f"| {r['family']} | not built: {r['build_error']} | | | |")
            continue
        ref = r.get("torch.export", {}).get("fused")
        alike = " / ".join("—" if ref is None or r.get(p, {}).get("fused") is None else
                           ("yes" if r[p]["fused"] == ref else f"no: {r[p]['fused']}") for p in PATHS[1:])
        lines.append(f"| {r['family']} | " + " | ".join(_cell(r.get(p)) for p in PATHS) + f" | {alike} |")
    failures = [(r["family"], p, (r[p].get("error") or f"rel err {r[p]['rel_err']:.2e}")
                 + (f" — {r[p]['ort']}" if r[p].get("ort") else "")) for r in rows for p in PATHS
                if p in r and r[p]["status"] != "match"]
    if failures:
        lines += ["", "## Failures", "", "| family | path | error |", "|---|---|---|"]
        lines += [f"| {f} | {p} | {e.replace('|', '/')} |" for f, p, e in failures]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", help="run one family and print its row as JSON")
    ap.add_argument("--families", help="comma-separated subset (default: all)")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per family")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "ZOO.md"))
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return
    families = args.families.split(",") if args.families else list(FAMILIES)
    t = time.perf_counter()
    rows = sweep(families, args.timeout)
    text = report(rows, time.perf_counter() - t)
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, args.out)
    (Path(args.out).with_suffix(".json")).write_text(json.dumps(rows, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
