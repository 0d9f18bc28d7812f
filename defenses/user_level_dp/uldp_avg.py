"""ULDP-AVG: user-level DP across silos, as a client transform that replaces local training."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from defenses.dp.kernels import (
    bind_run_options,
    check_sum_based_aggregation,
    client_transform_names,
    gaussian_noise,
    noise_generator,
)
from fedguard.api import ClientTransform, TransformContext, TransformOutput, require_positive
from fedguard.core.local_training import ClientData, train_vectorized
from fedguard.core.user_level import (
    WEIGHTINGS,
    bounded_silo_sums,
    sampled_users,
    user_level_event,
    user_pairs,
    user_weights,
)
from fedguard.errors import ConfigError, IncompatibleError
from fedguard.privacy.events import UnitEvent


@dataclass(frozen=True)
class ULDPAvg(ClientTransform):
    """ULDP-AVG: user-level (ε, δ)-DP when users' records are spread over several silos.

    Every round, users are Poisson-sampled with ``user_sampling_rate`` q (one public draw shared
    by all silos; q = 1: every user). Each silo s trains the global model, with the run's local
    training recipe, on the records of each sampled user u it holds — one update Δ_{s,u} per
    (silo, user) pair — clips it to ``clip_norm`` C, weights it by w_{s,u} (``weighting``:
    ``"records"``, n_{s,u}/n_u with n_u the user's records over all silos, ULDP-AVG-w; or
    ``"uniform"``, 1/|silos holding u|), so that Σ_s w_{s,u} ≤ 1, sums over its users and adds
    its share N(0, (zC)²/S) of the noise (S silos). The sum over silos then changes by at most C
    when one user is removed from every silo, and carries N(0, (zC)²): a Gaussian mechanism of
    multiplier z at the user level, sampled at rate q. Rows are scaled by S/(q·U) (U users in the
    population, public) so that the server's uniform mean is Σ / (q·U), the average user update
    (the paper's 1/|U| normalisation).

    The ledger gets one population event per round at privacy level ``"user"`` (a user's records
    in every silo, added or removed). Only the variance honest silos add is accounted: with up to
    f = ``n_byzantine`` silos that may skip their share, z is reduced to z·√((S − f)/S).

    Needs: a user id per record (a dataset with a user id column — ``digits_users``, or a CSV's
    ``client_column`` — and a partitioner other than ``natural``), every silo in every round
    (``clients.sampling: all``), aggregator ``mean`` with uniform weighting and no
    pre-aggregator, and no other client transform (it is the local training and the noise).

    Parameters
    ----------
    noise_multiplier : float
        z > 0: noise std on the sum over all silos ÷ ``clip_norm``.
    clip_norm : float
        C > 0: the L2 bound of each (silo, user) update.
    user_sampling_rate : float
        q in (0, 1]: probability that a user takes part in a round (user-level sampling).
    weighting : str
        ``"records"`` (default) or ``"uniform"``: how a user's bound is split between silos.

    References
    ----------
    Kato, Takahashi, Takagi, Cao, Liew, Yoshikawa. "Uldp-FL: Federated Learning with Across-Silo
    User-Level Differential Privacy." PVLDB 17(11), 2024 (ULDP-AVG, ULDP-AVG-w).
    Chua et al. "Mind the Privacy Unit! User-Level Differential Privacy for Language Model
    Fine-Tuning." COLM 2024 (user-level vs example-level sampling).
    Charles et al. "Fine-Tuning Large Language Models with User-Level Differential Privacy." 2024.
    McMahan, Ramage, Talwar, Zhang. "Learning Differentially Private Recurrent Language Models."
    ICLR 2018 (user-level DP-FedAvg, the single-silo special case).
    """

    noise_multiplier: float = 1.0
    clip_norm: float = 1.0
    user_sampling_rate: float = 1.0
    weighting: str = "records"

    replaces_local_training: ClassVar[bool] = True

    def __post_init__(self) -> None:
        require_positive(self, "noise_multiplier", "clip_norm")
        q = self.user_sampling_rate
        if not (isinstance(q, int | float) and not isinstance(q, bool) and 0 < q <= 1):
            raise ConfigError(f"user_sampling_rate must be a number in (0, 1] (got {q!r}).")
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(
                f"weighting must be one of {list(WEIGHTINGS)} (got {self.weighting!r})."
            )

    def check_compatible(self, spec: Any, components: Any) -> None:
        bind_run_options(self, spec)
        object.__setattr__(self, "_n_untrusted", int(spec.n_byzantine))
        names = client_transform_names(components)
        if names != ["uldp_avg"]:
            raise IncompatibleError(
                f"uldp_avg must be the only client transform (it is the local training, the "
                f"clipping and the noise); got {names}."
            )
        check_sum_based_aggregation("uldp_avg", spec, components)
        if spec.clients.sampling != "all":
            raise IncompatibleError(
                "uldp_avg needs clients.sampling 'all' (cross-silo: every silo in every round; "
                "users are sampled with user_sampling_rate instead)."
            )
        if spec.training.algorithm != "fedavg":
            raise IncompatibleError("uldp_avg needs training.algorithm 'fedavg'.")
        if getattr(components.transport, "dropout_rate", 0.0):
            raise IncompatibleError(
                "uldp_avg cannot see which silos drop out inside the transport; set "
                "dropout_rate to 0."
            )

    def __call__(self, updates: Tensor, ctx: TransformContext) -> TransformOutput:
        raise IncompatibleError(
            "uldp_avg replaces local training; the round loop calls its train() method."
        )

    def train(
        self, model: Any, global_params: Tensor, clients: Any, local: Any, ctx: TransformContext
    ) -> TransformOutput:
        users = getattr(clients, "users", None)
        if users is None:
            raise IncompatibleError(
                "uldp_avg needs a user id for every record: a dataset with a user id column "
                "(digits_users, or a CSV's client_column) and a partitioner other than 'natural' "
                "(the client-level canary audit, --empirical, does not apply to it: audit "
                "user-level DP with fedguard.audit.user_canaries)."
            )
        silos = [int(c) for c in ctx.client_ids]
        d = global_params.numel()
        if not silos:
            return TransformOutput(values=global_params.new_zeros(0, d))
        r = ctx.round
        n_population = int(clients.counts.shape[0])
        n_users = int(users.max()) + 1
        # weights from every silo of the population (a user's n_u counts all its records)
        everyone = user_pairs(users.cpu(), clients.counts.cpu(), list(range(n_population)))
        weights = user_weights(everyone.user, everyone.count, self.weighting)
        in_round = torch.zeros(n_population, dtype=torch.long).fill_(-1)
        in_round[torch.tensor(silos)] = torch.arange(len(silos))
        chosen = sampled_users(n_users, self.user_sampling_rate, r.seed, r.round)
        keep = (in_round[everyone.silo] >= 0) & chosen[everyone.user]
        rows = torch.nonzero(keep).flatten()

        sums = global_params.new_zeros(len(silos), d)
        if len(rows):
            pair_silo = everyone.silo[rows]
            pair_data = _pair_data(
                clients, pair_silo, everyone.positions[rows], everyone.count[rows]
            )
            deltas = train_vectorized(
                model, global_params, pair_data, list(range(len(rows))), local, r.seed, r.round
            )
            sums = bounded_silo_sums(
                deltas, in_round[pair_silo], weights[rows], self.clip_norm, len(silos)
            )
        share = self.noise_multiplier * self.clip_norm / math.sqrt(n_population)
        noise = torch.stack(
            [
                gaussian_noise(
                    (d,), share, noise_generator(self, r, "uldp_avg", cid), sums.dtype, sums.device
                )
                for cid in silos
            ]
        )
        honest = max(len(silos) - int(getattr(self, "_n_untrusted", 0)), 0)
        if honest == 0:
            raise IncompatibleError(
                f"uldp_avg: none of the {len(silos)} silos of round {r.round + 1} is guaranteed "
                "honest, so no noise can be accounted."
            )
        z_honest = self.noise_multiplier * math.sqrt(honest / n_population)
        scale = len(silos) / (self.user_sampling_rate * n_users)
        return TransformOutput(
            values=(sums + noise) * scale,
            events=(
                UnitEvent(
                    user_level_event(z_honest, self.clip_norm, self.user_sampling_rate), "user"
                ),
            ),
            state={"sampled_users": int(chosen.sum()), "user_silo_pairs": len(rows)},
        )


def _pair_data(clients: Any, silo: Tensor, positions: Tensor, count: Tensor) -> ClientData:
    """One padded row per (silo, user) pair: that user's records in that silo."""
    device = clients.features.device
    silo_d, pos_d = silo.to(device)[:, None], positions.to(device)
    return ClientData(clients.features[silo_d, pos_d], clients.labels[silo_d, pos_d], count)


__all__ = ["ULDPAvg"]
