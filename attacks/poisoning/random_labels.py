"""Random-label data poisoning: a client whose labels carry no information."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.api import DataAttack, require


@dataclass(frozen=True)
class RandomLabels(DataAttack):
    """Replace a fraction of a client's labels by labels drawn uniformly from all classes.

    The classic low-quality contributor of data-valuation studies: its updates fit noise, so a
    sound contribution measure ranks it last (Ghorbani & Zou 2019; Jia et al. 2019).

    Parameters
    ----------
    fraction : float
        Share of the client's samples relabelled, in (0, 1].

    References
    ----------
    Ghorbani & Zou, "Data Shapley: Equitable valuation of data for machine learning", ICML 2019.
    """

    fraction: float = 1.0

    def __post_init__(self) -> None:
        require(0.0 < self.fraction <= 1.0, "fraction", "in (0, 1]")

    def poison(
        self, features: Tensor, labels: Tensor, n_classes: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        n = labels.shape[0]
        chosen = torch.randperm(n, generator=generator)[: round(self.fraction * n)]
        out = labels.clone()
        out[chosen] = torch.randint(n_classes, (len(chosen),), generator=generator)
        return features, out
