"""graphopt.compression: gradients through the generated code, distillation, saliency — against torch."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import graphopt
from graphopt.backends.cpu.trainable import TrainableGraph
from graphopt.compression import distill, prune
from graphopt.ir.interpreter import run
from graphopt.passes import PassManager


def _mlp_graph():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 32), nn.GELU(), nn.Linear(32, 4)).eval()
    x = torch.randn(16, 8)
    g = graphopt.to_graph(m, (x,))
    PassManager.parse("O2").run(g)
    return m, g, x


def test_trainable_graph_gradients_match_torch():
    m, g, x = _mlp_graph()
    tg = TrainableGraph(g)
    (tg(x)[0] ** 2).sum().backward()
    (m(x) ** 2).sum().backward()
    w = next(n for n in tg.trainable_names() if n.startswith("0.weight"))
    torch.testing.assert_close(tg.grad_of(w), m[0].weight.grad, rtol=1e-4, atol=1e-5)


def test_distill_recovers_a_pruned_student_and_writes_weights_back():
    m, teacher, x = _mlp_graph()
    student = teacher.copy()
    data = [(torch.randn(16, 8),) for _ in range(8)]
    prune(student, "prune-structured{ratio=0.5 scope=ffn importance=taylor}", data=data)
    def err(g):
        return float(np.mean([((run(g, [d[0].numpy()])[0] - run(teacher, [d[0].numpy()])[0]) ** 2).mean()
                              for d in data]))
    tuned, history = distill(student, teacher, data, steps=150, lr=3e-3, progress=False)
    assert err(tuned) < 0.5 * err(student)
    assert history[-1] < history[0]
    assert tuned.value(next(iter(tuned.constants))).type == student.value(next(iter(student.constants))).type


def test_distill_with_labels_learns_the_task_the_teacher_gets_wrong():
    """Task-loss distillation: with labels (task_weight 1: the task alone) the student fits labels that disagree
    with the teacher; with the teacher alone it cannot. Both run through the same steps and data."""
    m, teacher, _ = _mlp_graph()
    gen = torch.Generator().manual_seed(1)
    data = [(torch.randn(16, 8, generator=gen),) for _ in range(4)]
    labels = [torch.randint(0, 4, (16,), generator=gen) for _ in data]  # random labels: not what the teacher says

    def accuracy(g):  # type: ignore[no-untyped-def]
        return float(np.mean([(run(g, [d[0].numpy()])[0].argmax(1) == y.numpy()).mean()
                              for d, y in zip(data, labels)]))
    task, hist = distill(teacher, teacher, data, steps=300, lr=1e-2, labels=labels, task_weight=1.0, progress=False)
    mimic, _ = distill(teacher, teacher, data, steps=300, lr=1e-2, progress=False)
    assert accuracy(task) > 0.8 > accuracy(mimic) and hist[-1] < hist[0]
    custom, _ = distill(teacher, teacher, data, steps=5, labels=labels, progress=False,
                        task_loss=lambda outs, y: torch.nn.functional.cross_entropy(outs[0], y))
    assert custom.value(next(iter(custom.constants))).type == teacher.value(next(iter(teacher.constants))).type
    import pytest

    with pytest.raises(ValueError, match="one per sample"):
        distill(teacher, teacher, data, steps=1, labels=labels[:2], progress=False)


def test_layerwise_distillation_matches_named_intermediate_values():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 4)).eval()
    x = torch.randn(16, 8)
    teacher = graphopt.to_graph(m, (x,))
    PassManager.parse("O2").run(teacher)
    from graphopt.compression import normalized_states

    names = normalized_states(teacher)
    assert len(names) == 1  # the LayerNorm's output
    student = teacher.copy()
    data = [(torch.randn(16, 8),) for _ in range(4)]
    prune(student, "prune-structured{ratio=0.5 scope=ffn}")
    tuned, history = distill(student, teacher, data, steps=60, lr=3e-3, hidden=names, progress=False)
    assert history[-1] < history[0]
    assert [v.name for v in tuned.outputs] == [v.name for v in student.outputs]  # the extra outputs were internal


def test_compile_feeds_calibration_to_data_driven_pruning():
    m, g, x = _mlp_graph()
    data = [(torch.randn(16, 8),) for _ in range(3)]
    small = graphopt.compile(m, (x,), pipeline="O2,prune-structured{ratio=0.5 scope=ffn importance=taylor}",
                             calibration=data)
    assert small(x).shape == (16, 4)
    assert max(c.type.shape[0] for c in small.graph.constants.values() if c.type.rank == 2) == 16


class _Tokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * mask[..., None]


def test_token_mask_leaves_padding_out_of_every_distillation_loss():
    """A teacher whose outputs at padded positions are noise: with `token_mask` a student equal to it on real tokens
    has zero loss under every kind; without the mask the noise is a loss."""
    torch.manual_seed(0)
    m = _Tokens().eval()
    gen = torch.Generator().manual_seed(3)
    mask = torch.ones(4, 7, dtype=torch.int64)
    mask[:, 5:] = 0
    mask[1, 2:] = 0
    data = [(torch.randn(4, 7, 6, generator=gen), mask) for _ in range(3)]
    g = graphopt.to_graph(m, data[0])
    noise = torch.randn(4, 7, 5, generator=gen) * 10

    def teacher(x: torch.Tensor, mk: torch.Tensor) -> torch.Tensor:
        return m(x, mk) + noise * (1 - mk[..., None])

    for kind in ("mse", "cosine", "kl", "pooled-cosine"):
        _, hist = distill(g, teacher, data, steps=1, lr=1e-3, loss=kind, token_mask=1, progress=False)
        assert hist[0] < 1e-6, (kind, hist)
    for kind in ("mse", "cosine", "kl"):
        _, hist = distill(g, teacher, data, steps=1, lr=1e-3, loss=kind, progress=False)
        assert hist[0] > 0.05, (kind, hist)


def test_pooled_cosine_is_one_minus_the_cosine_of_token_means():
    from graphopt.compression import _distill_loss

    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 4, 8, generator=gen), torch.randn(3, 4, 8, generator=gen)
    mk = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.float32)
    pa, pb = [(t * mk[..., None]).sum(1) / mk.sum(1, keepdim=True) for t in (a, b)]
    want = (1 - torch.nn.functional.cosine_similarity(pa, pb, dim=-1)).mean()
    torch.testing.assert_close(_distill_loss(a, b, "pooled-cosine", 1.0, mk), want)
    import pytest

    m = _Tokens().eval()
    g = graphopt.to_graph(m, (torch.randn(2, 3, 6), torch.ones(2, 3, dtype=torch.int64)))
    data = [(torch.randn(2, 3, 6), torch.ones(2, 3, dtype=torch.int64))]
    with pytest.raises(ValueError, match="needs token_mask"):
        distill(g, g, data, steps=1, loss="pooled-cosine", progress=False)
    with pytest.raises(ValueError, match="unknown loss 'l1'"):
        distill(g, g, data, steps=1, loss="l1", progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not an input index"):
        distill(g, g, data, steps=1, token_mask=2, progress=False)
