"""numpy ↔ torch without copies (bf16 through its bit pattern): the one conversion frontends and backends share.

A leaf module like `errors` and `fileio`: it imports torch only when called, and nothing else of graphopt.
"""

from __future__ import annotations

from typing import Any

__all__ = ["from_numpy", "to_numpy", "weight_tensor"]


def from_numpy(a: Any) -> Any:
    """numpy → torch without a copy where possible (bf16 via its bit pattern; read-only arrays are copied)."""
    import numpy as np
    import torch

    a = np.asarray(a)
    if not a.flags.writeable or not a.flags.c_contiguous:
        a = np.ascontiguousarray(a).copy()
    if a.dtype.kind == "V" and a.dtype.name == "bfloat16":  # ml_dtypes' types are kind V: skip the name lookup
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def weight_tensor(a: Any) -> Any:
    """numpy → torch for a graph constant, sharing its memory even though the graph's view is read-only.

    Compiling must not double a model's memory: the generated code never writes to a weight (every op it emits
    is out of place; runtime helpers clone before an in-place update), so torch's warning about non-writable
    arrays does not apply. Non-contiguous constants (folded transposes) are copied once, contiguous."""
    import warnings

    import numpy as np
    import torch

    a = np.asarray(a)
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        if a.dtype.name == "bfloat16":
            return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(a)


def to_numpy(t: Any) -> Any:
    """torch → numpy (bf16 as ml_dtypes.bfloat16)."""
    import ml_dtypes
    import torch

    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()
