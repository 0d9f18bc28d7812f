"""What the malicious-server attacks return, and how it is scored against the truth.

A reconstruction group is a set of candidate inputs together with the clients whose data they
may come from: one client under plain transport (the server sees each update), every client of
the round under secure aggregation (only the sum), the target alone after a model-inconsistency
broadcast. A true sample counts as *recovered* when a reconstruction matched to it one-to-one
(Hungarian matching on the squared error) has a PSNR of at least 30 dB and at least 3 dB above
the class-mean baseline (the mean image of its class over every client's data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from fedguard.metrics.privacy_attack_metrics import (
    class_mean_psnr,
    hungarian_match,
    psnr_per_sample,
)
from fedguard.types import Truth

#: A sample is recovered at or above this PSNR (and 3 dB above the class-mean baseline).
RECOVERY_PSNR_DB = 30.0
RECOVERY_MARGIN_DB = 3.0


@dataclass(frozen=True)
class ReconstructionGroup:
    clients: tuple[int, ...]  # whose samples the reconstructions may be
    inputs: Tensor  # (m, F) reconstructed inputs


@dataclass(frozen=True)
class MaliciousServerOutput:
    attack: str
    round: int
    groups: tuple[ReconstructionGroup, ...]
    data_range: tuple[float, float] | None
    #: the attack's own prediction (e.g. the birthday-bound count of samples alone in a bin)
    expected_recovered: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


def score_groups(output: MaliciousServerOutput, truth: Truth) -> dict[str, float]:
    """``n_recovered`` (summed over groups), ``n_samples`` (the true samples the groups cover),
    ``recovered_fraction``, ``n_reconstructed``, and the median PSNR of recovered samples."""
    batches = truth.private_batches
    population = [batches[c] for c in sorted(batches)]
    pop_x = torch.cat([b[0].reshape(b[0].shape[0], -1) for b in population]).double()
    pop_y = torch.cat([b[1] for b in population])
    span = 1.0 if output.data_range is None else output.data_range[1] - output.data_range[0]
    n_recovered = 0
    n_samples = 0
    n_reconstructed = 0
    psnrs: list[Tensor] = []
    for group in output.groups:
        members = [batches[c] for c in group.clients if c in batches]
        if not members:
            continue
        xs = torch.cat([b[0].reshape(b[0].shape[0], -1) for b in members]).double()
        ys = torch.cat([b[1] for b in members])
        n_samples += xs.shape[0]
        n_reconstructed += group.inputs.shape[0]
        if group.inputs.shape[0] == 0:
            continue
        rows, cols = hungarian_match(group.inputs.double(), xs)
        psnr = psnr_per_sample(group.inputs.double()[rows], xs[cols], span).clamp_max(200.0)
        baseline = class_mean_psnr(xs[cols], ys[cols], pop_x, pop_y, span).clamp_max(200.0)
        hit = (psnr >= RECOVERY_PSNR_DB) & (psnr >= baseline + RECOVERY_MARGIN_DB)
        n_recovered += int(hit.sum())
        psnrs.append(psnr[hit])
    recovered_psnr = torch.cat(psnrs) if psnrs else torch.zeros(0, dtype=torch.float64)
    out = {
        "n_recovered": float(n_recovered),
        "n_samples": float(n_samples),
        "recovered_fraction": n_recovered / max(n_samples, 1),
        "n_reconstructed": float(n_reconstructed),
        "recovered_psnr_median_db": (
            float(recovered_psnr.median()) if recovered_psnr.numel() else float("nan")
        ),
    }
    if output.expected_recovered is not None:
        out["expected_recovered"] = float(output.expected_recovered)
    return out


__all__ = [
    "RECOVERY_MARGIN_DB",
    "RECOVERY_PSNR_DB",
    "MaliciousServerOutput",
    "ReconstructionGroup",
    "score_groups",
]
