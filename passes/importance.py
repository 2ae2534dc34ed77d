"""How much each unit of a dependency group matters: magnitude, first-order Taylor, or activation statistics.

Every criterion is a non-negative *saliency* per element of the group's members, summed over the slice a unit
removes from each member:

- `l1` / `l2`: |w| or w² of the weights (no data needed);
- `taylor`: |w · ∂L/∂w| summed over calibration batches (Molchanov et al. 2019), the first-order estimate of how
  much the loss moves when w is zeroed; the gradients come from a `Saliency` the caller provides (graphopt's API
  runs the cpu target's generated torch code with the weights as parameters, see graphopt.compression);
- `activation`: mean |x| of the non-constant members over calibration inputs (how much signal flows through the
  unit), from the same `Saliency`;
- `refit-error`: what removing the unit costs the linears that read it *after* they are refitted by least squares
  (`reconstruct=true`): for a reader y = x·Wᵀ + b with input Gram G = [x, 1]ᵀ[x, 1] over calibration rows, the
  output error added by dropping input column j and refitting the rest is Σ_o W_oj² / (G⁻¹)_jj — Optimal Brain
  Surgeon's saliency for a column (Hassibi & Stork 1993; ZipLM, Kurtic et al. 2023, uses it for structured
  pruning). A unit whose signal the kept units carry (a correlated neuron) scores low even when it is loud, which
  is what activation magnitude misses. Needs an `InputGrams` (the same Gram matrices the refit reads).

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
from typing import Any, Literal

import numpy as np

from .dependency import DependencyGroup

__all__ = ["Importance", "Saliency", "member_scores", "reader_grams", "refit_error_picks", "unit_scores"]

Importance = Literal["l1", "l2", "taylor", "activation", "refit-error"]


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


def unit_scores(group: DependencyGroup, kind: Importance, saliency: Saliency | None = None,
                grams: Mapping[str, np.ndarray] | None = None,
                inverses: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """One score per unit of `group` (higher: keep). NaN-free; units no member sees score 0. `grams`: for
    `refit-error`, the Gram matrix of each reader's input by value name (see `reader_grams`); `inverses` keeps the
    inverse Grams it computes for `refit_error_picks`."""
    per_axis: dict[tuple[int, int], np.ndarray] = {}

    def vector(value: object, axis: int) -> np.ndarray | None:
        key = (id(value), axis)
        if key not in per_axis:
            per_axis[key] = (_refit_error(value, axis, grams or {}, inverses=inverses)  # type: ignore[assignment]
                             if kind == "refit-error"
                             else _member_vector(value, axis, kind, saliency))
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


def _reader(value: object, axis: int) -> object | None:
    """The linear that reads `value` as its weight with `axis` its input axis (the member is its columns)."""
    if getattr(value, "const", None) is None or axis != 1:
        return None
    users = list(getattr(value, "users", ()))
    if len(users) != 1 or users[0].op.name != "linear" or users[0].inputs[1] is not value:
        return None
    return users[0]


def reader_grams(group: DependencyGroup) -> list[str]:
    """The values whose Gram matrices `refit-error` reads for `group`: the inputs of the linears reading its units."""
    names = []
    for (value, axis) in group.members(0):
        node = _reader(value, axis)
        if node is not None:
            names.append(node.inputs[0].name)  # type: ignore[attr-defined]
    return names


def _inverse_gram(g: np.ndarray, n: int, ridge: float) -> np.ndarray:
    """(G + λI)⁻¹ with the refit's ridge (λ relative to the mean diagonal; the constant column is not shrunk)."""
    a = g + ridge * float(np.mean(np.diag(g)[:n])) * np.diag(np.r_[np.ones(n), 0.0])
    return np.linalg.pinv(a, hermitian=True)  # type: ignore[no-any-return]


