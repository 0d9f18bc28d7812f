"""DP-SGD in local training: torch.func per-sample path against Opacus, accounting, a run."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

from fedguard.core.local_training import (
    ClientData,
    DPSGDConfig,
    LocalTrainingConfig,
    clipped_gradient_sum,
    poisson_batch_schedule,
    train_dp_sgd,
)
from fedguard.defenses.dp.dp_sgd import dp_sgd_round_event
from fedguard.launch import build_simulation
from fedguard.models.flat import FlatModel
from fedguard.privacy.accountants import get_accountant
from fedguard.privacy.budget import run_ledgers
from fedguard.privacy.events import compose
from tests.dp.helpers import small_spec


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


def test_per_sample_clipped_sum_equals_opacus() -> None:
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 6, generator=g) * 3.0
    y = torch.randint(0, 3, (12,), generator=g)
    clip = 0.7
    module = _model()
    flat_model = FlatModel.of(_model())
    params = torch.nn.utils.parameters_to_vector(module.parameters()).detach()

    gsm = GradSampleModule(module, loss_reduction="mean")
    opt = DPOptimizer(
        torch.optim.SGD(gsm.parameters(), lr=0.1),
        noise_multiplier=0.0,
        max_grad_norm=clip,
        expected_batch_size=12,
    )
    opt.zero_grad()
    nn.functional.cross_entropy(gsm(x), y).backward()
    opt.clip_and_accumulate()
    opacus_sum = torch.cat([p.summed_grad.reshape(-1) for p in gsm.parameters()])  # (d,)

    mask = torch.ones(1, 12)
    ours = clipped_gradient_sum(flat_model, params[None], x[None], y[None], mask, clip)[0]
    torch.testing.assert_close(ours, opacus_sum, rtol=1e-5, atol=1e-6)
    # at least some samples were clipped, so the test exercises clipping
    per = clipped_gradient_sum(flat_model, params[None], x[None], y[None], mask, 1e9)[0]
    assert not torch.allclose(per, ours)

    # padding rows (mask 0) contribute nothing; two clients in one call are independent
    both = clipped_gradient_sum(
        flat_model,
        torch.stack([params, params + 0.1]),
        torch.stack([x, x]),
        torch.stack([y, y]),
        torch.tensor([[1.0] * 6 + [0.0] * 6, [1.0] * 12]),
        clip,
    )
    first = clipped_gradient_sum(
        flat_model, params[None], x[None, :6], y[None, :6], mask[:, :6], clip
    )
    torch.testing.assert_close(both[0], first[0], rtol=1e-5, atol=1e-6)


def test_accounting_equals_opacus_rdp() -> None:
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis.rdp import compute_rdp

    count, batch, steps, z, rounds = 200, 16, 13, 1.1, 5
    per_round = dp_sgd_round_event(count, batch, steps, z)
    total = compose([per_round] * rounds)
    q = batch / count
    opacus = RDPAccountant()
    for _ in range(rounds * steps):
        opacus.step(noise_multiplier=z, sample_rate=q)
    orders = tuple(float(a) for a in opacus.DEFAULT_ALPHAS)
    ours = get_accountant("rdp", orders=orders)
    np.testing.assert_allclose(
        ours.rdp(total),
        compute_rdp(q=q, noise_multiplier=z, steps=rounds * steps, orders=orders),
        rtol=1e-6,
    )
    assert ours.epsilon(total, 1e-5) == pytest.approx(opacus.get_epsilon(1e-5), rel=1e-6)
    # the default (wider, finer) grid is never looser than Opacus' orders
    assert get_accountant("rdp").epsilon(total, 1e-5) <= opacus.get_epsilon(1e-5) + 1e-9


def test_poisson_batches_have_the_right_rate_and_do_not_depend_on_cohort() -> None:
    cfg = LocalTrainingConfig(local_epochs=20, batch_size=8)
    index, mask = poisson_batch_schedule([40, 100], [3, 7], cfg, seed=1, round_index=2)
    assert index.shape[:2] == (2, 20 * 13)
    taken = mask[1].sum().item()
    expected_steps = 20 * 13
    rate = taken / (100 * expected_steps)
    assert rate == pytest.approx(0.08, abs=0.01)
    first = mask[0].float()
    assert first[: 20 * 5].sum() > 0 and first[20 * 5 :].sum() == 0  # client 3 takes 100 steps
    alone_i, alone_m = poisson_batch_schedule([100], [7], cfg, seed=1, round_index=2)
    w = alone_m.shape[-1]
    sets = [set(alone_i[0, s][alone_m[0, s]].tolist()) for s in range(expected_steps)]
    both = [set(index[1, s][mask[1, s]].tolist()) for s in range(expected_steps)]
    assert sets == both and w <= mask.shape[-1]


def test_noise_added_per_step_has_the_claimed_std() -> None:
    """One step, lr 1: (delta with noise − delta without) · qn = N(0, (zC)²)."""
    d_in, n = 6, 32
    g = torch.Generator().manual_seed(3)
    data = ClientData.pad(
        [torch.randn(n, d_in, generator=g)], [torch.randint(0, 3, (n,), generator=g)]
    )
    model = FlatModel.of(_model())
    params = model.initial_params()
    cfg = LocalTrainingConfig(local_epochs=1, batch_size=32, learning_rate=1.0)  # q = 1
    z, c = 2.0, 0.5
    noisy = train_dp_sgd(model, params, data, [0], cfg, DPSGDConfig(z, c), 0, 0)
    clean = train_dp_sgd(model, params, data, [0], cfg, DPSGDConfig(1e-12, c), 0, 0)
    noise = ((clean - noisy) * 32).double().numpy().ravel()
    assert scipy.stats.kstest(noise / (z * c), "norm").pvalue > 1e-3


def test_run_records_record_level_events_per_participating_client() -> None:
    spec = small_spec(
        **{
            "rounds": 2,
            "clients.sampling": "poisson",
            "clients.sampling_rate": 0.5,
            "defense.client_transforms": [
                {"name": "dp_sgd", "noise_multiplier": 1.0, "clip_norm": 1.0}
            ],
        }
    )
    sim = build_simulation(spec)
    state = sim.initial_state()
    ledger = {"sampling": sim.sampling, "rounds": []}
    taken: dict[int, int] = {}
    for _ in range(2):
        state, out = sim.run_round(state)
        ledger["rounds"].append({"round": state.round, **out.events.to_dict()})
        for cid in out.events.clients:
            taken[int(cid)] = taken.get(int(cid), 0) + 1
        assert torch.isfinite(state.params).all()
    ledgers = run_ledgers(ledger)
    assert set(ledgers) == {"record"}
    record = ledgers["record"]
    counts = sim.clients.counts
    for cid, rounds in taken.items():
        n = int(counts[cid])
        expected = compose([dp_sgd_round_event(n, 32, -(-n // 32), 1.0)] * rounds)
        assert record.client_event(cid) == expected
    assert taken and record.population_event() is None
    assert all(
        e.get("level") == "record"
        for r in ledger["rounds"]
        for v in r["clients"].values()
        for e in v
    )
