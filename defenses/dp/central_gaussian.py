"""Central Gaussian noise of DP-FedAvg, added by the server to the clipped sum."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from fedguard.api import (
    ServerTransform,
    TransformContext,
    TransformOutput,
    require,
    require_positive,
)
from fedguard.errors import ConfigError, IncompatibleError
from fedguard.privacy.events import Gaussian

from .accounting import expected_cohort, round_gaussian_event, sampled
from .kernels import (
    bind_run_options,
    check_sum_based_aggregation,
    client_transform_names,
    gaussian_noise,
    noise_generator,
)

ESTIMATORS = ("fixed_denominator", "cohort_mean")


@dataclass(frozen=True)
class CentralGaussian(ServerTransform):
    """DP-FedAvg's server step: noise N(0, (z·C)² I) on the sum of clipped updates.

    The round's aggregate must be the uniform mean of the updates (aggregator ``mean``,
    ``clients.weighting: uniform``), each clipped to ``clip_norm`` by a ``clip`` client transform
    (the last client transform). The server recovers the sum ``S = n · mean``, adds the noise and
    releases

    * ``estimator="fixed_denominator"`` (default; McMahan et al. 2018): ``(S + ξ) / (qW)`` with
      qW the *expected* cohort size (public); valid for every sampling scheme;
    * ``estimator="cohort_mean"``: ``(S + ξ) / m``; only for a fixed cohort of m clients (m is
      public). Under Poisson sampling the realised cohort size is data-dependent and would be
      released without noise, so it is refused.

    Convention: ``noise_multiplier`` z is the noise std on the sum divided by ``clip_norm`` (the
    paper's and TFF's). The ledger records the multiplier relative to the sensitivity of the
    sampling's neighbouring relation (C under add/remove, 2C under replace-one, i.e. z/2 for a
    fixed cohort), wrapped in ``Sampled(q, ·, scheme)``; one population event per round.

    Sensitivity follows the aggregator. Any other rule is refused as ``incompatible`` unless it
    derives a bound through :meth:`fedguard.api.Aggregator.l2_sensitivity` (the output's L2
    change when one client's clipped update is replaced, for a cohort of n): then, with a fixed
    cohort (replace-one, n public), the noise N(0, (z·s)² I) is added to the rule's output
    directly and recorded as ``Sampled(q, Gaussian(z, s), "without_replacement")``.

    The guarantee covers honest clients (their clipped updates); malicious clients may send
    anything and a free-rider sends no data.

    Parameters
    ----------
    noise_multiplier : float
        z > 0.
    clip_norm : float
        C > 0, at least the ``clip`` transform's ``clip_norm``.
    estimator : str
        ``"fixed_denominator"`` or ``"cohort_mean"``.

    References
    ----------
    McMahan, Ramage, Talwar, Zhang. "Learning Differentially Private Recurrent Language Models."
    ICLR 2018.
    """

    noise_multiplier: float = 1.0
    clip_norm: float = 1.0
    estimator: str = "fixed_denominator"

    def __post_init__(self) -> None:
        require_positive(self, "noise_multiplier", "clip_norm")
        require(self.estimator in ESTIMATORS, "estimator", "'fixed_denominator' or 'cohort_mean'")

    def check_compatible(self, spec: Any, components: Any) -> None:
        bind_run_options(self, spec)
        name = "central_gaussian"
        check_clipped_by(name, self.clip_norm, components)
        c = spec.clients
        probe = c.cohort_size or max(3, round((c.sampling_rate or 1.0) * c.n_clients))
        if self._rule_bound(components.aggregator, probe) is not None:
            if spec.clients.sampling != "fixed" or components.preaggregators:
                raise IncompatibleError(
                    "central_gaussian with an aggregator's own sensitivity bound needs "
                    "clients.sampling 'fixed' (a public cohort size, replace-one) and no "
                    "pre-aggregators."
                )
            return
        check_sum_based_aggregation(name, spec, components)
        if self.estimator == "cohort_mean" and spec.clients.sampling != "fixed":
            raise IncompatibleError(
                "central_gaussian estimator 'cohort_mean' needs clients.sampling 'fixed' (a public "
                "cohort size); under Poisson sampling the cohort size depends on who takes part — "
                "use 'fixed_denominator'."
            )
        if getattr(components.transport, "dropout_rate", 0.0):
            raise IncompatibleError(
                "central_gaussian recovers the clipped sum as n × mean, which dropouts in the "
                "transport break; set the transport's dropout_rate to 0."
            )

    def _rule_bound(self, aggregator: Any, n_clients: int) -> float | None:
        """The aggregator's own L2 sensitivity bound, or None (also for the mean: its sum path)."""
        if aggregator is None or (aggregator.registry_name or "") == "mean" or n_clients < 1:
            return None
        try:
            bound = aggregator.l2_sensitivity(self.clip_norm, n_clients)
        except (ValueError, ZeroDivisionError, ConfigError):  # no bound for this cohort size
            return None
        return None if bound is None else float(bound)

    def __call__(self, aggregate: Tensor, ctx: TransformContext) -> TransformOutput:
        n = len(ctx.client_ids)
        bound = self._rule_bound(ctx.aggregator, n)
        if bound is not None:  # the rule's own bound, fixed cohort (checked at build time)
            gen = noise_generator(self, ctx.round, "central_gaussian")
            std = self.noise_multiplier * bound
            xi = gaussian_noise(tuple(aggregate.shape), std, gen, aggregate.dtype, aggregate.device)
            event = sampled(Gaussian(self.noise_multiplier, bound), ctx.sampling)
            return TransformOutput(
                values=aggregate + xi, events=(event,), state={"noise_stddev_on_output": std}
            )
        total = aggregate * n  # (d,) the clipped sum
        stddev = self.noise_multiplier * self.clip_norm
        gen = noise_generator(self, ctx.round, "central_gaussian")
        noise = gaussian_noise(
            tuple(aggregate.shape), stddev, gen, aggregate.dtype, aggregate.device
        )
        denominator = expected_cohort(ctx.sampling) if self.estimator == "fixed_denominator" else n
        event = round_gaussian_event(self.clip_norm, stddev, ctx.sampling)
        return TransformOutput(
            values=(total + noise) / denominator,
            events=(event,),
            state={"noise_stddev_on_sum": stddev, "denominator": float(denominator)},
        )


def check_clipped_by(mechanism: str, clip_norm: float, components: Any) -> None:
    """The last client transform must be ``clip`` with a clip norm at most ``clip_norm``."""
    names = client_transform_names(components)
    if not names or names[-1] != "clip":
        raise IncompatibleError(
            f"{mechanism} needs the updates clipped: make 'clip' the last client transform "
            f"(got {names or 'none'})."
        )
    actual = components.client_transforms[-1].clip_norm
    if actual > clip_norm * (1 + 1e-12):
        raise IncompatibleError(
            f"{mechanism} is calibrated for clip_norm {clip_norm}, but the clip transform clips "
            f"to {actual}; the sensitivity would be larger than the noise accounts for."
        )
