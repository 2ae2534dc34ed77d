"""ONNX LSTM, GRU and RNN (forward, reverse, bidirectional) onto the IR's one-layer, one-direction recurrent ops.

Older ONNX exports of recurrent models (torch.onnx's TorchScript exporter, Keras/TF converters) contain these
ops. Each direction becomes one IR op on the sequence-first input — a reverse direction on the time-reversed
sequence, reversed back — with the gates reordered from ONNX's layout (LSTM i,o,f,c; GRU z,r,h) to the IR's
(torch's: LSTM i,f,g,o; GRU r,z,n). What the IR's ops do not compute is refused by name: peepholes, clipping,
coupled input/forget gates, non-default activations, and sequence_lens that are not all the full length.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphopt.ir import Value

from ..aten import reverse_time

from .context import ConversionContext, attrs_of, converter

__all__: list[str] = []

# op -> (gates, ONNX gate order as indices into the IR's order, default activations)
_SPEC = {"LSTM": (4, [0, 3, 1, 2], ["Sigmoid", "Tanh", "Tanh"]), "GRU": (3, [1, 0, 2], ["Sigmoid", "Tanh"]),
         "RNN": (1, [0], ["Tanh"])}


def _in_ir_order(blocks: list[Any], order: list[int]) -> list[Any]:
    """Gate blocks from ONNX's order to the IR's: ONNX block j holds IR gate order[j]."""
    return [blocks[order.index(g)] for g in range(len(order))]


def _direction(cx: ConversionContext, m: Value, d: int, gates: int, order: list[int], part: int = 0) -> Value:
    """One direction's weight (or bias half `part`) in the IR's gate order: reordered in numpy when it is a
    constant, by slicing and concatenating when it is a graph input."""
    if m.const is not None:
        rows = np.split(np.asarray(m.const)[d], 2)[part] if m.type.rank == 2 else np.asarray(m.const)[d]
        merged = np.concatenate(_in_ir_order(np.split(rows, gates, axis=0), order), axis=0)
        return cx.const(np.ascontiguousarray(merged), m.type.dtype)
    one = cx.op("squeeze", [cx.op("slice", [m], starts=[d], ends=[d + 1], axes=[0])], axes=[0])
    size = one.type.shape[0] // (2 if m.type.rank == 2 else 1)
    if m.type.rank == 2:  # B holds [Wb, Rb]
        one = cx.op("slice", [one], starts=[part * size], ends=[(part + 1) * size], axes=[0])
    block = size // gates
    parts = [cx.op("slice", [one], starts=[j * block], ends=[(j + 1) * block], axes=[0]) for j in range(gates)]
    return parts[0] if gates == 1 else cx.op("concat", _in_ir_order(parts, order), axis=0)


@converter("LSTM", "GRU", "RNN")
def _recurrent(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    op = n.op_type
    at = attrs_of(n)
    gates, order, default_acts = _SPEC[op]
    hidden = at["hidden_size"]
    direction = at.get("direction", "forward")
    dirs = 2 if direction == "bidirectional" else 1
    acts = [v.decode() if isinstance(v, bytes) else v for v in at.get("activations") or []]
    nonlinearity = "tanh"
    if op == "RNN" and acts and acts[0] == "Relu" and all(x == "Relu" for x in acts):
        nonlinearity, acts = "relu", None
    if acts and list(acts) != default_acts * dirs:
        raise NotImplementedError(f"{op} with activations {list(acts)} (the IR's op computes {default_acts})")
    if at.get("clip") is not None:
        raise NotImplementedError(f"{op} with clip")
    if at.get("input_forget", 0):
        raise NotImplementedError("LSTM with input_forget (coupled input and forget gates)")
    layout = at.get("layout", 0)
    x = cx.tensor(a[0])
    x = cx.op("transpose", [x], perm=[1, 0, 2]) if layout else x  # the IR ops run sequence-first here
    seq, batch = x.type.shape[0], x.type.shape[1]
    w, r = cx.tensor(a[1]), cx.tensor(a[2])
    b = cx.tensor(a[3]) if len(a) > 3 and a[3] is not None else \
        cx.const(np.zeros((dirs, 2 * gates * hidden), w.type.dtype.numpy), w.type.dtype)
    if len(a) > 4 and a[4] is not None:
        lens = cx.known(a[4])
        if lens is None or any(v != seq for v in lens):
            raise NotImplementedError(f"{op} with sequence_lens shorter than the sequence (padded batches)")
    if op == "LSTM" and len(a) > 7 and a[7] is not None:
        raise NotImplementedError("LSTM with peephole weights (P)")
    state_inputs = [5, 6] if op == "LSTM" else [5]
    dt = x.type.dtype
    states = []
    for k in state_inputs:
        if len(a) > k and a[k] is not None:
            s = cx.tensor(a[k])
            states.append(cx.op("transpose", [s], perm=[1, 0, 2]) if layout else s)  # to [dirs, batch, H]
        else:
            states.append(cx.op("full", [], shape=[dirs, batch, hidden], value=0.0, dtype=dt))
    ys, finals = [], [[] for _ in states]  # type: ignore[var-annotated]
    for d in range(dirs):
        weights = [_direction(cx, m, d, gates, order) for m in (w, r)]
        biases = [_direction(cx, b, d, gates, order, part) for part in (0, 1)]
        picked = [cx.op("slice", [s], starts=[d], ends=[d + 1], axes=[0]) for s in states]
        backward = direction == "reverse" or d == 1
        src = reverse_time(cx, x, batch_first=False) if backward else x
        extra = {"nonlinearity": nonlinearity} if op == "RNN" else \
            {"linear_before_reset": bool(at.get("linear_before_reset", 0))} if op == "GRU" else {}
        y, *new = cx.op(op.lower(), [src, *picked, *weights, *biases], batch_first=False, **extra)
        ys.append(cx.op("unsqueeze", [reverse_time(cx, y, batch_first=False) if backward else y], axes=[1]))  # [seq, 1, batch, H]
        for kind, v in zip(finals, new):
            kind.append(v)
    y = ys[0] if dirs == 1 else cx.op("concat", ys, axis=1)
    outs = [y, *(vs[0] if dirs == 1 else cx.op("concat", vs, axis=0) for vs in finals)]
    if layout:  # batch-first: Y [batch, seq, dirs, H], states [batch, dirs, H]
        outs = [cx.op("transpose", [outs[0]], perm=[2, 0, 1, 3])] + \
               [cx.op("transpose", [s], perm=[1, 0, 2]) for s in outs[1:]]
    return outs
