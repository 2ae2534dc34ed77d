"""Calibration tables: what values look like on representative inputs, for the passes that quantize them.

A `CalibrationTable` holds, per observed value (by name), its min and max, the largest magnitude per channel (the
last axis: what SmoothQuant-style smoothing and per-channel activation scales need), and a bounded random sample
of its magnitudes, from which the range observers derive a clipping threshold:

- `minmax`: the largest magnitude seen;
- `percentile`: the given percentile of magnitudes (99.99 by default), ignoring rare outliers;
- `mse`: the threshold minimising the int8 quantization error Σ(x − q(x))² over the sample;
- `entropy`: TensorRT's KL-divergence calibration over a 2048-bin histogram of the sample.

Tables are built by `graphopt.calibrate`, travel to passes by type (`ctx.need(CalibrationTable)`), and are saved
as .npz without pickle so an artifact can reuse them.

>>> import numpy as np
>>> t = CalibrationTable()
>>> t.observe("x", np.array([[1.0, -4.0], [0.5, 2.0]], np.float32))
>>> t["x"].channel_absmax.tolist(), t.threshold("x", "minmax")
([1.0, 4.0], 4.0)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = ["CalibrationTable", "ValueStats", "Method"]

Method = Literal["minmax", "percentile", "mse", "entropy"]
_SAMPLE = 1 << 16  # magnitudes kept per value: enough for a 99.99th percentile to be more than the maximum


@dataclass
class ValueStats:
    min: float
    max: float
    channel_absmax: np.ndarray  # largest |x| per index of the last axis
    sample: np.ndarray  # up to _SAMPLE magnitudes, drawn uniformly from everything observed
    seen: int = 0  # elements observed


@dataclass
class CalibrationTable:
    """Per value name: range statistics over every calibration sample (see the module doc)."""

    values: dict[str, ValueStats] = field(default_factory=dict)
    samples: int = 0
    seed: int = 0

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def __getitem__(self, name: str) -> ValueStats:
        return self.values[name]

    def observe(self, name: str, array: np.ndarray) -> None:
        """Fold one observation of value `name` into its statistics."""
        a = np.asarray(array, np.float32)
        if a.size == 0:
            return
        mags = np.abs(a.reshape(-1))
        ch = np.abs(a.reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1)).max(axis=0)
        rng = np.random.default_rng(self.seed + len(self.values) + (self.values[name].seen if name in self else 0))
        take = mags if mags.size <= _SAMPLE else rng.choice(mags, _SAMPLE, replace=False)
        old = self.values.get(name)
        if old is None:
            self.values[name] = ValueStats(float(a.min()), float(a.max()), ch, take, mags.size)
            return
        if old.channel_absmax.shape != ch.shape:
            raise ValueError(f"value {name!r} changed its last dimension between samples "
                             f"({old.channel_absmax.shape[0]} then {ch.shape[0]})")
        pool = np.concatenate([old.sample, take])
        if pool.size > _SAMPLE:  # keep each element's chance equal: weight the two pools by how much they stand for
            p = np.concatenate([np.full(old.sample.size, old.seen / old.sample.size),
                                np.full(take.size, mags.size / take.size)])
            pool = rng.choice(pool, _SAMPLE, replace=False, p=p / p.sum())
        self.values[name] = ValueStats(min(old.min, float(a.min())), max(old.max, float(a.max())),
                                       np.maximum(old.channel_absmax, ch), pool, old.seen + mags.size)

    def threshold(self, name: str, method: Method = "minmax", percentile: float = 99.99, bits: int = 8) -> float:
        """The magnitude to map to the largest integer: see the module doc for the methods."""
        s = self.values[name]
        amax = max(abs(s.min), abs(s.max))
        if method == "minmax" or amax == 0:
            return amax
        if method == "percentile":
            return float(np.percentile(s.sample, percentile))
        if method == "mse":
            return _mse_threshold(s.sample, amax, bits)
        if method == "entropy":
            return _entropy_threshold(s.sample, amax, bits)
        raise ValueError(f"unknown calibration method {method!r}; choose minmax, percentile, mse or entropy")

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Write the table as .npz (plain arrays, no pickle), atomically."""
        import io

        from graphopt.fileio import write_bytes_atomic

        arrays: dict[str, np.ndarray] = {"__names__": np.array(list(self.values), dtype=str),
                                         "__samples__": np.array(self.samples)}
        for i, s in enumerate(self.values.values()):
            arrays[f"{i}.range"] = np.array([s.min, s.max, s.seen], np.float64)
            arrays[f"{i}.channel_absmax"] = s.channel_absmax
            arrays[f"{i}.sample"] = s.sample
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
        write_bytes_atomic(path, buf.getvalue(), overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CalibrationTable:
        """Read a table written by `save` (allow_pickle=False)."""
        table = cls()
        with np.load(path, allow_pickle=False) as data:
            table.samples = int(data["__samples__"])
            for i, name in enumerate(data["__names__"].tolist()):
                lo, hi, seen = data[f"{i}.range"].tolist()
                table.values[name] = ValueStats(lo, hi, data[f"{i}.channel_absmax"], data[f"{i}.sample"], int(seen))
        return table


def _quant_error(x: np.ndarray, t: float, bits: int) -> float:
    qmax = 2 ** (bits - 1) - 1
    scale = t / qmax
    q = np.clip(np.rint(x / scale), -qmax, qmax) * scale
    return float(np.mean((x - q) ** 2))


def _mse_threshold(sample: np.ndarray, amax: float, bits: int) -> float:
    candidates = amax * np.linspace(0.05, 1.0, 96)
    errors = [_quant_error(sample, float(t), bits) for t in candidates]
    return float(candidates[int(np.argmin(errors))])


def _entropy_threshold(sample: np.ndarray, amax: float, bits: int, bins: int = 2048) -> float:
    """TensorRT's entropy calibration: the clip that keeps the quantized distribution closest (KL) to the original."""
    hist, edges = np.histogram(sample, bins=bins, range=(0.0, amax))
    hist = hist.astype(np.float64)
    levels = 2 ** (bits - 1)
    best, best_kl = bins, math.inf
    for i in range(levels, bins + 1, 16):
        p = hist[:i].copy()
        p[i - 1] += hist[i:].sum()  # everything clipped lands in the last bin
        if p.sum() == 0:
            continue
        # q: p squeezed into `levels` bins and spread back over the non-empty source bins
        q = np.zeros(i)
        for chunk in np.array_split(np.arange(i), levels):
            nz = chunk[hist[chunk] > 0]
            if nz.size:
                q[nz] = hist[chunk].sum() / nz.size
        pn, qn = p / p.sum(), q / max(q.sum(), 1e-12)
        mask = pn > 0
        kl = float(np.sum(pn[mask] * np.log(pn[mask] / np.maximum(qn[mask], 1e-12))))
        if kl < best_kl:
            best, best_kl = i, kl
    return float(edges[best])
