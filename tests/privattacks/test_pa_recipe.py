"""Client-level membership inference repeats the target client's local training (issue 13.2).

The core hands attacks one typed :class:`~fedguard.types.LocalTrainingRecipe`; reference models
of a client target must train exactly like that client: same steps, batches (partial last batch,
FedSGD's single full batch), learning rate, momentum and proximal term.
"""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from fedguard.attacks.inversion._common import select_targets, training_hparams
from fedguard.attacks.membership._common import (
    MembershipOutput,
    as_membership_task,
    attack_generator,
    resolve_target,
    score_membership,
)
from fedguard.attacks.membership._shadow import (
    TrainingRecipe,
    draw_batches,
    train_sequential,
    train_stacked,
)
from fedguard.attacks.membership.lira import LiRA
from fedguard.attacks.membership.loss_threshold import LossThreshold
from fedguard.config import load_spec, parse_spec
from fedguard.core.local_training import batch_schedule, local_steps
from fedguard.core.simulation import Simulation
from fedguard.errors import ConfigError
from fedguard.launch import build_simulation
from fedguard.types import LocalTrainingRecipe, ServerView

FEDSGD = {"algorithm": "fedsgd", "learning_rate": 0.5}
# batch 7 leaves a partial last batch for every client size that is not a multiple of 7
FEDAVG = {
    "local_epochs": 2,
    "batch_size": 7,
    "learning_rate": 0.05,
    "momentum": 0.9,
    "prox_mu": 0.1,
}


def _last_view(spec_dict: dict) -> tuple[Simulation, ServerView]:
    spec = parse_spec(
        {"rounds": 2, "clients": {"n_clients": 10}, "model": {"name": "mlp", "hidden": [16]}}
        | spec_dict
    )
    sim = build_simulation(spec)
    state = sim.initial_state()
    for _ in range(spec.rounds):
        state, out = sim.run_round(state)
    assert out.view is not None
    return sim, out.view


def _resolve(sim: Simulation, view: ServerView, cid: int):  # type: ignore[no-untyped-def]
    task = as_membership_task(
        sim.knowledge(), view, "client", cid, 2, None, torch.Generator().manual_seed(0)
    )
    return task, resolve_target(view, task, "client", cid)


@pytest.mark.parametrize("training", [FEDSGD, FEDAVG], ids=["fedsgd", "fedavg-momentum-prox"])
def test_resolved_recipe_equals_the_clients(training: dict) -> None:
    sim, view = _last_view({"training": training})
    cfg = sim.local  # what the core's trainer used
    assert view.recipe == LocalTrainingRecipe(
        algorithm=cfg.algorithm,
        learning_rate=cfg.learning_rate,
        local_epochs=cfg.local_epochs,
        batch_size=cfg.batch_size,
        momentum=cfg.momentum,
        prox_mu=cfg.prox_mu,
    )
    for cid in view.client_ids[:3]:
        n = int(sim.clients.counts[cid])
        _, tgt = _resolve(sim, view, cid)
        assert tgt.recipe == TrainingRecipe(
            steps=local_steps(n, cfg),
            batch_size=n if cfg.algorithm == "fedsgd" else min(cfg.batch_size, n),
            lr=cfg.learning_rate,
            momentum=cfg.momentum,
            prox_mu=cfg.prox_mu,
            drop_last=False,
        )
        assert tgt.train_size == n and torch.equal(tgt.start, view.global_params)


@pytest.mark.parametrize("training", [FEDSGD, FEDAVG], ids=["fedsgd", "fedavg-momentum-prox"])
def test_reference_training_reproduces_the_clients_update(training: dict) -> None:
    """On the client's own data and batch order, the resolved recipe gives its exact update."""
    sim, view = _last_view({"training": training})
    for cid in view.client_ids[:2]:
        x, y = sim.data.client_arrays(cid)
        _, tgt = _resolve(sim, view, cid)
        # the core's batch order for this client and round, as reference-model batch indices
        index, mask = batch_schedule([x.shape[0]], [cid], sim.local, sim.training_seed, view.round)
        batches = torch.where(mask, index, -1)[0][:, None, :]  # (steps, 1, B)
        assert tgt.recipe is not None and batches.shape[0] == tgt.recipe.steps
        init = view.global_params[None]
        local = train_stacked(sim.model.module, init, x, y, batches, tgt.recipe)[0]
        assert float((tgt.params - view.global_params).abs().max()) > 1e-3  # a real update
        assert torch.allclose(local, tgt.params, atol=2e-6), float((local - tgt.params).abs().max())


