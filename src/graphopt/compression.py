"""Compression around the passes: data-driven importance, distillation, and the sparsity metrics.

The passes (`prune-structured`, `prune-magnitude`, `low-rank`) work on the IR alone; what needs data and
gradients lives here, one layer up, because gradients come from a backend (the cpu target's generated code run as
a trainable module, `graphopt.backends.cpu.trainable`) and passes may not import backends.

- `saliency(graph, data, kind="taylor" | "activation")` → a `Saliency` that `prune-structured{importance=...}`
  reads (pass it with `prune(..., data=...)` or `PassManager.run(graph, ctx=PassContext().provide(s))`);
- `prune(graph, pipeline, data=None)` runs a pruning pipeline, computing the saliency it asks for;
- `distill(student, teacher, data, steps=...)` fine-tunes the student graph's weights to reproduce the teacher's
  outputs (MSE relative to the teacher's output energy, KL on logits, or cosine) and returns the updated graph;
- `sparsity(graph)` gives per-layer and overall fraction of zeros and the seed's S = Σ|pᵢ|/n.

>>> import numpy as np
>>> from graphopt.ir import parse
>>> g = parse('''graph @f(%x: f32[2,4]) {
...   const @w: f32[3,4] = external
...   %y: f32[2,3] = linear(%x, @w)
...   return %y
... }''', {"w": np.array([[0, 1, 0, 2]] * 3, np.float32)})
>>> s = sparsity(g)
>>> s["overall"]["zeros"], s["overall"]["mean_abs"]
(0.5, 0.75)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, get_args

import numpy as np

from graphopt.ir import Graph
from graphopt.passes import PassContext, PassManager
from graphopt.passes.importance import Saliency
from graphopt.passes.reconstruct import InputGrams
from graphopt.passes.low_rank import GemmTimer
from graphopt.passes.manager import PipelineResult

__all__ = ["saliency", "prune", "needs_data", "distill", "sparsity", "normalized_states"]

Loss = Callable[[Sequence[Any]], Any]
LossKind = Literal["mse", "kl", "cosine", "pooled-cosine"]
_LOSS_KINDS: tuple[str, ...] = get_args(LossKind)


def _samples(graph: Graph, data: Iterable[Any]) -> list[list[np.ndarray]]:
    from graphopt.quantization import samples_for

    return samples_for(graph, data)


def _tensors(graph: Graph, xs: Sequence[np.ndarray]) -> list[Any]:
    import torch

    return [torch.from_numpy(np.ascontiguousarray(x)).to(v.type.dtype.torch) for v, x in zip(graph.inputs, xs)]


def _energy(outputs: Sequence[Any]) -> Any:
    """Label-free Taylor loss: the mean squared output (how strongly each weight drives what the model emits)."""
    floats = [o for o in outputs if o.is_floating_point()]
    return sum(0.5 * (o.float() ** 2).mean() for o in floats)


def saliency(graph: Graph, data: Iterable[Any], *, kind: Literal["taylor", "activation"] = "taylor",
             loss: Loss | None = None, progress: bool = False) -> Saliency:
    """Per-element gradient saliency Σ|w·∂L/∂w| (taylor; `loss(outputs) -> scalar`, default the mean squared
    output) or per-axis mean |activation| (activation) of `graph` over `data` (see graphopt.calibrate for the
    sample formats)."""
    samples = _samples(graph, data)
    out = Saliency(samples=len(samples), loss="energy" if loss is None else getattr(loss, "__name__", "custom"))
    it: Iterable[list[np.ndarray]] = samples
    if progress:
        from rich.progress import track

        it = track(samples, description=f"{kind} saliency of @{graph.name}", transient=True)
    if kind == "activation":
        from graphopt.ir.interpreter import run

        sums: dict[str, dict[int, np.ndarray]] = {}

        def observe(v: Any, a: np.ndarray) -> None:
            if a.dtype.kind != "f" or a.ndim == 0:
                return
            mags = np.abs(a.astype(np.float64))
            per = sums.setdefault(v.name, {})
            for axis in range(a.ndim):
                if not isinstance(v.type.shape[axis], int):  # a symbolic axis changes length between samples
                    continue
                other = tuple(k for k in range(a.ndim) if k != axis)
                m = mags.mean(axis=other) if other else mags
                per[axis] = per.get(axis, 0) + m

        for xs in it:
            run(graph, xs, observe=observe)
        out.activations = {n: {ax: v / len(samples) for ax, v in per.items()} for n, per in sums.items()}
        return out
    import torch

    from graphopt.backends.cpu.trainable import TrainableGraph

    model = TrainableGraph(graph)
    acc: dict[str, np.ndarray] = {}
    loss_fn = loss or _energy
    for xs in it:
        model.zero_grad(set_to_none=True)
        loss_fn(model(*_tensors(graph, xs))).backward()
        with torch.no_grad():
            for name in model.trainable_names():
                p = model.parameter_of(name)
                if p.grad is not None:
                    acc[name] = acc.get(name, 0) + (p * p.grad).abs().numpy().astype(np.float64)
    out.weights = acc
    return out


def needs_data(pipeline: str) -> bool:
    """Whether a pass in `pipeline` ranks by data-driven (taylor or activation) importance or refits
    (`reconstruct=true`)."""
    return any(_needs_data(spec) for spec in PassManager.parse(pipeline).passes)


def _needs_data(spec: Any) -> bool:
    return dict(spec.options).get("importance") in (*_DATA_DRIVEN, "refit-error") or _asks_refit(spec)


def _asks_refit(spec: Any) -> bool:
    return str(dict(spec.options).get("reconstruct", "false")).lower() in ("true", "1")


_DATA_DRIVEN = ("taylor", "activation")


def prune(graph: Graph, pipeline: str, data: Iterable[Any] | None = None, *, loss: Loss | None = None,
          progress: bool = False) -> PipelineResult:
    """Run a pipeline holding pruning passes over `graph` (in place); where a pass asks for taylor or activation
    importance, its saliency is computed from `data` on the graph as it is when that pass runs."""
    pm = PassManager.parse(pipeline)
    if not needs_data(pipeline):
        return pm.run(graph, _timed_context())
    if data is None:
        raise ValueError(f"pipeline {pipeline!r} ranks by data-driven importance (taylor, activation, refit-error) "
                         "or refits, which needs data=")
    samples = list(data)
    results = []
    for spec in pm.passes:  # one pass at a time: each prune sees the saliency of the graph the previous one left
        kind = dict(spec.options).get("importance")
        step = _timed_context()
        if kind in _DATA_DRIVEN:
            step.provide(saliency(graph, samples, kind=kind, loss=loss, progress=progress))
        if _asks_refit(spec) or kind == "refit-error":  # refits (and their error) read the Gram matrices of the
            # inputs they change, from the same samples
            step.provide(InputGrams(_samples(graph, samples)))
        results.append(PassManager([spec]).run(graph, ctx=step))
    return _merge(results)


def _timed_context() -> PassContext:
    """A context whose GemmTimer is the cpu target's, so `low-rank{measure=true}` times its GEMMs on this machine."""
    from graphopt.backends.cpu.kernels import linear_chain_ms  # torch: imported only when a pipeline runs

    return PassContext().provide(GemmTimer(linear_chain_ms))


