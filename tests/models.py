"""Small real models shared by the frontend, backend and API tests (random weights, seeded)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = torch.relu(self.bn2(self.conv2(x))) + 0.5 * x.mean()  # a residual-style scalar mix
        x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.head(x)


class LSTMClassifier(nn.Module):
    def __init__(self, vocab: int = 50, dim: int = 16, hidden: int = 32, classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, (h, c) = self.lstm(self.embed(tokens))
        return self.head(h[-1])


def cnn() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    m = SmallCNN().eval()
    for bn in (m.bn1, m.bn2):  # non-trivial running statistics
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return m, (torch.randn(2, 1, 8, 8),)


def lstm() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    return LSTMClassifier().eval(), (torch.randint(0, 50, (2, 7)),)


def tiny_bert():  # type: ignore[no-untyped-def]
    import transformers

    torch.manual_seed(0)
    cfg = transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                  vocab_size=64, max_position_embeddings=64)
    model = transformers.BertModel(cfg).eval()
    ids = torch.randint(0, 64, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 8:] = 0
    return model, {"input_ids": ids, "attention_mask": mask}


def tiny_gpt2():  # type: ignore[no-untyped-def]
    import transformers

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=64, n_positions=64,
                                  bos_token_id=0, eos_token_id=0, use_cache=False)
    return transformers.GPT2LMHeadModel(cfg).eval(), (torch.randint(0, 64, (1, 10)),)


def _ids() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 8:] = 0
    return {"input_ids": torch.randint(2, 64, (2, 12), generator=g), "attention_mask": mask}


def _pixels() -> dict[str, torch.Tensor]:
    return {"pixel_values": torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))}


def architecture(name: str) -> tuple[Any, dict[str, torch.Tensor]]:
    """A small random-weight transformers model of the named family, with example keyword inputs."""
    import transformers as T

    T.logging.set_verbosity_error()
    torch.manual_seed(0)
    text = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, vocab_size=64,
                max_position_embeddings=64)
    decoder = dict(text, num_key_value_heads=2, use_cache=False)  # grouped-query attention
    no_mask = {"input_ids": _ids()["input_ids"]}
    build = {
        "roberta": lambda: (T.RobertaModel(T.RobertaConfig(**text)), _ids()),
        "distilbert": lambda: (T.DistilBertModel(T.DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=64,
                                                                    vocab_size=64, max_position_embeddings=64)),
                               _ids()),
        "llama": lambda: (T.LlamaForCausalLM(T.LlamaConfig(**decoder)), no_mask),
        "qwen2": lambda: (T.Qwen2ForCausalLM(T.Qwen2Config(**decoder)), no_mask),
        "t5-encoder": lambda: (T.T5EncoderModel(T.T5Config(d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
                                                           vocab_size=64)), _ids()),
        "vit": lambda: (T.ViTModel(T.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                               intermediate_size=64, image_size=32, patch_size=8)), _pixels()),
        "resnet": lambda: (T.ResNetModel(T.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                                                        layer_type="basic")), _pixels()),
        "convnext": lambda: (T.ConvNextModel(T.ConvNextConfig(hidden_sizes=[16, 32], depths=[1, 1], num_stages=2)),
                             _pixels()),
    }
    model, kwargs = build[name]()
    return model.eval(), kwargs