def test_partial_batches_follow_the_local_trainer() -> None:
    """``drop_last=False``: every epoch visits each member once in ⌈M/B⌉ batches; stacked and
    sequential training agree with momentum and the proximal term on padded batches."""
    members = torch.arange(10, 33)[None].expand(3, -1)  # (K=3, M=23)
    recipe = TrainingRecipe(
        steps=12, batch_size=5, lr=0.1, momentum=0.9, prox_mu=0.5, drop_last=False
    )
    gen = torch.Generator().manual_seed(0)
    batches = draw_batches(members, recipe, gen)  # (12, 3, 5): 2 epochs of 5 batches + 2 steps
    valid = (batches >= 0).sum(dim=2)  # (steps, K)
    assert valid[:, 0].tolist() == [5, 5, 5, 5, 3] * 2 + [5, 5]
    for k in range(3):
        epoch = batches[:5, k]
        assert sorted(epoch[epoch >= 0].tolist()) == list(range(10, 33))
    x = torch.randn(40, 64, generator=gen)
    y = torch.randint(0, 10, (40,), generator=gen)
    model = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.ReLU(), torch.nn.Linear(8, 10))
    init = torch.randn(3, sum(p.numel() for p in model.parameters()), generator=gen) * 0.1
    fast = train_stacked(model, init, x, y, batches, recipe)
    slow = train_sequential(model, init, x, y, batches, recipe)
    assert torch.allclose(fast, slow, atol=1e-5)


def test_a_view_without_recipe() -> None:
    sim, view = _last_view({"training": FEDSGD})
    bare = dataclasses.replace(view, recipe=None)
    task, _ = _resolve(sim, view, view.client_ids[0])
    # the loss attack needs no reference models; LiRA refuses in one sentence
    assert LossThreshold(target="client").observe(bare, task) is not None
    with pytest.raises(ConfigError, match="local training recipe"):
        LiRA(n_shadows=2, target="client").observe(bare, task)


# ------------------------------------------------------------------------------------------
# attack strength on the shipped FedSGD config, corrected against the wrong recipe


def _shipped_fedsgd_run() -> tuple[Simulation, ServerView]:
    spec = load_spec("configs/privacy_attacks.yaml")
    assert spec.training.algorithm == "fedsgd"
    sim = build_simulation(spec.with_overrides(**{"attack.privacy_attacks": []}))
    state = sim.initial_state()
    for _ in range(spec.rounds):
        state, out = sim.run_round(state)
    assert out.view is not None
    return sim, out.view


def _wrong_recipe(sim: Simulation) -> TrainingRecipe:
    """What the attack used before the fix: the whole run's recipe, rounds × local epochs ×
    ⌈mean client size / batch⌉ mini-batch steps without momentum (10 steps of 16 here), where
    the target client took one full-batch step."""
    spec = sim.spec
    mean_size = round(len(sim.data.train) / spec.clients.n_clients)
    t = spec.training
    steps = spec.rounds * t.local_epochs * -(-mean_size // t.batch_size)
    return TrainingRecipe(steps=steps, batch_size=t.batch_size, lr=t.learning_rate)


def _mean_aucs(
    sim: Simulation, view: ServerView, clients: tuple[int, ...], seed: int
) -> tuple[float, float]:
    truth = sim.truth()
    wrong = _wrong_recipe(sim)
    corrected, old = [], []
    for cid in clients:
        attack = LiRA(target="client", target_client=cid, seed=seed)  # 16 shadows (default)
        gen = attack_generator(seed, view.round, cid, "lira/candidates")
        task = as_membership_task(
            sim.knowledge(), view, "client", cid, attack.n_candidates, None, gen
        )
        tgt = resolve_target(view, task, "client", cid)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # few non-members per client
            out = attack.observe(view, sim.knowledge())
            corrected.append(attack.metrics(out, truth)["auc"])
            scores, _ = attack.score_candidates(view, task, dataclasses.replace(tgt, recipe=wrong))
            out_old = MembershipOutput("lira", scores, task.candidates, cid, False)
            old.append(score_membership(out_old, truth)["auc"])
    return sum(corrected) / len(corrected), sum(old) / len(old)


def test_corrected_recipe_finds_client_level_leakage_on_the_shipped_config() -> None:
    """The issue's measurement: 6 clients, seed 0 — 0.616 against 0.497 with the wrong recipe."""
    sim, view = _shipped_fedsgd_run()
    assert _wrong_recipe(sim).steps == 10
    corrected, old = _mean_aucs(sim, view, view.client_ids[:6], seed=0)
    assert corrected - old >= 0.05, (corrected, old)
    assert corrected > 0.55 and old < 0.55


@pytest.mark.slow
def test_corrected_recipe_gain_holds_over_all_clients_and_seeds() -> None:
    sim, view = _shipped_fedsgd_run()
    gains = []
    for seed in range(4):
        corrected, old = _mean_aucs(sim, view, view.client_ids, seed)
        assert corrected > old, (seed, corrected, old)
        gains.append(corrected - old)
    assert sum(gains) / len(gains) >= 0.05, gains


@pytest.mark.parametrize("training", [FEDSGD, FEDAVG], ids=["fedsgd", "fedavg-momentum-prox"])
def test_inversion_reads_the_same_recipe(training: dict) -> None:
    """Inversion attacks take lr / steps / batch from the typed recipe, as from the mapping."""
    _, view = _last_view({"training": training})
    assert view.recipe is not None
    assert training_hparams(view.recipe) == training_hparams(view.training)
    untyped = dataclasses.replace(view, recipe=None)
    typed, plain = select_targets(view, None, None, 2), select_targets(untyped, None, None, 2)
    for a, b in zip(typed, plain, strict=True):
        assert torch.equal(a.delta, b.delta)
        assert dataclasses.replace(a, delta=b.delta) == b
