"""Which low-precision kernels this CPU runs faster, and what that buys a BERT-style encoder: one short run.

Prints the CPU's ISA flags, the cpu target's measured choice for int8 (7-bit and full-range activations), bf16 and
weight-only int8 and int4 GEMMs at BERT's shapes and for int8 LSTMs, then times eager, graphopt fp32, int8-dynamic
and bf16 and ONNX Runtime's int8 on a 4-layer BERT-base-width encoder (seq 128, batch 1), interleaved in shuffled
rounds, with cosine vs eager beside each.
Meant for machines with other ISAs than the development one (AVX-512 VNNI, avx512_bf16, AMX):

    python benchmarks/kernel_choices.py [--threads 2] [--repeats 20] [--layers 4] [--choices-only]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch


def flags() -> str:
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return "unknown"
    have = set(next(ln for ln in text.splitlines() if ln.startswith("flags")).split(":")[1].split())
    model = next((ln.split(":")[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "?")
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8") if f in have]
    return f"{model} ({', '.join(isa)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--choices-only", action="store_true", help="print the kernel choices, skip the model run")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    from graphopt.backends.cpu.kernels import (bf16_linear_choice, int4_linear_choice, int8_linear_choice,
                                               int8_saturates)

    print(f"CPU: {flags()}; torch {torch.__version__}; {args.threads} threads", flush=True)
    print(f"int8 GEMM saturates full-range activations: {int8_saturates()}", flush=True)
    for k, n in ((768, 768), (768, 2304), (768, 3072), (3072, 768)):
        print(f"  {k}x{n}: int8 7-bit {int8_linear_choice(k, n, 'dynamic', True)[1]}", flush=True)
        print(f"  {k}x{n}: int8 8-bit {int8_linear_choice(k, n, 'dynamic', False)[1]}", flush=True)
        print(f"  {k}x{n}: bf16 {bf16_linear_choice(k, n)[1]}", flush=True)
        print(f"  {k}x{n}: weight-only int8 {int8_linear_choice(k, n, 'none', True)[1]}", flush=True)
        print(f"  {k}x{n}: weight-only int4 {int4_linear_choice(k, n, 128)[1]}", flush=True)
    from graphopt.backends.cpu.recurrent import lstm_advice

    for steps, inputs, hidden in ((64, 32, 64), (64, 128, 256), (64, 256, 512)):  # the LSTM classifier's, wider
        print(f"  LSTM {inputs}->{hidden}, {steps} steps, batch 1: {lstm_advice(steps, 1, inputs, hidden)[1]}",
              flush=True)
    if args.choices_only:
        return

    import transformers as T

    from graphopt.bench import bench

    torch.manual_seed(0)
    model = T.BertModel(T.BertConfig(num_hidden_layers=args.layers)).eval()
    ids = torch.randint(0, 30522, (1, 128), generator=torch.Generator().manual_seed(1))
    kw = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    t0 = time.perf_counter()
    r = bench(model, (), example_kwargs=kw, peers=("eager", "onnxruntime-int8"), targets=("cpu",),
              precisions=("int8-dynamic", "bf16"), repeats=args.repeats, threads=args.threads, progress=False,
              name=f"BERT-base width, {args.layers} layers, seq 128")
    print(r.markdown(), flush=True)
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
