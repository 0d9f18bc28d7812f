"""Mean around the median (MeaMed)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from fedguard.types import AggregationContext

from .base import LinearByzantineBound, RobustAggregator, RuleOutput
from .kernels import coordinate_median, mean_closest_to_centre


@dataclass(frozen=True)
class Meamed(LinearByzantineBound, RobustAggregator):
    """Mean around the median: per coordinate, average the n − f values closest to the median.

    The median is the coordinate-wise median (mean of the two middle values for even n). Needs
    n > 2f. Client weights are ignored. ``weights`` is each client's share of the averaged values,
    ``scores`` the distance to the aggregate; nobody is flagged.

    Parameters
    ----------
    n_byzantine : int | None
        f; ``None`` uses the run's ``n_byzantine``.

    References
    ----------
    Xie, Koyejo, Gupta. "Generalized Byzantine-tolerant SGD." arXiv:1802.10116, 2018.
    """

    byzantine_factor = 2
    min_clients_at_0 = 1
    cohort_bound = "n > 2f"

    def _aggregate(
        self, updates: Tensor, weights: Tensor | None, n_byzantine: int, ctx: AggregationContext
    ) -> RuleOutput:
        n = updates.shape[0]
        means, shares = mean_closest_to_centre(updates, coordinate_median(updates), n - n_byzantine)
        return RuleOutput(aggregate=means, weights=shares)