def _merge(results: list[PipelineResult]) -> PipelineResult:
    return PipelineResult(results[-1].graph, [rec for r in results for rec in r.records])


def normalized_states(graph: Graph) -> list[str]:
    """Names of the values layer/RMS norms produce: in a transformer, each block's output. Pruning heads and FFN
    neurons keeps their shapes (and names), so they are where a student can match its teacher layer by layer."""
    from graphopt.ir import OpRef

    norms = (OpRef("layer_norm"), OpRef("rms_norm"))
    return [n.outputs[0].name for n in graph if any(op.of(n) for op in norms) and not n.outputs[0].is_graph_output]


def distill(student: Graph, teacher: Any, data: Iterable[Any], *, steps: int = 300, lr: float = 1e-4,
            loss: LossKind | Sequence[LossKind] = "mse", temperature: float = 2.0,
            outputs: Sequence[int] | None = None, hidden: Sequence[str] = (), warmup: int = 0, progress: bool = True,
            seed: int = 0, labels: Sequence[Any] | None = None, task_loss: Callable[[Any, Any], Any] | None = None,
            task_weight: float = 0.5, token_mask: int | None = None) -> tuple[Graph, list[float]]:
    """Fine-tune `student`'s weights (a copy) so its outputs match `teacher`'s on `data`; returns the new graph and
    the loss per step.

    `teacher`: a Graph (run on the cpu target), a CompiledModel or any callable taking the samples' arrays. Loss
    per output: `mse` relative to the teacher's mean square (hidden states, embeddings), `kl` between softmaxes at
    `temperature` over the last axis (logits), `cosine` 1 − cos over the last axis, `pooled-cosine` 1 − cos of the
    token-mean (a sentence embedding: needs `token_mask`); a sequence of kinds sums them. `outputs` picks which outputs
    count (default all float ones). `hidden` names intermediate values both graphs have with the same shape (see
    `normalized_states`) that the student also matches, by relative MSE (layer-wise distillation, as TinyBERT
    does); the teacher must then be a Graph. Adam, `steps` steps cycling through the samples in a fixed shuffled
    order, the learning rate rising linearly over `warmup` steps and decaying to zero on a cosine.

    `labels` (one per sample of `data`, e.g. class ids of a batch) adds the task's own loss, as Hinton et al.'s
    knowledge distillation does: `task_weight · task + (1 − task_weight) · teacher-matching`. `task_loss(outputs,
    labels)` takes the student's outputs (torch tensors) and the sample's labels as a tensor; by default cross
    entropy of the first picked output.

    `token_mask`: the index of a [batch, seq] input that is nonzero on real tokens and 0 on padding (a transformer's
    attention mask). Token-wise losses (outputs and `hidden`) then average over real tokens only — what the model
    computes at padded positions is never read — and `pooled-cosine` pools over them."""
    import torch

    from graphopt.backends.cpu.trainable import TrainableGraph

    samples = _samples(student, data)
    kinds = [loss] if isinstance(loss, str) else list(loss)
    if bad := [k for k in kinds if k not in _LOSS_KINDS]:
        raise ValueError(f"distill: unknown loss {bad[0]!r}; choose from {', '.join(_LOSS_KINDS)}")
    if "pooled-cosine" in kinds and token_mask is None:
        raise ValueError("distill: loss 'pooled-cosine' pools over real tokens and needs token_mask=<input index>")
    if token_mask is not None and not 0 <= token_mask < len(student.inputs):
        raise ValueError(f"distill: token_mask={token_mask} is not an input index of @{student.name} "
                         f"({len(student.inputs)} inputs)")
    if labels is not None and len(labels) != len(samples):
        raise ValueError(f"distill: {len(labels)} labels for {len(samples)} samples; give one per sample")
    if not 0.0 <= task_weight <= 1.0:
        raise ValueError(f"distill: task_weight must be in [0, 1], got {task_weight}")
    graph = student.copy()
    n_out = len(graph.outputs)
    if hidden:
        if not isinstance(teacher, Graph):
            raise TypeError("distill(hidden=...) needs the teacher as a Graph, to read its intermediate values")
        teacher = _with_outputs(teacher, hidden)
    run_teacher = _teacher_fn(teacher)
    targets = [[torch.from_numpy(np.asarray(t)) for t in run_teacher(xs)] for xs in samples]
    model = TrainableGraph(_with_outputs(graph, hidden) if hidden else graph)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / warmup) if i < warmup else
                                              0.5 * (1 + math.cos(math.pi * (i - warmup) / max(1, steps - warmup))))
    order = np.random.default_rng(seed).permutation(len(samples))
    picked = list(outputs) if outputs is not None else [i for i, t in enumerate(targets[0][:n_out])
                                                         if t.is_floating_point()]
    history: list[float] = []
    it: Iterable[int] = range(steps)
    if progress:
        from rich.progress import track

        it = track(it, description=f"distilling @{graph.name}", transient=True)
    for step in it:
        k = int(order[step % len(samples)])
        xs = _tensors(graph, samples[k])
        got = model(*xs)
        mask = None if token_mask is None else (xs[token_mask] != 0).float()
        value = sum(_distill_loss(got[i].float(), targets[k][i].float(), kind, temperature, mask)
                    for i in picked for kind in kinds)
        value = value + sum(_distill_loss(got[i].float(), targets[k][i].float(), "mse", temperature, mask)
                            for i in range(n_out, n_out + len(hidden)))
        if labels is not None:
            y = torch.as_tensor(np.asarray(labels[k]))
            task = (task_loss(list(got[:n_out]), y) if task_loss is not None
                    else torch.nn.functional.cross_entropy(got[picked[0]].float(), y.long()))
            value = task_weight * task + (1 - task_weight) * value
        opt.zero_grad(set_to_none=True)
        value.backward()  # type: ignore[union-attr]
        opt.step()
        sched.step()
        history.append(float(value.detach()))  # type: ignore[union-attr]
    return model.write_back(graph), history


