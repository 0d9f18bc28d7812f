"""Canary clients inside the core's round loop: extra clients whose local update is fixed.

An inserted canary is an ordinary member of the population — sampled like every client, passed
through every client transform (clipping, noise), the transport, the aggregator and the server
transforms — except that its local training is replaced by its canary update. The real clients
keep their data and their random streams (keyed by client id), so their training is unchanged.

References
----------
Andrew, G., Kairouz, P., Oh, S., Oprea, A., McMahan, H. B. and Suriyakumar, V. (2024). One-shot
empirical privacy estimation for federated learning. *ICLR 2024*.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from fedguard.api import require
from fedguard.core.local_training import ClientData, LocalTrainingConfig, Trainer
from fedguard.core.sampling import sampling_description
from fedguard.core.simulation import Simulation
from fedguard.models.flat import FlatModel


def canary_trainer(base: Trainer, first_canary_id: int, canary_updates: Tensor) -> Trainer:
    """Wrap a local trainer: clients ``≥ first_canary_id`` return their canary update instead.

    ``canary_updates`` is ``(k, d)``, row ``i`` the update of client ``first_canary_id + i``.
    Real clients are trained by ``base`` on their own streams, exactly as without canaries.
    """

    def train(
        model: FlatModel,
        global_params: Tensor,
        data: ClientData,
        client_ids: Sequence[int],
        cfg: LocalTrainingConfig,
        seed: int,
        round_index: int,
    ) -> Tensor:
        ids = torch.as_tensor(list(client_ids), dtype=torch.long)  # (n,)
        is_canary = ids >= first_canary_id  # (n,)
        out = torch.empty(
            len(ids),
            global_params.shape[-1],
            dtype=global_params.dtype,
            device=global_params.device,
        )  # (n, d)
        real_rows = torch.nonzero(~is_canary).flatten()
        if real_rows.numel():
            real_ids = ids[real_rows].tolist()
            # per-client starting points (n, d) follow their clients, as the trainers' contract says
            starts = global_params[real_rows] if global_params.dim() == 2 else global_params
            out[real_rows] = base(model, starts, data, real_ids, cfg, seed, round_index)
        canary_rows = torch.nonzero(is_canary).flatten()
        if canary_rows.numel():
            rows = ids[canary_rows] - first_canary_id
            out[canary_rows] = canary_updates[rows.to(canary_updates.device)].to(out)
        return out

    return train


def install_canaries(
    sim: Simulation, canary_updates: Tensor, public_population: int | None = None
) -> tuple[int, ...]:
    """Add one client per row of ``canary_updates`` ``(k, d)`` to ``sim``'s population.

    Returns the new clients' ids (``n_clients … n_clients + k − 1``). The simulation's spec,
    sampling description, client data and trainer are replaced; the original clients keep
    their data and their random streams.

    ``public_population`` is the population size the mechanisms are told (``sampling``'s
    ``population`` and ``expected_cohort``, e.g. DP-FedAvg's fixed denominator ``qW``) under
    Poisson or full participation. The audit passes ``n_clients + m`` — every canary slot,
    inserted or not — so that no mechanism parameter depends on which canaries were inserted.
    Default: the actual population. A fixed cohort is scaled with the actual population
    (``cohort · (n + k)/n``, the same sampling rate).
    """
    spec = sim.spec
    n_real = spec.clients.n_clients
    k = int(canary_updates.shape[0])
    n_total = n_real + k
    overrides: dict[str, Any] = {"clients.n_clients": n_total}
    cohort = spec.clients.cohort_size
    if spec.clients.sampling == "fixed" and cohort is not None:
        overrides["clients.cohort_size"] = max(1, round(cohort * n_total / n_real))
    sim.spec = spec.with_overrides(**overrides)
    c = sim.spec.clients
    described = n_total
    if public_population is not None and c.sampling != "fixed":
        require(public_population >= n_total, "public_population", "at least the population")
        described = public_population
    sim.sampling = sampling_description(
        c.sampling, described, c.cohort_size or 0, c.sampling_rate or 0, c.min_separation or 1
    )
    if k == 0:
        return ()
    data = sim.clients
    weight = max(1, round(float(data.counts.double().mean())))
    pad_x = torch.zeros(k, *data.features.shape[1:], dtype=data.features.dtype)
    sim.clients = ClientData(
        torch.cat([data.features, pad_x.to(data.features.device)]),
        torch.cat([data.labels, torch.zeros(k, data.labels.shape[1], dtype=data.labels.dtype)]),
        torch.cat([data.counts, torch.full((k,), weight, dtype=data.counts.dtype)]),
    ).to(sim.device)
    sim.trainer = canary_trainer(sim.trainer, n_real, canary_updates.to(sim.device))
    return tuple(range(n_real, n_total))
