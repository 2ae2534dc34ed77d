"""Least-squares refit of the linears that read pruned units (`prune-structured{reconstruct=true}`).

Removing units drops their contribution from every linear that reads them. Over real inputs the units kept
usually still carry much of that signal (activations are correlated), so the reader's weights and bias can be
fitted again to reproduce the unpruned output. For a linear y = x·Wᵀ + b whose input keeps the units K:

    W'_K, b' = argmin Σ_rows ‖x·Wᵀ + b − (x_K·W'_Kᵀ + b')‖² + λ‖W'_K‖²

— the reconstruction step of He et al., "Channel Pruning for Accelerating Very Deep Neural Networks" (2017); bias
compensation alone (FLAP, 2024) is the special case W'_K = W_K. The solution needs only G = [x, 1]ᵀ[x, 1] over the
calibration rows, one (in+1)² matrix per input, which `InputGrams` gathers for the values a pass names (so only
the readers of pruned groups cost memory). It is exact when a removed unit is a linear combination of kept ones
over the data (a duplicated neuron), and otherwise the best the kept units can do, in the least-squares sense,
on the calibration rows — which is why it wants a few hundred rows per unit kept, and λ (relative to the mean
diagonal of G) keeps it from fitting noise when there are fewer.

>>> import numpy as np
>>> x = np.random.default_rng(0).standard_normal((64, 3))
>>> x = np.concatenate([x, x[:, :1]], axis=1)              # unit 3 duplicates unit 0
>>> w, b = np.ones((2, 4)), np.zeros(2)
>>> w2, b2 = refit(gram(x), w, b, keep=[0, 1, 2], ridge=0.0)
>>> np.allclose(x[:, :3] @ w2.T + b2, x @ w.T + b)
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphopt.ir import Graph

__all__ = ["InputGrams", "gram", "refit", "relative_error"]


def gram(x: np.ndarray) -> np.ndarray:
    """[x, 1]ᵀ[x, 1] over every row of `x` (all axes but the last are rows), as float64. The product runs in the
    input's precision when that is f32 (one batch's sums are short; f64 GEMMs cost 4x and were most of a MiniLM
    pruning's time); callers sum the batches in f64."""
    dtype = np.float32 if x.dtype == np.float32 else np.float64
    rows = np.asarray(x, dtype).reshape(-1, x.shape[-1])
    aug = np.concatenate([rows, np.ones((rows.shape[0], 1), dtype)], axis=1)
    return (aug.T @ aug).astype(np.float64)


def refit(g: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, keep: Sequence[int],
          ridge: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """The weight [out, len(keep)] and bias [out] that best reproduce `x·weightᵀ + bias` from the kept input
    units, given `g = gram(x)`; `ridge` is λ relative to the mean of G's kept diagonal."""
    full = _augmented(weight, bias)
    rows = np.asarray([*keep, weight.shape[1]])  # the kept units and the constant column
    a = g[np.ix_(rows, rows)]
    lam = ridge * float(np.mean(np.diag(a)[:-1])) if len(rows) > 1 else 0.0
    a = a + lam * np.diag(np.r_[np.ones(len(rows) - 1), 0.0])  # the bias is not shrunk
    theta = np.linalg.solve(a, g[rows] @ full) if np.linalg.cond(a) < 1e12 else np.linalg.lstsq(
        a, g[rows] @ full, rcond=None)[0]
    return theta[:-1].T, theta[-1]


def _augmented(weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """[Wᵀ; bᵀ]: the map from [x, 1] to the output, in float64."""
    b = np.zeros(weight.shape[0]) if bias is None else np.asarray(bias, np.float64).reshape(-1)
    return np.concatenate([weight.astype(np.float64).T, b[None, :]])


def relative_error(g: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, keep: Sequence[int],
                   new_weight: np.ndarray, new_bias: np.ndarray | None) -> float:
    """‖x·Wᵀ + b − (x_K·W'ᵀ + b')‖² / ‖x·Wᵀ + b‖² over the rows `g = gram(x)` was summed from."""
    full = _augmented(weight, bias)
    diff = full.copy()
    rows = np.asarray([*keep, weight.shape[1]])
    diff[rows] -= _augmented(new_weight, new_bias)
    num, den = np.trace(diff.T @ g @ diff), np.trace(full.T @ g @ full)
    return float(num / den) if den > 0 else 0.0


@dataclass
class InputGrams:
    """Calibration samples from which a pass asks for the Gram matrices of the values it names (provided to
    `prune-structured{reconstruct=true}` by type, like `Saliency`)."""

    samples: list[list[np.ndarray]]

    def __call__(self, graph: Graph, names: Sequence[str]) -> dict[str, np.ndarray]:
        """`gram` of each named value (a graph input or a node output) summed over every sample: one run of the
        reference interpreter over the samples for all of them."""
        from graphopt.ir.interpreter import run

        want, sums = set(names), {}  # type: tuple[set[str], dict[str, np.ndarray]]
        if not want:
            return sums

        def observe(v: Any, a: np.ndarray) -> None:
            if v.name in want:
                sums[v.name] = sums.get(v.name, 0) + gram(a)

        for xs in self.samples:
            for v, a in zip(graph.inputs, xs):
                observe(v, np.asarray(a))
            run(graph, xs, observe=observe)
        return sums
