"""The noise a matrix mechanism adds to each round's sum, generated round by round.

Both kernels work on standard normals ``Z`` (one ``(d,)`` row per row of C, drawn in the round
that row is released) and return the round's noise ``(D·Z)_t`` in units of σ, where ``D = A⁻¹B``
(``B`` the decoder): the prefix sums of the released rounds then carry exactly ``B·Z``.

* :func:`decoder_noise` — any causal decoder (trees): keeps the rows of Z that later rounds still
  use;
* :func:`banded_noise` — BandMF, ``D = C⁻¹``: forward substitution
  ``w_t = (Z_t − Σ_{k=1}^{b−1} C[t, t−k] w_{t−k}) / C[t, t]``, keeping the last ``b − 1`` rows of w.

All arithmetic in float64; the state holds tensors only, so a resumed run continues bit for bit.

References
----------
Choquette-Choo, McMahan, Rush, Thakurta. "(Amplified) Banded Matrix Factorization: A unified
approach to private training." NeurIPS 2023 (Algorithm 1: noise ``C⁻¹Z`` in O(b·d) memory).
Kairouz, McMahan, Song, Thakkar, Thakurta, Xu. "Practical and Private (Deep) Learning without
Sampling or Shuffling." ICML 2021.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import Tensor

#: ``draw(count)`` → ``(count, d)`` float64 standard normals for the rows released this round.
Draw = Callable[[int], Tensor]


def difference_rows(decoder: np.ndarray) -> np.ndarray:
    """``D = A⁻¹B``: row t is ``B[t] − B[t − 1]`` (the new noise of round t)."""
    return np.diff(decoder, axis=0, prepend=np.zeros((1, decoder.shape[1])))


def decoder_noise(
    t: int,
    differences: np.ndarray,
    release_round: np.ndarray,
    kept: Mapping[int, Tensor],
    draw: Draw,
) -> tuple[Tensor, dict[int, Tensor]]:
    """Round ``t``'s noise ``Σ_j D[t, j] Z_j`` and the rows of Z still needed after round t."""
    fresh_ids = np.flatnonzero(release_round == t)
    rows = dict(kept)
    if fresh_ids.size:
        fresh = draw(int(fresh_ids.size))  # (new rows, d)
        rows.update({int(j): fresh[i] for i, j in enumerate(fresh_ids)})
    needed = np.flatnonzero(differences[t])
    missing = [int(j) for j in needed if int(j) not in rows]
    if missing:
        raise ValueError(f"the noise of node {missing[0]} is needed in round {t} but was dropped")
    first = rows[int(needed[0])] if needed.size else next(iter(rows.values()))
    noise = torch.zeros_like(first)
    for j in needed:
        noise += float(differences[t, j]) * rows[int(j)]
    later = np.flatnonzero(np.any(differences[t + 1 :] != 0, axis=0))
    keep = {int(j): rows[int(j)] for j in later if int(j) in rows}
    return noise, keep


def banded_noise(t: int, strategy: np.ndarray, recent: Tensor, fresh: Tensor) -> Tensor:
    """``w_t`` of ``C w = Z`` given ``recent`` = ``(w_{t−1}, w_{t−2}, …)`` ``(≤ b − 1, d)``."""
    value = fresh.clone()  # (d,)
    for k in range(1, recent.shape[0] + 1):
        coefficient = float(strategy[t, t - k]) if t - k >= 0 else 0.0
        if coefficient:
            value -= coefficient * recent[k - 1]
    return value / float(strategy[t, t])


__all__ = ["Draw", "banded_noise", "decoder_noise", "difference_rows"]
