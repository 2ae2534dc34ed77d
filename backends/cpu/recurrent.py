"""Whether an int8 LSTM is faster than the f32 one here — what the quantize pass asks the cpu target before it
rounds a recurrent layer's weights.

Both sides are timed as this target would run them: each a one-layer graph compiled by the cpu target, whose
delegate races ONNX Runtime's kernel against torch's (for f32: torch.lstm or ONNX Runtime's LSTM; for int8: ONNX
Runtime's DynamicQuantizeLSTM, whose u8·s8 GEMMs pre-pack the weights, or torch ops on the codes). On a 2-core
AVX-512 VNNI Xeon (`python benchmarks/kernel_choices.py --choices-only`, 64 steps, batch 1): int8 0.105 against
0.118 ms at 32→64 units, 0.50 against 1.07 at 128→256, 1.79 against 6.43 at 256→512. On a CPU without VNNI the
full-range u8·s8 pair sums can saturate int16: the int8 result is compared with f32 on the same random input, and
an int8 kernel that errs is not chosen.

>>> from graphopt.backends.cpu.recurrent import lstm_advice
>>> wins, why = lstm_advice(8, 1, 16, 32)  # 8 steps, batch 1, 16 inputs, 32 units
>>> why.startswith("int8 LSTM")
True
"""

from __future__ import annotations

import functools

import numpy as np

from graphopt.ir import Graph, parse

__all__ = ["lstm_advice", "lstm_graphs"]

_MARGIN = 0.95  # int8 must take at most this fraction of f32's time: noise must not flip a choice paid every call
_MAX_REL_ERROR = 0.05  # ‖y8 − y32‖ / ‖y32‖ on random data: int8 rounding gives ~1%, a saturating GEMM far more


def lstm_graphs(steps: int, batch: int, input_size: int, hidden: int, seed: int = 0) -> tuple[Graph, Graph]:
    """(f32 lstm, quantized_lstm of the same weights rounded per gate row), sequence-first, returning y and h_n:
    random weights of the usual scale (uniform ±1/√hidden, torch's init), which the kernels' speed does not depend on."""
    import torch

    from .kernels import int8_rows

    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(hidden)
    w = {k: rng.uniform(-bound, bound, shape).astype(np.float32) for k, shape in
         (("wi", (4 * hidden, input_size)), ("wh", (4 * hidden, hidden)), ("bi", (4 * hidden,)), ("bh", (4 * hidden,)))}
    (qi, si), (qh, sh) = ([t.numpy() for t in int8_rows(torch.from_numpy(w[k]))] for k in ("wi", "wh"))
    head = (f"(%x: f32[{steps},{batch},{input_size}], %h: f32[1,{batch},{hidden}], %c: f32[1,{batch},{hidden}]) {{\n"
            f"  const @bi: f32[{4 * hidden}] = external\n  const @bh: f32[{4 * hidden}] = external\n")
    outs = f"%y: f32[{steps},{batch},{hidden}], %hn: f32[1,{batch},{hidden}], %cn: f32[1,{batch},{hidden}]"
    f32 = parse(f"graph @lstm{head}"
                f"  const @wi: f32[{4 * hidden},{input_size}] = external\n  const @wh: f32[{4 * hidden},{hidden}] = external\n"
                f"  {outs} = lstm(%x, %h, %c, @wi, @wh, @bi, @bh)\n  return %y, %hn\n}}", w)
    int8 = parse(f"graph @quantized_lstm{head}"
                 f"  const @qi: i8[{4 * hidden},{input_size}] = external\n  const @si: f32[{4 * hidden}] = external\n"
                 f"  const @qh: i8[{4 * hidden},{hidden}] = external\n  const @sh: f32[{4 * hidden}] = external\n"
                 f"  {outs} = quantized_lstm(%x, %h, %c, @qi, @si, @qh, @sh, @bi, @bh)\n  return %y, %hn\n}}",
                 {"qi": qi, "si": si, "qh": qh, "sh": sh, "bi": w["bi"], "bh": w["bh"]})
    return f32, int8


@functools.lru_cache(maxsize=None)
def lstm_advice(steps: int, batch: int, input_size: int, hidden: int) -> tuple[bool, str]:
    """(int8 wins, why with the timings) for an LSTM layer of this shape on this machine; cached per shape."""
    import torch

    from graphopt.backends.reference import random_inputs

    from . import CpuExecutable
    from .kernels import race

    f32_graph, int8_graph = lstm_graphs(steps, batch, input_size, hidden)
    xs = [torch.from_numpy(a) for a in random_inputs(f32_graph, {}, seed=1)]
    try:
        f32, int8 = CpuExecutable(f32_graph), CpuExecutable(int8_graph)
        with torch.inference_mode():
            y32, y8 = f32(*xs)[0], int8(*xs)[0]
            t8, t32 = race(lambda: int8(*xs), lambda: f32(*xs))
    except Exception as e:  # noqa: BLE001 - no int8 LSTM kernel here: the layer stays f32, and says why
        return False, f"int8 LSTM unavailable here ({str(e).splitlines()[0][:80]})"
    shape = f"{steps} steps x batch {batch}, {input_size}->{hidden}"
    err = float((y8 - y32).norm() / y32.norm().clamp_min(1e-12))
    if err > _MAX_REL_ERROR:
        return False, f"int8 LSTM errs on this CPU ({err:.1%} relative to f32 at {shape}; saturating u8·s8 sums?)"
    versus = f"{t8:.3f} vs {t32:.3f} ms f32 at {shape}"
    if t8 < _MARGIN * t32:
        return True, f"int8 LSTM faster here ({versus})"
    return False, f"int8 LSTM not faster than f32 here ({versus})"
