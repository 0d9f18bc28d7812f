"""Pre-training the base model on the public corpus, cached per configuration; bits per character.

The base model of the language-model track is a :class:`fedguard.models.gpt.GPTModule` trained
by next-token prediction on the ``pretrain`` part of the bundled public corpus
(:mod:`fedguard.text.corpus`): random windows of ``context + 1`` tokens (positions from the keyed
stream ``(seed, step, "pretrain_batches")``), AdamW with a linear warm-up and cosine decay,
GPT-2 initialisation from ``(seed, "pretrain_init")``. The result is a state dict cached under
the user's data cache (``$FEDGUARD_DATA`` or ``~/.cache/fedguard/data``, folder ``models/``),
named by the SHA-256 of the configuration and of the corpus text — never in the repository.
It is loaded with ``weights_only=True`` and written atomically.

Public API
----------
``PretrainConfig(n_layer, n_head, d_model, context, steps, batch_size=32, learning_rate=6e-3,
seed=0)``; ``.key() -> str`` (the cache key).
``base_model(cfg, cache_dir=None) -> GPTModule``
    The pre-trained base model (trained on first use, then read from the cache).
``pretrain(cfg) -> GPTModule``
    Pre-training itself (no cache).
``bits_per_character(module, text, batch=64) -> float``
    ``−Σ log₂ p(token)`` over non-overlapping windows of ``text``, divided by the number of
    characters predicted (bytes that start a UTF-8 character).

References
----------
Radford et al., "Language Models are Unsupervised Multitask Learners" (GPT-2), 2019.
Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (AdamW), ICLR 2019.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from fedguard.data.cache import data_root
from fedguard.models.losses import mean_cross_entropy
from fedguard.models.transformer import GPTModule, gpt2_init, sequence_log_probs
from fedguard.rng import numpy_generator, torch_generator
from fedguard.text.corpus import corpus_digest, public_text
from fedguard.text.messages import token_windows
from fedguard.text.tokenizer import VOCAB_SIZE, encode

CACHE_VERSION = 1  # bump when the training procedure changes


@dataclass(frozen=True)
class PretrainConfig:
    n_layer: int
    n_head: int
    d_model: int
    context: int
    steps: int
    batch_size: int = 32
    learning_rate: float = 6e-3
    seed: int = 0

    def key(self) -> str:
        payload = json.dumps({**asdict(self), "corpus": corpus_digest(), "v": CACHE_VERSION})
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def module(self) -> GPTModule:
        return GPTModule(VOCAB_SIZE, self.context, self.n_layer, self.n_head, self.d_model)


def pretrain(cfg: PretrainConfig) -> GPTModule:
    """Next-token pre-training on the public corpus' ``pretrain`` part (see the module doc)."""
    module = cfg.module()
    gpt2_init(module, torch_generator(cfg.seed, -1, -1, "pretrain_init"))
    tokens = torch.as_tensor(encode(public_text("pretrain")), dtype=torch.long)
    decay = [p for n, p in module.named_parameters() if p.dim() >= 2]
    other = [p for n, p in module.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
        lr=cfg.learning_rate,
        betas=(0.9, 0.95),
    )
    warmup = max(1, cfg.steps // 20)
    offsets = torch.arange(cfg.context + 1)
    for step in range(cfg.steps):
        lr = cfg.learning_rate * min(
            (step + 1) / warmup, 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        )
        for group in opt.param_groups:
            group["lr"] = lr
        rng = numpy_generator(cfg.seed, step, -1, "pretrain_batches")
        starts = torch.as_tensor(rng.integers(0, len(tokens) - cfg.context - 1, cfg.batch_size))
        batch = tokens[starts[:, None] + offsets]  # (batch, context + 1)
        loss = mean_cross_entropy(module(batch[:, :-1]), batch[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
    return module


def base_model(cfg: PretrainConfig, cache_dir: Path | None = None) -> GPTModule:
    """The cached pre-trained base model (pre-trained and cached on first use)."""
    from fedguard.storage.atomic import write_torch

    path = (cache_dir or data_root()) / "models" / f"gpt-base-{cfg.key()}.pt"
    module = cfg.module()
    if path.is_file():
        module.load_state_dict(torch.load(path, weights_only=True))
        return module
    trained = pretrain(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_torch(path, {k: v.detach().clone() for k, v in trained.state_dict().items()})
    return trained


@torch.no_grad()
def bits_per_character(module: torch.nn.Module, text: str, context: int, batch: int = 64) -> float:
    """Bits per character of ``module`` on ``text`` (non-overlapping windows of context + 1)."""
    rows = torch.as_tensor(token_windows(encode(text), context), dtype=torch.long)
    if len(rows) == 0:
        raise ValueError("text is shorter than one window")
    bits, characters = 0.0, 0
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        bits -= float(sequence_log_probs(module, chunk).sum()) / math.log(2)
        predicted = chunk[:, 1:].numpy()
        characters += int(np.sum((predicted & 0xC0) != 0x80))  # UTF-8 continuation bytes
    return bits / characters


__all__ = ["PretrainConfig", "base_model", "bits_per_character", "pretrain"]
