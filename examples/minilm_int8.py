"""The real all-MiniLM-L6-v2 in int8 on real sentences: graphopt next to ONNX Runtime's `quantize_dynamic`.

Compiles the sentence encoder with `quantize="int8-dynamic"` (calibrated on sentences that are not the ones it is
judged on, SmoothQuant smoothing, the most sensitive layers kept f32 for a cosine ≥ 0.99 budget), then compares
sentence embeddings against fp32 eager PyTorch: the cosine of each embedding, whether each sentence's nearest
neighbour is still the same one, how well the ranking of all pair similarities is kept (Spearman), and the
latency of every variant in one interleaved run.

Run: python examples/minilm_int8.py
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.export import Dim

sys.path.insert(0, str(Path(__file__).parent))
import graphopt  # noqa: E402
from graphopt.report import measure_latency  # noqa: E402
from minilm import encode, load  # noqa: E402

CALIBRATION = [
    "The weather is lovely today.", "He drove to the city to buy groceries.", "Quantum computers use qubits.",
    "She reads a novel every week.", "The team won the championship after a long season.",
    "Prices rose faster than wages last year.", "A dog chased the ball across the park.",
    "The recipe needs two cups of flour.", "Rain is expected over the weekend.", "The museum opens at nine.",
    "Engineers fixed the bridge in record time.", "My phone battery dies too quickly.",
]
# judged on these: pairs that mean the same thing, and unrelated ones
SENTENCES = [
    "A man is playing a guitar.", "Someone is strumming an instrument.",
    "The stock market fell sharply today.", "Shares dropped in early trading.",
    "A cat sleeps on the sofa.", "The kitten is napping on the couch.",
    "The train to Berlin was delayed.", "Our rail journey started late.",
    "She is cooking pasta for dinner.", "Spaghetti is being prepared for the evening meal.",
    "The children are playing football.", "Kids kick a ball around the field.",
]


def embed(hidden: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Mean pooling + L2 normalisation, as sentence-transformers does for this model."""
    m = mask.unsqueeze(-1).float()
    e = (torch.as_tensor(hidden) * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(e, dim=-1).numpy()


def ort_int8(bert: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> object:
    """ONNX Runtime's int8 as its docs give it: torch.onnx export, then `quantize_dynamic` (QInt8 weights)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from graphopt.backends.onnxruntime import session

    dyn = {k: {0: Dim("batch"), 1: Dim("seq", max=512)} for k in inputs}
    proto = torch.onnx.export(bert, (), kwargs=inputs, dynamic_shapes=dyn, dynamo=True, verbose=False).model_proto
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(proto.SerializeToString())
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
        return session(dst.read_bytes(), threads=torch.get_num_threads())


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)
    bert, tok = load()
    inputs = encode(tok, SENTENCES)
    calib = [{k: v.numpy() for k, v in encode(tok, CALIBRATION[i:i + 4]).items()} for i in range(0, 12, 4)]
    dyn = {k: {0: Dim("batch"), 1: Dim("seq", max=512)} for k in inputs}
    q = graphopt.compile(bert, example_kwargs=inputs, dynamic_shapes=dyn, pipeline="O3", quantize="int8-dynamic",
                         calibration=calib)
    f32 = graphopt.compile(bert, example_kwargs=inputs, dynamic_shapes=dyn, pipeline="O3")
    sess = ort_int8(bert, inputs)
    feeds = {k: v.numpy() for k, v in inputs.items()}
    mask = inputs["attention_mask"]
    with torch.inference_mode():
        variants = {
            "eager fp32": lambda: bert(**inputs).last_hidden_state,
            "graphopt fp32": lambda: f32(**inputs),
            "graphopt int8": lambda: q(**inputs),
            "onnxruntime int8": lambda: torch.from_numpy(sess.run(None, feeds)[0]),  # type: ignore[attr-defined]
        }
        emb = {name: embed(fn(), mask) for name, fn in variants.items()}
        lat = measure_latency(variants, repeats=30)
    ref = emb["eager fp32"]
    ref_sims = (ref @ ref.T)[np.triu_indices(len(SENTENCES), 1)]
    ref_nn = np.argsort(-(ref @ ref.T - 2 * np.eye(len(SENTENCES))), axis=1)[:, 0]
    n_int8 = sum(r["precision"] == "int8" for r in q.layers)
    print(f"graphopt int8: {n_int8} of {len(q.layers)} layers int8 (the rest kept f32: sensitivity or speed; "
          "`q.report()` says which and why)")
    print(f"{'variant':<18} {'median ms':>9} {'vs eager':>8} {'min emb cos':>11} {'same NN':>7} {'Spearman':>8}")
    for name, e in emb.items():
        cos = np.sum(e * ref, axis=1)
        sims = (e @ e.T)[np.triu_indices(len(SENTENCES), 1)]
        nn = np.argsort(-(e @ e.T - 2 * np.eye(len(SENTENCES))), axis=1)[:, 0]
        speed = lat["eager fp32"]["median"] / lat[name]["median"]
        print(f"{name:<18} {lat[name]['median']:9.2f} {speed:7.2f}x {cos.min():11.5f} "
              f"{int((nn == ref_nn).sum()):>3}/{len(SENTENCES)} {spearman(sims, ref_sims):8.4f}")


if __name__ == "__main__":
    main()
