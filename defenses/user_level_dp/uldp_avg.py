"""ULDP-AVG: user-level DP across silos, as a client transform that replaces local training."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from fedguard.api import ClientTransform, TransformContext, TransformOutput, require_positive
from fedguard.core.local_training import ClientData, train_vectorized
from fedguard.core.user_level import (
    SAMPLING_UNITS,
    WEIGHTINGS,
    UserPairs,
    bound_contributions,
    bounded_silo_sums,
    example_level_participation,
    sample_examples_in,
    sample_users_in,
    user_level_event,
    user_pairs,
    user_weights,
)
from fedguard.errors import ConfigError, IncompatibleError
from fedguard.privacy.events import UnitEvent
from fedguard.types import RoundContext

from ..dp.kernels import (
    bind_run_options,
    check_sum_based_aggregation,
    client_transform_names,
    gaussian_noise,
    noise_generator,
)


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

    Contribution bounding (``max_records_per_user_per_silo``, ``max_records_per_user``) keeps at
    most that many of a user's records in each silo and in all silos together (a random subset
    keyed by seed and user, fixed for the run); the weights count the kept records.

    ``sampling: example`` (example-level sampling, Chua et al. 2024) draws each kept record with
    probability ``example_sampling_rate`` q instead of whole users; a (silo, user) pair trains on
    its drawn records and is clipped and weighted as above, so a user contributes at most C, and
    only when one of its ≤ k = ``max_records_per_user`` records is drawn: the ledger records a
    Poisson-sampled Gaussian at the user-level rate 1 − (1 − q)^k
    (:func:`~fedguard.core.user_level.example_level_participation`), which is why k is required.

    Parameters
    ----------
    noise_multiplier : float
        z > 0: noise std on the sum over all silos ÷ ``clip_norm``.
    clip_norm : float
        C > 0: the L2 bound of each (silo, user) update.
    user_sampling_rate : float
        q in (0, 1]: probability that a user takes part in a round (``sampling: user``).
    weighting : str
        ``"records"`` (default) or ``"uniform"``: how a user's bound is split between silos.
    sampling : str
        ``"user"`` (default: user-level sampling) or ``"example"`` (record-level sampling).
    example_sampling_rate : float
        q in (0, 1]: probability that a kept record takes part in a round (``sampling: example``).
    max_records_per_user : int or None
        k ≥ 1: at most k records of a user over all silos (required with ``sampling: example``).
    max_records_per_user_per_silo : int or None
        At most this many records of a user in any one silo.

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
    sampling: str = "user"
    example_sampling_rate: float = 1.0
    max_records_per_user: int | None = None
    max_records_per_user_per_silo: int | None = None

    replaces_local_training: ClassVar[bool] = True

    def __post_init__(self) -> None:
        require_positive(self, "noise_multiplier", "clip_norm")
        for name in ("user_sampling_rate", "example_sampling_rate"):
            q = getattr(self, name)
            if not (isinstance(q, int | float) and not isinstance(q, bool) and 0 < q <= 1):
                raise ConfigError(f"{name} must be a number in (0, 1] (got {q!r}).")
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(
                f"weighting must be one of {list(WEIGHTINGS)} (got {self.weighting!r})."
            )
        if self.sampling not in SAMPLING_UNITS:
            raise ConfigError(
                f"sampling must be one of {list(SAMPLING_UNITS)} (got {self.sampling!r})."
            )
        for name in ("max_records_per_user", "max_records_per_user_per_silo"):
            cap = getattr(self, name)
            if cap is not None and not (
                isinstance(cap, int) and not isinstance(cap, bool) and cap >= 1
            ):
                raise ConfigError(f"{name} must be an integer >= 1 or null (got {cap!r}).")
        if self.sampling == "user" and self.example_sampling_rate != 1.0:
            raise ConfigError(
                "example_sampling_rate applies to sampling 'example' only; with sampling 'user' "
                "set user_sampling_rate instead."
            )
        if self.sampling == "example":
            if self.user_sampling_rate != 1.0:
                raise ConfigError(
                    "user_sampling_rate applies to sampling 'user' only; with sampling 'example' "
                    "set example_sampling_rate instead."
                )
            if self.max_records_per_user is None:
                raise ConfigError(
                    "max_records_per_user is required with sampling 'example' (the user-level "
                    "rate 1 − (1 − q)^k needs a public bound k on each user's records)."
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

    @property
    def participation_rate(self) -> float:
        """The user-level Poisson rate the ledger records: ``user_sampling_rate``, or
        1 − (1 − q)^k for example-level sampling at rate q with k = ``max_records_per_user``."""
        if self.sampling == "example":
            assert self.max_records_per_user is not None  # checked on construction
            return example_level_participation(
                self.example_sampling_rate, self.max_records_per_user
            )
        return float(self.user_sampling_rate)

    def round_pairs(
        self,
        users: Tensor,
        counts: Tensor,
        silos: list[int],
        seed: int,
        round_index: int,
        n_users: int | None = None,
    ) -> tuple[UserPairs, Tensor]:
        """The round's (silo, user) pairs over ``silos`` and their cross-silo weights ``(P,)``.

        ``users`` (n_population, width) is every silo's padded user table (−1 past
        ``counts``). Records past the caps are dropped (once per run: the draw is keyed by seed
        and user), weights come from every kept record of the population (a user's n_u counts
        all its silos), then the round's sample keeps whole users or single records.
        ``n_users``: the size of the user population (public; default: the largest id + 1).
        """
        n_population = int(users.shape[0])
        n_users = int(users.max()) + 1 if n_users is None else n_users
        kept = bound_contributions(
            users, counts, self.max_records_per_user_per_silo, self.max_records_per_user, seed
        )
        everyone = user_pairs(kept, counts, list(range(n_population)))
        weight_of = torch.zeros(n_population, max(n_users, 1), dtype=torch.float64)
        weight_of[everyone.silo, everyone.user] = user_weights(
            everyone.user, everyone.count, self.weighting
        )
        if self.sampling == "user":
            present = sample_users_in(kept, self.user_sampling_rate, seed, round_index, n_users)
        else:
            present = sample_examples_in(kept, self.example_sampling_rate, seed, round_index)
        pairs = user_pairs(present, counts, silos)
        silo_ids = torch.tensor(silos, dtype=torch.long)
        return pairs, weight_of[silo_ids[pairs.silo], pairs.user]

    def train(
        self, model: Any, global_params: Tensor, clients: Any, local: Any, ctx: TransformContext
    ) -> TransformOutput:
        users = getattr(clients, "users", None)
        if users is None:
            raise IncompatibleError(
                "uldp_avg needs a user id for every record: a dataset with a user id column "
                "(digits_users, or a CSV's client_column) and a partitioner other than 'natural' "
                "(its empirical audit uses user-level canaries: fedguard audit RUN --empirical)."
            )
        silos = [int(c) for c in ctx.client_ids]
        d = global_params.numel()
        if not silos:
            return TransformOutput(values=global_params.new_zeros(0, d))
        r = ctx.round
        pairs, weights = self.round_pairs(users.cpu(), clients.counts.cpu(), silos, r.seed, r.round)
        deltas = global_params.new_zeros(0, d)
        if len(pairs):
            silo_ids = torch.tensor(silos, dtype=torch.long)
            pair_data = _pair_data(clients, silo_ids[pairs.silo], pairs.positions, pairs.count)
            deltas = train_vectorized(
                model, global_params, pair_data, list(range(len(pairs))), local, r.seed, r.round
            )
        out = self.release(
            deltas,
            pairs.silo,
            weights,
            silos,
            int(clients.counts.shape[0]),
            int(users.max()) + 1,
            r,
        )
        state = {"sampled_users": int(pairs.user.unique().numel()), "user_silo_pairs": len(pairs)}
        return TransformOutput(values=out.values, events=out.events, state=state)

    def release(
        self,
        updates: Tensor,
        pair_silo: Tensor,
        weights: Tensor,
        silos: list[int],
        n_population: int,
        n_users: int,
        r: RoundContext,
    ) -> TransformOutput:
        """What the silos send for the round's pair updates ``(P, d)``: each silo's weighted sum
        of clipped updates plus its noise share, scaled for the server's mean, and the event.

        ``pair_silo`` (P,): each pair's position in ``silos``; ``weights`` (P,): its cross-silo
        weight (from :meth:`round_pairs`). The empirical audit calls this with canary updates.
        """
        d = updates.shape[1]
        sums = updates.new_zeros(len(silos), d)
        if len(pair_silo):
            sums = bounded_silo_sums(updates, pair_silo, weights, self.clip_norm, len(silos))
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
        rate = self.participation_rate
        scale = len(silos) / (rate * n_users)
        return TransformOutput(
            values=(sums + noise) * scale,
            events=(UnitEvent(user_level_event(z_honest, self.clip_norm, rate), "user"),),
        )


def _pair_data(clients: Any, silo: Tensor, positions: Tensor, count: Tensor) -> ClientData:
    """One padded row per (silo, user) pair: that user's records in that silo."""
    device = clients.features.device
    silo_d, pos_d = silo.to(device)[:, None], positions.to(device)
    return ClientData(clients.features[silo_d, pos_d], clients.labels[silo_d, pos_d], count)


__all__ = ["ULDPAvg"]