def _with_outputs(graph: Graph, names: Sequence[str]) -> Graph:
    """A copy of `graph` that also returns the named values (after its own outputs)."""
    g = graph.copy()
    g.set_outputs([*g.outputs, *(g.value(n) for n in names)])  # KeyError naming a value the graph lacks
    return g


def _distill_loss(got: Any, want: Any, kind: str, temperature: float, mask: Any = None) -> Any:
    """One output's loss; with a [batch, seq] token `mask` and an output laid out [batch, seq, ...], token-wise terms
    are weighted by it (padded positions count for nothing), otherwise every position weighs 1."""
    import torch
    import torch.nn.functional as F

    tokens = mask is not None and got.dim() >= 3 and tuple(got.shape[:2]) == tuple(mask.shape)
    if kind == "pooled-cosine" and not tokens:
        raise ValueError(f"distill: 'pooled-cosine' needs a [batch, seq, ...] output and a matching token mask; "
                         f"got an output of shape {tuple(got.shape)}")
    # one weight per position, laid out like a last-axis reduction of the output ([..., 1])
    w = (mask.reshape(*mask.shape, *([1] * (got.dim() - 2))) if tokens else torch.ones(())).expand(*got.shape[:-1], 1)
    if kind == "pooled-cosine":
        n = w.sum(1)
        return (1 - F.cosine_similarity((got * w).sum(1) / n.clamp_min(1), (want * w).sum(1) / n.clamp_min(1),
                                        dim=-1)).mean()
    if kind == "kl":
        t = temperature
        per = F.kl_div(F.log_softmax(got / t, -1), F.log_softmax(want / t, -1), log_target=True,
                       reduction="none").sum(-1, keepdim=True)
        return (per * w).sum() / got.shape[0] * t * t  # "batchmean": summed over positions, averaged over the batch
    if kind == "cosine":
        return ((1 - F.cosine_similarity(got, want, dim=-1).unsqueeze(-1)) * w).sum() / w.sum().clamp_min(1)
    n = w.expand_as(got).sum().clamp_min(1)  # weighted means: the floor applies to the teacher's mean square
    return (((got - want) ** 2 * w).sum() / n) / (((want ** 2) * w).sum() / n).clamp_min(1e-12)


