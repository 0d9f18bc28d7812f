"""DP-BREM: one noised centered-clipping step on the client momenta (Gu et al.).

Privacy analysis (client level)
-------------------------------
Round t releases ``v_t = c_t + (Σ_{i∈S_t} clip_τ(x_i − c_t) + ξ_t) / m`` with
``ξ_t ~ N(0, (z·τ)² I)``, where

* ``c_t = v_{t−1}`` (``c_1 = 0``) is the previous round's *noised* output — public, since it was
  released — so everything computed from it is post-processing;
* ``x_i`` is client i's message (its momentum), an arbitrary function of its own data, its past
  messages and the public past outputs;
* ``m`` is a fixed, data-independent denominator (the expected cohort qN, or a parameter).

Given the public centre, the query is the sum ``Σ_i f_i`` of per-client vectors
``f_i = clip_τ(x_i − c_t)`` with ``‖f_i‖ ≤ τ`` *whatever* ``x_i`` is. Adding or removing one client
therefore moves the sum by at most τ; replacing one client (fixed cohort) by at most
``‖f_i‖ + ‖f'_i‖ ≤ 2τ``. Each round is a Gaussian mechanism of multiplier z on a query of
sensitivity τ (add/remove) or 2τ (replace-one; recorded multiplier z/2), sub-sampled as the round
was, and T rounds compose adaptively (each round's query depends on the data only through the
clients' messages, and on earlier rounds only through their released outputs).

Why the momentum does not raise the sensitivity. A client's momentum
``x_i = Σ_s w β^(t−s) g_{i,s}`` depends on all of its past updates, so changing the client's data
changes *every* later message; but the bound above is on the clipped *difference to the public
centre*, which is at most τ for any message, so whatever the history did to ``x_i`` is absorbed by
the clip. Contrast :class:`defenses.dp.dp_brem.DPBREM`, which clips the *updates* and then sums the
momenta: there a client's message carries all its past clipped updates, its norm can reach
``w·C·Σ_s β^s`` (C for the exponential form, ``C/(1−β)`` for heavy ball), and the noise must be
scaled to that momentum sensitivity.

Caveat (sampled rounds). Under Poisson sampling or a fixed cohort a client's momentum also depends
on *which* earlier rounds it was sampled in, which is not released. The per-round bound holds for
any message, and the ledger composes the per-round sampled Gaussians as DP-FedAvg does and as the
DP-BREM paper does; with every client in every round (``clients.sampling: all``) there is no such
hidden state and the composition is exact.

References
----------
Gu, Xiong, Wang, Jia, Alemi, Kariyappa, et al. "DP-BREM: Differentially-Private and
Byzantine-Robust Federated Learning with Client Momentum." USENIX Security 2025
(arXiv:2306.12608).
Karimireddy, He, Jaggi. "Learning from History for Byzantine Robust Optimization." ICML 2021.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from fedguard.api import Aggregator, require
from fedguard.core.sampling import sampling_description
from fedguard.core.update_checks import check_updates, check_weights
from fedguard.errors import ConfigError, IncompatibleError
from fedguard.privacy.events import PrivacyEvent
from fedguard.types import AggregationContext, AggregationResult

from ..robust.kernels import clip_rows
from .accounting import round_gaussian_event
from .kernels import bind_run_options, gaussian_noise

CENTRE_KEY = "centre"


def noised_centered_clipping(
    updates: Tensor, centre: Tensor, clip_radius: float, denominator: float, noise: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """``v = c + (Σ_i clip_τ(x_i − c) + ξ) / m``: one centered-clipping step, noised.

    Parameters
    ----------
    updates : Tensor
        ``(n, d)`` client messages x_i (momenta).
    centre : Tensor
        ``(d,)`` public centre c.
    clip_radius : float
        τ.
    denominator : float
        m, fixed and data-independent.
    noise : Tensor
        ``(d,)`` ξ, added to the clipped sum.

    Returns
    -------
    tuple[Tensor, Tensor, Tensor]
        The ``(d,)`` output v, the ``(n,)`` clipping factors ``min(1, τ/‖x_i − c‖)`` and the
        ``(n,)`` distances ``‖x_i − c‖``.
    """
    c = centre.to(updates.dtype)  # (d,)
    diff = updates - c[None, :]  # (n, d)
    clipped, factors = clip_rows(diff, clip_radius)  # (n, d), (n,)
    distances = torch.linalg.vector_norm(diff, dim=1)  # (n,)
    total = clipped.sum(dim=0) + noise.to(updates.dtype)  # (d,)
    return c + total / denominator, factors, distances


@dataclass(frozen=True)
class DPBREMCenteredClipping(Aggregator):
    """DP-BREM aggregator: noised centered clipping of client momenta around a public centre.

    Clients send their momenta (client transform ``momentum``). The server runs ONE
    centered-clipping iteration around the previous round's noised output c (zero in round 1,
    kept in ``AggregationResult.state["centre"]``) and adds Gaussian noise to the clipped sum::

        v = c + (Σ_i clip_τ(x_i − c) + N(0, (z·τ)² I)) / m

    The noised v is released and becomes the next centre. ``m`` is the ``denominator`` parameter,
    or — bound from the run spec at build time — the expected cohort qN (N under full
    participation, the cohort size for a fixed cohort); it never depends on who actually sent an
    update. Used outside a run (not bound), m defaults to the number of rows and the round is
    accounted as full participation.

    Each round records ``gaussian_for_sum(τ, z·τ, relation)`` wrapped in the round's sampling
    (``Sampled(q, ·, scheme)``; none under full participation): sensitivity τ under client-level
    add/remove (Poisson or full participation), 2τ under replace-one (fixed cohort, recorded
    multiplier z/2). The bound holds for any message, so momentum over past rounds does not
    increase it (derivation in the module docstring). Scores are the distances ``‖x_i − c‖``;
    clients whose difference was clipped are flagged; weights are the relative clipping factors.

    Noise comes from the aggregation context's generator, or from the OS CSPRNG with
    ``privacy.secure_rng: true``. Non-finite rows are flagged, get weight 0 and score +inf and are
    left out (removing a client: covered by add/remove). Individual updates are needed (no secure
    aggregation), clients must be weighted uniformly, and pre-aggregators are refused (they mix
    clients' rows, so one client could move several clipped terms).

    Parameters
    ----------
    clip_radius : float
        τ > 0, the centered-clipping radius and the per-client sensitivity.
    noise_multiplier : float
        z > 0: noise std on the clipped sum over τ.
    denominator : float or None
        m > 0, or None for the run's expected cohort.

    References
    ----------
    Gu, Xiong, Wang, Jia, Alemi, Kariyappa, et al. "DP-BREM: Differentially-Private and
    Byzantine-Robust Federated Learning with Client Momentum." USENIX Security 2025
    (arXiv:2306.12608).
    Karimireddy, He, Jaggi. "Learning from History for Byzantine Robust Optimization." ICML 2021.
    """

    clip_radius: float = 1.0
    noise_multiplier: float = 1.0
    denominator: float | None = None

    def __post_init__(self) -> None:
        require(_positive_number(self.clip_radius), "clip_radius", "a finite number > 0")
        require(_positive_number(self.noise_multiplier), "noise_multiplier", "a finite number > 0")
        require(
            self.denominator is None or _positive_number(self.denominator),
            "denominator",
            "a finite number > 0, or null for the run's expected cohort",
        )

    # ---------------------------------------------------------------------------------------
    # Build-time checks

    def check_compatible(self, spec: Any, components: Any) -> None:
        bind_run_options(self, spec)
        name = self.registry_name or "dp_brem_cc"
        transport = components.transport
        if not getattr(transport, "reveals_individual_updates", True):
            raise IncompatibleError(
                f"{name} clips each client's momentum around the centre, so it needs individual "
                f"updates; transport {transport.registry_name or type(transport).__name__!r} "
                "reveals only their sum (use transport 'plain')."
            )
        if components.preaggregators:
            pre = components.preaggregators[0]
            raise IncompatibleError(
                f"{name} bounds each client's clipped difference by clip_radius; pre-aggregator "
                f"{pre.registry_name or type(pre).__name__!r} mixes clients' rows, so one client "
                "could move several of them."
            )
        if spec.clients.weighting != "uniform":
            raise IncompatibleError(
                f"{name} needs clients.weighting 'uniform': weighting by sample counts makes one "
                "client's influence data-dependent and unbounded."
            )
        c = spec.clients
        sampling = sampling_description(
            c.sampling, c.n_clients, c.cohort_size or c.n_clients, c.sampling_rate or 1.0
        )
        object.__setattr__(self, "_sampling", sampling)

    def sampling(self, n_rows: int) -> Mapping[str, Any]:
        """The sampling description bound from the run, else full participation of the rows."""
        bound: Mapping[str, Any] | None = getattr(self, "_sampling", None)
        if bound is not None:
            return bound
        return sampling_description("all", n_rows, n_rows, 1.0)

    def fixed_denominator(self, n_rows: int) -> float:
        """m: the parameter, else the expected cohort of the run's sampling."""
        if self.denominator is not None:
            return float(self.denominator)
        return float(self.sampling(n_rows)["expected_cohort"])

    def round_event(self, n_rows: int) -> PrivacyEvent:
        """The privacy event of one round: Gaussian of std z·τ on a sum of τ-bounded terms."""
        return round_gaussian_event(
            self.clip_radius, self.noise_multiplier * self.clip_radius, self.sampling(n_rows)
        )

    # ---------------------------------------------------------------------------------------
    # Aggregation

    def __call__(
        self, updates: Tensor, weights: Tensor | None, ctx: AggregationContext
    ) -> AggregationResult:
        rule = self.registry_name or "dp_brem_cc"
        x = check_updates(updates, ctx.global_params, rule)  # (n, d)
        n, d = x.shape
        w = check_weights(weights, n, rule)
        if w is not None and n > 0 and not bool((w == w[0]).all()):
            raise ConfigError(
                f"aggregator {rule!r} weights clients uniformly; got unequal weights (set "
                "clients.weighting to 'uniform')."
            )
        finite = torch.isfinite(x).all(dim=1)  # (n,)
        keep = finite.nonzero().flatten()  # (k,)
        faulty = {int(i) for i in (~finite).nonzero().flatten()}

        previous = ctx.state.get(CENTRE_KEY)
        centre = torch.zeros(d, dtype=x.dtype, device=x.device)
        if isinstance(previous, Tensor) and previous.shape == (d,):
            centre = previous.to(dtype=x.dtype, device=x.device)

        std = self.noise_multiplier * self.clip_radius
        generator = None if getattr(self, "_secure_rng", False) else ctx.generator
        noise = gaussian_noise((d,), std, generator, x.dtype, x.device)  # (d,)
        m = self.fixed_denominator(n)
        v, factors, distances = noised_centered_clipping(
            x[keep], centre, self.clip_radius, m, noise
        )

        scores = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
        scores[keep] = distances
        weights_out = torch.zeros(n, dtype=x.dtype, device=x.device)
        if keep.numel() > 0:
            weights_out[keep] = factors / factors.sum()
        clipped = {int(keep[i]) for i in (distances > self.clip_radius).nonzero().flatten()}
        return AggregationResult(
            aggregate=v,
            weights=weights_out,
            scores=scores,
            flagged=tuple(sorted(clipped | faulty)),
            state={CENTRE_KEY: v.detach().clone()},
            events=(self.round_event(n),),
        )


def _positive_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


__all__ = ["CENTRE_KEY", "DPBREMCenteredClipping", "noised_centered_clipping"]
