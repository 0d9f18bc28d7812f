"""What the DP-FTRL server transforms share: schedule checks, the round's events, the release.

A subclass provides the factorization (strategy C, the round each row of C is released) and the
round's correlated noise in units of σ; this base turns the clipped mean into the clipped sum,
adds ``σ = noise_multiplier · clip_norm`` times that noise and releases the sum over the public
expected cohort (DP-FedAvg's fixed denominator), with the round's privacy event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from defenses.dp.accounting import expected_cohort
from defenses.dp.central_gaussian import check_clipped_by
from defenses.dp.kernels import (
    bind_run_options,
    check_sum_based_aggregation,
    gaussian_noise,
    noise_generator,
)
from defenses.dp_ftrl.accounting import round_events
from fedguard.api import ServerTransform, TransformContext, TransformOutput
from fedguard.errors import ConfigError, IncompatibleError
from fedguard.privacy.events import PrivacyEvent


def schedule_of(sampling: Mapping[str, Any]) -> tuple[int, float]:
    """``(min_separation b, sampling rate q inside the eligible group)`` of a round's sampling."""
    scheme = str(sampling.get("scheme", "all"))
    if scheme not in ("all", "poisson"):
        raise IncompatibleError(
            "DP-FTRL needs clients.sampling 'min_separation', 'all' or 'poisson' (a fixed cohort "
            "has no derived sensitivity here)."
        )
    separation = int(sampling.get("min_separation", 1))
    rate = float(sampling.get("rate", 1.0)) if scheme == "poisson" else 1.0
    return separation, rate


def spec_schedule(spec: Any) -> tuple[int, float]:
    """``(b, q)`` from a run spec's ``clients`` section (b = 1 unless min-separation)."""
    c = spec.clients
    if c.sampling == "fixed":
        raise IncompatibleError(
            "DP-FTRL needs clients.sampling 'min_separation', 'all' or 'poisson' (a fixed cohort "
            "has no derived sensitivity here)."
        )
    separation = int(c.min_separation or 1) if c.sampling == "min_separation" else 1
    rate = float(c.sampling_rate or 1.0) if c.sampling in ("poisson", "min_separation") else 1.0
    return separation, rate


class MatrixMechanism(ServerTransform):
    """Base of :class:`~defenses.dp_ftrl.dp_ftrl_tree.DPFTRLTree` and
    :class:`~defenses.dp_ftrl.bandmf.BandMF` (fields ``noise_multiplier``, ``clip_norm``,
    ``rounds`` on the subclasses)."""

    noise_multiplier: float
    clip_norm: float
    rounds: int
    #: name of the keyed noise stream (fixed, so the draws never depend on how it was loaded)
    stream: ClassVar[str] = ""

    # -- what a subclass provides

    def strategy_name(self) -> str:
        raise NotImplementedError  # abstract

    def band_count(self, horizon: int, separation: int) -> int:
        raise NotImplementedError  # abstract

    def factorization(self, horizon: int, separation: int) -> tuple[np.ndarray, np.ndarray]:
        """``(C (rows × horizon), release round of each row (rows,))``."""
        raise NotImplementedError  # abstract

    def check_schedule(self, horizon: int, separation: int, rate: float) -> None:
        """Raise :class:`IncompatibleError` for schedules the mechanism has no bound for."""

    def round_noise(
        self, t: int, horizon: int, separation: int, state: Mapping[str, Any], draw: Any
    ) -> tuple[Tensor, dict[str, Any]]:
        """Round t's noise in units of σ (float64, ``(d,)``) and the state for round t + 1."""
        raise NotImplementedError  # abstract

    # -- shared

    def horizon(self) -> int:
        horizon = self.rounds or int(getattr(self, "_run_rounds", 0))
        if horizon < 1:
            raise ConfigError(
                f"{self.registry_name or type(self).__name__}.rounds must be set (>= 1) when the "
                "component is used outside a run."
            )
        return horizon

    def check_compatible(self, spec: Any, components: Any) -> None:
        bind_run_options(self, spec)
        object.__setattr__(self, "_run_rounds", int(spec.rounds))
        name = self.registry_name or type(self).__name__
        if self.rounds and self.rounds < spec.rounds:
            raise IncompatibleError(
                f"{name}.rounds is {self.rounds} but the run has {spec.rounds} rounds; the "
                "strategy must cover every round (set rounds to 0 for the run's)."
            )
        check_clipped_by(name, self.clip_norm, components)
        check_sum_based_aggregation(name, spec, components)
        if getattr(components.transport, "dropout_rate", 0.0):
            raise IncompatibleError(
                f"{name} recovers the clipped sum as n × mean, which dropouts in the transport "
                "break; set the transport's dropout_rate to 0."
            )
        separation, rate = spec_schedule(spec)
        self.check_schedule(self.horizon(), separation, rate)

    def events(self, horizon: int, separation: int, rate: float) -> list[PrivacyEvent | None]:
        strategy, release = self.factorization(horizon, separation)
        return round_events(
            strategy,
            release,
            name=self.strategy_name(),
            bands=self.band_count(horizon, separation),
            noise_multiplier=self.noise_multiplier,
            clip_norm=self.clip_norm,
            min_separation=separation,
            sampling_rate=rate,
        )

    def __call__(self, aggregate: Tensor, ctx: TransformContext) -> TransformOutput:
        t = ctx.round.round
        horizon = self.horizon()
        name = self.registry_name or type(self).__name__
        if t >= horizon:
            raise ConfigError(f"{name} was built for {horizon} rounds; round {t + 1} is beyond.")
        expected_round = int(ctx.state.get("next_round", 0))
        if expected_round != t:
            raise ConfigError(
                f"{name}'s state belongs to round {expected_round + 1}, not round {t + 1}; "
                "correlated noise needs the state of the previous round."
            )
        separation, rate = schedule_of(ctx.sampling)
        self.check_schedule(horizon, separation, rate)
        generator = noise_generator(self, ctx.round, self.stream)
        d = int(aggregate.numel())

        def draw(count: int) -> Tensor:
            return gaussian_noise((count, d), 1.0, generator, torch.float64, "cpu")

        noise, state = self.round_noise(t, horizon, separation, ctx.state, draw)  # (d,) float64
        sigma = self.noise_multiplier * self.clip_norm
        total = aggregate.double().cpu() * len(ctx.client_ids)  # (d,) the clipped sum
        released = (total + sigma * noise) / expected_cohort(ctx.sampling)
        event = _cached_events(self, horizon, separation, rate)[t]
        state["next_round"] = t + 1
        return TransformOutput(
            values=released.to(dtype=aggregate.dtype, device=aggregate.device).reshape(
                aggregate.shape
            ),
            events=() if event is None else (event,),
            state=state,
        )


def _cached_events(
    mechanism: MatrixMechanism, horizon: int, separation: int, rate: float
) -> list[PrivacyEvent | None]:
    key = (horizon, separation, rate)
    cache = mechanism.__dict__.setdefault("_event_cache", {})
    if key not in cache:
        cache[key] = mechanism.events(horizon, separation, rate)
    events: list[PrivacyEvent | None] = cache[key]
    return events


__all__ = ["MatrixMechanism", "schedule_of", "spec_schedule"]