def _teacher_fn(teacher: Any) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    if isinstance(teacher, Graph):
        from graphopt.backends import get_backend

        exe = get_backend("cpu").compile(teacher)
        return lambda xs: [np.asarray(o) for o in exe(*xs)]

    def call(xs: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            out = teacher(*[torch.from_numpy(np.ascontiguousarray(x)) for x in xs])
        out = out if isinstance(out, (list, tuple)) else [out]
        return [np.asarray(o.detach().numpy() if hasattr(o, "detach") else o) for o in out]

    return call


def sparsity(graph: Graph) -> dict[str, dict[str, float]]:
    """Per float weight (rank ≥ 2) and "overall": fraction of exact zeros, S = Σ|pᵢ|/n (`mean_abs`), elements."""
    rows: dict[str, dict[str, float]] = {}
    zeros = total = 0
    abs_sum = 0.0
    for c in graph.constants.values():
        if not c.num_uses or c.type is None or not c.type.dtype.is_float or c.type.rank < 2:
            continue
        a = np.asarray(c.const, dtype=np.float64)
        z = int(np.count_nonzero(a == 0))
        rows[c.name] = {"zeros": z / a.size, "mean_abs": float(np.abs(a).mean()), "elements": float(a.size)}
        zeros, total, abs_sum = zeros + z, total + a.size, abs_sum + float(np.abs(a).sum())
    rows["overall"] = {"zeros": zeros / total if total else math.nan,
                       "mean_abs": abs_sum / total if total else math.nan, "elements": float(total)}
    return rows
