"""Sequence membership-inference scores (higher = more likely a training member).

* **loss**: ``−NLL`` per token of the sequence under the target (Yeom et al.'s test on text).
* **zlib ratio**: ``−NLL_bits / zlib_bits``: how much better the target compresses the text
  than a generic compressor; calibrates away text that is simply easy (Carlini et al. 2021).
* **reference LiRA** (offline): the target's log-likelihood standardized by reference models
  that never saw the candidates (trained on public text), ``(φ − μ_ref) / σ_ref`` with a global
  variance when references are few; a monotone transform of the one-sided Gaussian test.

References
----------
Yeom, Giacomelli, Fredrikson, Jha. "Privacy Risk in Machine Learning." IEEE CSF 2018.
Carlini et al. "Extracting Training Data from Large Language Models." USENIX Security 2021
(perplexity / zlib-entropy ratio; comparison with a reference model).
Carlini, Chien, Nasr, Song, Terzis, Tramèr. "Membership Inference Attacks From First
Principles." IEEE S&P 2022 (LiRA; offline variant and global variance).
Mireshghallah et al. "Quantifying Privacy Risks of Masked Language Models Using Membership
Inference Attacks." EMNLP 2022 (likelihood-ratio tests with reference language models).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import torch
from torch import Tensor


def loss_scores(nll: Tensor, n_tokens: Tensor | int) -> Tensor:
    """``−NLL / tokens`` ``(N,)``."""
    return -nll.double() / torch.as_tensor(n_tokens, dtype=torch.float64)


def zlib_bits(text: bytes) -> int:
    """Length in bits of the zlib-compressed text (level 9)."""
    return 8 * len(zlib.compress(text, 9))


def zlib_ratio_scores(nll: Tensor, texts: Sequence[bytes]) -> Tensor:
    """``−(NLL in bits) / zlib bits`` ``(N,)`` for the sequences' raw bytes."""
    bits = torch.tensor([zlib_bits(t) for t in texts], dtype=torch.float64)
    return -(nll.double() / math.log(2)) / bits


def reference_lira_scores(target_ll: Tensor, reference_ll: Tensor) -> Tensor:
    """Offline LiRA: ``(φ − μ_ref) / σ`` per candidate, ``φ`` the target's log-likelihood
    ``(N,)``, references ``(R, N)``; ``σ`` the per-candidate std for ``R ≥ 8`` references, else
    the global std of the references' deviations (Carlini et al. 2022's small-R advice). With a
    single reference this is the target-minus-reference log-likelihood ratio scaled by one
    constant."""
    ref = reference_ll.double()
    mu = ref.mean(dim=0)
    if ref.shape[0] >= 8:
        sigma = ref.std(dim=0).clamp_min(1e-12)
    elif ref.shape[0] >= 2:
        sigma = (ref - mu).pow(2).sum().div(ref.numel() - ref.shape[1]).sqrt().clamp_min(1e-12)
    else:
        sigma = torch.tensor(1.0, dtype=torch.float64)
    return (target_ll.double() - mu) / sigma


__all__ = ["loss_scores", "reference_lira_scores", "zlib_bits", "zlib_ratio_scores"]
