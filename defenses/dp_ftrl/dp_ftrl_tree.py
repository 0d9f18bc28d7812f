"""DP-FTRL with tree aggregation and restarts (Kairouz et al., ICML 2021)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from torch import Tensor

from defenses.dp_ftrl.matrix_mechanism import MatrixMechanism
from defenses.dp_ftrl.streaming_noise import decoder_noise, difference_rows
from defenses.dp_ftrl.tree_factorization import ESTIMATORS, Factorization, tree_factorization
from fedguard.api import require, require_positive
from fedguard.errors import IncompatibleError


@functools.lru_cache(maxsize=32)
def _tree(horizon: int, restart_every: int, estimator: str) -> tuple[Factorization, np.ndarray]:
    factorization = tree_factorization(horizon, restart_every, estimator)
    return factorization, difference_rows(factorization.decoder)


@dataclass(frozen=True)
class DPFTRLTree(MatrixMechanism):
    """DP-FTRL: the server adds tree-aggregation noise to the sum of clipped updates.

    Every node of a binary tree over the rounds gets fresh noise N(0, σ² I), σ = ``noise_multiplier
    · clip_norm``, in the round its interval ends; the released update of round t is the clipped
    sum plus the difference of the estimated prefix-sum noises of rounds t and t − 1, over the
    public expected cohort, so the model (server SGD) follows the tree's noisy prefix sums — the
    follow-the-regularized-leader view of Kairouz et al. A new tree starts every ``restart_every``
    rounds (default: the min-separation b of the schedule — each client then appears at most
    once per tree, their setting — or every round when clients are not separated). The prefix
    estimator is ``"plain"`` (binary decomposition) or ``"honaker"`` (each node replaced by its
    minimum-variance estimate from its completed subtree; Honaker 2015).

    Privacy: a Gaussian mechanism of sensitivity ``s = √max_π Σ_{i,j∈π} (CᵀC)_{ij}`` (clip norms)
    over the schedule's participation patterns — ``√(k·⌈log₂(R + 1)⌉)`` for one participation per
    tree of R rounds in k trees, dp-accounting's tree-aggregation RDP — filed round by round as
    :class:`~fedguard.privacy.matrix_events.MatrixGaussian` (see :mod:`~defenses.dp_ftrl.accounting`).
    No amplification by sampling is derived for trees: Poisson sampling is refused.

    Parameters
    ----------
    noise_multiplier : float
        z > 0: noise std per node ÷ ``clip_norm``.
    clip_norm : float
        C > 0, at least the ``clip`` transform's.
    estimator : str
        ``"plain"`` or ``"honaker"``.
    restart_every : int
        Rounds per tree; 0 = the schedule's min separation.
    rounds : int
        Horizon of the strategy; 0 = the run's number of rounds.

    References
    ----------
    Kairouz, McMahan, Song, Thakkar, Thakurta, Xu. "Practical and Private (Deep) Learning without
    Sampling or Shuffling." ICML 2021.
    Honaker. "Efficient Use of Differentially Private Binary Trees." TPDP 2015.
    Dwork, Naor, Pitassi, Rothblum. "Differential Privacy Under Continual Observation." STOC 2010.
    """

    noise_multiplier: float = 1.0
    clip_norm: float = 1.0
    estimator: str = "plain"
    restart_every: int = 0
    rounds: int = 0
    stream: ClassVar[str] = "dp_ftrl_tree"

    def __post_init__(self) -> None:
        require_positive(self, "noise_multiplier", "clip_norm")
        require(self.estimator in ESTIMATORS, "estimator", "'plain' or 'honaker'")
        require(
            isinstance(self.restart_every, int) and self.restart_every >= 0,
            "restart_every",
            "an integer >= 0 (0: the schedule's min separation)",
        )
        require(isinstance(self.rounds, int) and self.rounds >= 0, "rounds", "an integer >= 0")

    def strategy_name(self) -> str:
        return f"tree_{self.estimator}"

    def period(self, separation: int) -> int:
        return self.restart_every or separation

    def band_count(self, horizon: int, separation: int) -> int:
        return min(self.period(separation), horizon)

    def factorization(self, horizon: int, separation: int) -> tuple[np.ndarray, np.ndarray]:
        tree, _ = _tree(horizon, self.period(separation), self.estimator)
        return tree.strategy, tree.release_round

    def check_schedule(self, horizon: int, separation: int, rate: float) -> None:
        if rate < 1.0:
            raise IncompatibleError(
                "dp_ftrl_tree has no amplification by sampling: use clients.sampling "
                "'min_separation' without sampling_rate, or 'all'."
            )

    def round_noise(
        self, t: int, horizon: int, separation: int, state: Mapping[str, Any], draw: Any
    ) -> tuple[Tensor, dict[str, Any]]:
        tree, differences = _tree(horizon, self.period(separation), self.estimator)
        kept = state.get("node_noise", {})
        noise, keep = decoder_noise(t, differences, tree.release_round, kept, draw)
        return noise, {"node_noise": keep}
