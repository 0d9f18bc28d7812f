"""Coalition utilities of a finished run directory: retrain, OR or MR reconstruction.

``load_run(path)`` reads ``spec.yaml`` and the saved updates (``updates/round_XXXXX.pt``, loaded with
``weights_only=True``) and rebuilds the run's model and data split; :func:`build_game` turns it
into the game the estimators value:

- ``retrain``: ``v(S)`` = validation score of FedAvg trained on ``S`` alone — the run's own
  simulation (same initial model, seed, sampling draws restricted to ``S``, same local training
  streams, attacks and defenses) — the ground truth, and the most expensive;
- ``reconstruct-one-round`` (OR, Song et al. 2019) and ``reconstruct-multi-round`` (MR): rebuilt from
  the saved updates (:mod:`fedguard.valuation.reconstruction`) with the FedAvg weighted mean over
  ``S`` (the run's weighting: samples or uniform) and the server learning rate — a surrogate game
  when the run used a robust aggregator or an adaptive server optimizer.

The utility is the accuracy or the negative mean cross-entropy on the validation split (the test
split when the run kept no validation data), for a batch of flat parameter vectors at once
(``torch.func.vmap`` over the model).

References
----------
.. [1] T. Song, Y. Tong, S. Wei. "Profit Allocation for Federated Learning." IEEE Big Data 2019.
.. [2] A. Ghorbani, J. Zou. "Data Shapley." ICML 2019 (retraining utilities).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fedguard.config import RunSpec
from fedguard.errors import ConfigError, UserError
from fedguard.models.flat import FlatModel, logits_in_slices
from fedguard.storage.run_dir import RunDirectory
from fedguard.valuation.game import Game, RoundGame, members
from fedguard.valuation.reconstruction import (
    Evaluator,
    MultiRoundReconstruction,
    OneRoundReconstruction,
    RoundUpdates,
    evaluate_in_chunks,
)

UTILITIES = ("accuracy", "loss")
BUILDERS = ("retrain", "reconstruct-one-round", "reconstruct-multi-round")


@dataclass(frozen=True)
class LoadedRun:
    """A run directory opened for valuation."""

    path: Path
    spec: RunSpec
    simulation: Any  # fedguard.core.simulation.Simulation (imported lazily)
    rounds: tuple[RoundUpdates, ...]  # empty when the run saved no updates
    features: Tensor  # (N, ...) validation (or test) features
    labels: Tensor  # (N,)
    split: str  # "validation" or "test"

    @property
    def n_clients(self) -> int:
        return int(self.spec.clients.n_clients)

    @property
    def model(self) -> FlatModel:
        return self.simulation.model  # type: ignore[no-any-return]


def load_run(path: Path | str) -> LoadedRun:
    """Open a run directory: spec, model and data split, and the saved updates if any."""
    from fedguard.launch import build_simulation

    run_dir = RunDirectory(Path(path))
    if not run_dir.exists():
        raise UserError(f"{path} is not a fedguard run directory (no spec.yaml).")
    spec = run_dir.spec()
    quiet = {"attack.privacy_attacks": [], "device": "cpu", "eval_every": spec.rounds}
    sim = build_simulation(spec.with_overrides(**quiet))
    rounds = tuple(_round_updates(run_dir.load_updates(f), spec) for f in run_dir.update_files())
    val = sim.data.validation
    if len(val) > 0:
        features, labels, split = val.features, val.labels, "validation"
    else:
        features, labels, split = sim.data.test.features, sim.data.test.labels, "test"
    return LoadedRun(Path(path), spec, sim, rounds, features, labels, split)


def _round_updates(payload: dict[str, Tensor], spec: RunSpec) -> RoundUpdates:
    deltas = payload.get("deltas")
    ids = payload.get("client_ids")
    if deltas is None or ids is None or (deltas.numel() == 0 and ids.numel() > 0):
        raise UserError(
            "the saved updates hold no individual client updates (the run used secure "
            "aggregation); use --rebuild retrain."
        )
    if ids.numel() == 0:  # an empty Poisson draw: nobody to value in this round
        deltas = torch.zeros(0, payload["global_params"].shape[0])
    counts = payload["num_samples"]
    if spec.clients.weighting == "uniform":
        counts = torch.ones_like(counts)
    return RoundUpdates(payload["global_params"], ids.to(torch.int64), deltas, counts)


def make_evaluator(model: FlatModel, features: Tensor, labels: Tensor, utility: str) -> Evaluator:
    """Batched ``(k, d)`` flat params → ``(k,)`` accuracy or −cross-entropy on (features, labels),
    summed over the slices of :func:`~fedguard.models.flat.logits_in_slices` (not every
    coalition's model on the whole set at once)."""
    if utility not in UTILITIES:
        raise ConfigError(f"utility must be one of {', '.join(UTILITIES)}; got {utility!r}.")
    dtype = features.dtype
    n = len(labels)

    def totals(logits: Tensor, target: Tensor) -> Tensor:
        """Sum over the samples of ``logits`` ``(k, m, C)`` of the utility's per-sample term."""
        if utility == "accuracy":
            return (logits.argmax(-1) == target).to(torch.float64).sum(-1)
        log_probs = torch.log_softmax(logits.to(torch.float64), dim=-1)  # (k, m, C)
        picked = log_probs.gather(-1, target.expand(logits.shape[0], -1).unsqueeze(-1))
        return picked.squeeze(-1).sum(-1)

    @torch.no_grad()
    def evaluate(params: Tensor) -> Tensor:
        params = params.to(dtype)
        total = torch.zeros(params.shape[0], dtype=torch.float64, device=params.device)
        if n == 0:
            return torch.full_like(total, float("nan"))
        for rows, logits in logits_in_slices(model.forward, params, features):
            total += totals(logits, labels[rows])
        return total / n

    return evaluate


class RetrainGame(Game):
    """``v(S)`` = utility of the run's simulation retrained on coalition ``S`` from scratch."""

    def __init__(self, run: LoadedRun, evaluate: Evaluator) -> None:
        super().__init__(run.n_clients)
        self.run = run
        self.evaluate = evaluate

    def final_params(self, mask: int) -> Tensor:
        sim = self.run.simulation
        state = sim.initial_state()
        allowed = members(mask)
        while state.round < self.run.spec.rounds:
            state, _ = sim.run_round(state, allowed_clients=allowed)
        return state.params  # type: ignore[no-any-return]

    def _evaluate(self, masks: Tensor) -> Tensor:
        params = torch.stack([self.final_params(int(m)) for m in masks.tolist()])  # (k, d)
        return evaluate_in_chunks(self.evaluate, params, 64)


def build_game(run: LoadedRun, builder: str, utility: str) -> Game | RoundGame:
    """The valuation game of a run: ``retrain``, ``reconstruct-one-round`` or ``-multi-round``."""
    if builder not in BUILDERS:
        raise ConfigError(f"rebuild must be one of {', '.join(BUILDERS)}; got {builder!r}.")
    evaluate = make_evaluator(run.model, run.features, run.labels, utility)
    if builder == "retrain":
        return RetrainGame(run, evaluate)
    if not run.rounds:
        raise UserError(
            f"{builder} needs the run's saved client updates, but {run.path} has none; "
            "re-run with --save-updates or use --rebuild retrain."
        )
    lr = float(run.spec.server.learning_rate)  # θ + η·a(S); momentum/Adam servers approximated
    if builder == "reconstruct-multi-round":
        return MultiRoundReconstruction(run.rounds, run.n_clients, evaluate, lr, chunk_size=128)
    return OneRoundReconstruction(
        run.rounds,
        run.n_clients,
        evaluate,
        lr,
        initial_params=run.rounds[0].global_params,
        chunk_size=128,
    )


def duplicate_pairs(
    rounds: tuple[RoundUpdates, ...], tolerance: float = 1e-6
) -> list[tuple[int, int]]:
    """Client pairs whose saved updates and sample counts (their FedAvg weights) are identical in
    every round both took part in: symmetric players of the valuation game, whose Shapley values
    must be equal. Identical updates with different weights (two free-riders sending zero from
    datasets of different sizes) are not: the heavier one dilutes a coalition's mean more."""
    if not rounds:
        return []
    n = max(int(r.client_ids.max()) for r in rounds) + 1
    same = torch.ones(n, n, dtype=torch.bool)
    together = torch.zeros(n, n, dtype=torch.bool)
    for r in rounds:
        ids = r.client_ids
        d = r.deltas.to(torch.float64)  # (m, d)
        dist = torch.cdist(d, d)  # (m, m)
        scale = d.norm(dim=1).max().clamp(min=1e-12)
        weights = r.num_samples.to(torch.float64)
        sub = (dist <= tolerance * scale) & (weights[:, None] == weights[None, :])
        same[ids.unsqueeze(1), ids.unsqueeze(0)] &= sub
        together[ids.unsqueeze(1), ids.unsqueeze(0)] = True
    pairs = torch.nonzero(torch.triu(same & together, diagonal=1))
    return [(int(i), int(j)) for i, j in pairs.tolist()]
