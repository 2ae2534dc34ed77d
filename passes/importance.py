"""How much each unit of a dependency group matters: magnitude, first-order Taylor, or activation statistics.

Every criterion is a non-negative *saliency* per element of the group's members, summed over the slice a unit
removes from each member:

- `l1` / `l2`: |w| or w² of the weights (no data needed);
- `taylor`: |w · ∂L/∂w| summed over calibration batches (Molchanov et al. 2019), the first-order estimate of how
  much the loss moves when w is zeroed; the gradients come from a `Saliency` the caller provides (graphopt's API
  runs the cpu target's generated torch code with the weights as parameters, see graphopt.compression);
- `activation`: mean |x| of the non-constant members over calibration inputs (how much signal flows through the
  unit), from the same `Saliency`.

Members differ in scale (a bias against a 1536-wide weight), so each member's scores are divided by their mean
before the members are averaged: every member has an equal say, and scores are comparable across groups
(which `global` ranking needs).

>>> import numpy as np
>>> member_scores(np.array([[1.0, -1.0], [3.0, 0.0]]), axis=0, kind="l1").tolist()
[2.0, 3.0]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .dependency import DependencyGroup

__all__ = ["Importance", "Saliency", "member_scores", "unit_scores"]

Importance = Literal["l1", "l2", "taylor", "activation"]


@dataclass
class Saliency:
    """Data-dependent saliency, provided to pruning passes by type (`ctx.provide(saliency)`).

    `weights`: per constant name, Σ over batches |w · ∂L/∂w| (same shape as the constant);
    `activations`: per value name and axis, mean |x| over every other axis and every calibration input."""

    weights: dict[str, np.ndarray] = field(default_factory=dict)
    activations: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    samples: int = 0
    loss: str = ""


def member_scores(array: np.ndarray, axis: int, kind: str, grad_saliency: np.ndarray | None = None) -> np.ndarray:
    """Per index of `axis`: the summed saliency of the slice at that index."""
    a = array.astype(np.float64)
    s = np.abs(a) if kind == "l1" else a * a if kind == "l2" else np.abs(grad_saliency.astype(np.float64))  # type: ignore[union-attr]
    return s.sum(axis=tuple(k for k in range(s.ndim) if k != axis)) if s.ndim > 1 else s


def unit_scores(group: DependencyGroup, kind: Importance, saliency: Saliency | None = None) -> np.ndarray:
    """One score per unit of `group` (higher: keep). NaN-free; units no member sees score 0."""
    per_axis: dict[tuple[int, int], np.ndarray] = {}

    def vector(value: object, axis: int) -> np.ndarray | None:
        key = (id(value), axis)
        if key not in per_axis:
            per_axis[key] = _member_vector(value, axis, kind, saliency)  # type: ignore[assignment]
        return per_axis[key]

    raw: dict[tuple[int, int], np.ndarray] = {}
    for u in range(group.units):
        for (value, axis), ix in group.members(u).items():
            vec = vector(value, axis)
            if vec is None:
                continue
            raw.setdefault((id(value), axis), np.zeros(group.units))[u] = vec[sorted(ix)].sum()
    if not raw:
        return np.zeros(group.units)
    cols = []
    for r in raw.values():
        mean = r.mean()
        cols.append(r / mean if mean > 0 else r)
    return np.mean(cols, axis=0)


def _member_vector(value: object, axis: int, kind: str, saliency: Saliency | None) -> np.ndarray | None:
    const = getattr(value, "const", None)
    name = getattr(value, "name", "")
    if kind in ("l1", "l2"):
        return None if const is None else member_scores(const, axis, kind)
    assert saliency is not None  # the pass asks for one with ctx.need
    if kind == "taylor":
        if const is None or name not in saliency.weights:
            return None
        return member_scores(const, axis, "taylor", saliency.weights[name])
    acts: Mapping[int, np.ndarray] = saliency.activations.get(name, {})
    return acts.get(axis) if const is None else None