def _reader_inverse(value: object, axis: int, grams: Mapping[str, np.ndarray], ridge: float,
                    inverses: dict[str, np.ndarray]) -> tuple[Any, np.ndarray] | None:
    """The linear reading `value`'s columns and its input's inverse Gram (computed once per input in `inverses`,
    which the one-shot scores and the greedy picks of one pass share); None where no Gram is known."""
    node: Any = _reader(value, axis)
    name = node.inputs[0].name if node is not None else None
    if name is None or name not in grams:
        return None
    if name not in inverses:
        inverses[name] = _inverse_gram(grams[name], node.inputs[1].type.shape[1], ridge)
    return node, inverses[name]


def _refit_error(value: object, axis: int, grams: Mapping[str, np.ndarray], ridge: float = 1e-3,
                 inverses: dict[str, np.ndarray] | None = None) -> np.ndarray | None:
    """Per input column of a reader linear's weight: Σ_o W_oj² / (G⁻¹)_jj, G its input's Gram with the constant
    column (the refit also refits the bias) and the refit's ridge."""
    found = _reader_inverse(value, axis, grams, ridge, {} if inverses is None else inverses)
    if found is None:
        return None
    w = np.asarray(value.const, np.float64)  # type: ignore[attr-defined]
    inv_diag = np.diag(found[1])[: w.shape[1]]
    return (w * w).sum(axis=0) / np.maximum(inv_diag, 1e-30)  # type: ignore[no-any-return]


def refit_error_picks(group: DependencyGroup, count: int, grams: Mapping[str, np.ndarray],
                      ridge: float = 1e-3, inverses: dict[str, np.ndarray] | None = None) -> list[int] | None:
    """`count` units of `group` to remove, chosen greedily one at a time by the refit error (the unit whose removal,
    with the readers refitted, adds the least output error), each choice updating the readers' weights and inverse
    Grams as the refit would (Optimal Brain Surgeon's update; ZipLM's greedy structured order). Better than ranking
    the one-shot scores: once a unit is gone, the units correlated with it are no longer redundant. None when no
    linear reading the group has a Gram (the criterion cannot see the group). `inverses`: inverse Grams already
    computed (see `unit_scores`), copied before the updates."""
    cache = {} if inverses is None else inverses
    readers = []
    for (value, axis) in group.members(0):
        found = _reader_inverse(value, axis, grams, ridge, cache)
        if found is None:
            continue
        node, hinv = found
        w = np.asarray(value.const, np.float64)  # type: ignore[attr-defined]
        b = node.inputs[2].const if len(node.inputs) > 2 else None
        wa = np.concatenate([w, np.zeros((w.shape[0], 1)) if b is None else np.asarray(b, np.float64).reshape(-1, 1)],
                            axis=1)  # the bias as the constant column's weight: the update compensates into it
        cols = [sorted(group.members(u)[(value, axis)]) for u in range(group.units)]
        readers.append((wa, hinv.copy(), cols))
    if not readers:
        return None
    # one column per unit (neurons): every unit's error in one vector operation, from these column indices
    singles = [np.array([c[0] for c in cols]) for _, _, cols in readers] if all(
        len(c) == 1 for _, _, cols in readers for c in cols) else None
    left = np.ones(group.units, bool)
    picks: list[int] = []
    for _ in range(count):
        err = np.zeros(group.units)
        for r, (wa, hinv, cols) in enumerate(readers):
            if singles is not None:
                ix = singles[r]
                err += (wa[:, ix] ** 2).sum(axis=0) / np.maximum(np.diag(hinv)[ix], 1e-30)
            else:
                for k in np.flatnonzero(left):
                    blk = cols[k]
                    m = np.linalg.pinv(hinv[np.ix_(blk, blk)], hermitian=True)
                    err[k] += float(np.einsum("oi,ij,oj->", wa[:, blk], m, wa[:, blk]))
        err[~left] = np.inf
        u = int(np.argmin(err))
        for wa, hinv, cols in readers:
            blk = cols[u]
            m = np.linalg.pinv(hinv[np.ix_(blk, blk)], hermitian=True)
            step = m @ hinv[blk, :]
            wa -= wa[:, blk] @ step  # the kept columns and the bias absorb what the removed ones carried
            hinv -= hinv[:, blk] @ step  # the inverse Gram of the inputs that are left
            wa[:, blk] = 0.0
        left[u] = False
        picks.append(u)
    return sorted(picks)
