"""Robbing the Fed: exact recovery of the samples alone in their bin, through secure aggregation,
against the birthday-bound expectation."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import binom

from attacks.malicious_server.bins import (
    bin_recovery,
    bins_of,
    birthday_expectation,
    expected_alone_without_replacement,
)
from attacks.malicious_server.layers import first_layer
from attacks.malicious_server.robbing_the_fed import RobbingTheFed
from defenses.secure_aggregation.transport import SecAggPlusTransport
from fedguard.errors import IncompatibleError
from fedguard.models.flat import ParamLayout
from fedguard.types import RoundContext
from tests.malserver.helpers import (
    LEARNING_RATE,
    broadcast_context,
    digits,
    fedsgd_updates,
    flat_params,
    mlp,
    server_view,
    task,
    truth_of,
)

POOL = 1400  # trial batches come from the first 1,400 digits; the rest is public


def test_birthday_expectation_closed_forms() -> None:
    assert birthday_expectation(1, 10) == 1.0
    assert birthday_expectation(2, 2) == pytest.approx(1.0)  # alone with probability 1/2 each
    assert birthday_expectation(3, 4) == pytest.approx(3 * 0.75**2)
    # equal bins of a large pool: without replacement tends to the with-replacement bound
    counts = torch.full((20,), 5000)
    assert expected_alone_without_replacement(counts, 15) == pytest.approx(
        birthday_expectation(15, 20), rel=1e-3
    )
    # two samples from a pool of one bin of 2 and one of 1: alone iff the pair is split
    assert expected_alone_without_replacement(torch.tensor([2, 1]), 2) == pytest.approx(4 / 3)


def test_bin_recovery_is_exact_for_a_sample_alone_and_mixes_a_shared_bin() -> None:
    # rows fire for f > c_i; row updates are sums over those samples of γ_n·x_n and γ_n
    x = torch.tensor([[1.0, 2.0], [3.0, 5.0], [7.0, 11.0]])
    gamma = torch.tensor([0.5, -2.0, 1.5])
    fires = torch.tensor([[1, 1, 1], [0, 1, 1], [0, 1, 1]], dtype=torch.float64).T  # (3 rows)
    # row 0: all three; row 1: samples 1, 2; row 2: samples 1, 2 → bin 0 = {0}, bin 2 = {1, 2}
    w = fires.T.double() @ (gamma[:, None] * x).double()
    b = fires.T.double() @ gamma.double()
    inputs, bins = bin_recovery(w, b)
    assert bins.tolist() == [0, 2]
    torch.testing.assert_close(inputs[0], x[0].double())
    mixture = (gamma[1] * x[1] + gamma[2] * x[2]) / (gamma[1] + gamma[2])
    torch.testing.assert_close(inputs[1], mixture.double())


def test_first_layer_refuses_a_model_without_a_fully_connected_first_layer() -> None:
    conv = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(72, 10)
    )
    with pytest.raises(IncompatibleError, match="first layer is fully connected"):
        first_layer(ParamLayout.of(conv), 64)


def _trial(trial: int, n_clients: int, per_client: int, hidden: int) -> tuple[int, int, int]:
    """One round through secagg_plus; returns (recovered, alone in their bin, samples)."""
    x, y = digits()
    model = mlp(hidden, seed=trial)
    ids = tuple(range(10, 10 + n_clients))
    ctx = broadcast_context(model, ids, (x[POOL:], y[POOL:]), seed=trial, round_=0)
    attack = RobbingTheFed()
    plan = attack.broadcast(flat_params(model), ctx)
    gen = torch.Generator().manual_seed(1000 + trial)
    pick = torch.randperm(POOL, generator=gen)[: n_clients * per_client]
    batches = [
        (
            x[pick[i * per_client : (i + 1) * per_client]],
            y[pick[i * per_client : (i + 1) * per_client]],
        )
        for i in range(n_clients)
    ]
    updates = fedsgd_updates(model, plan.received(ids), batches, LEARNING_RATE)
    weights = torch.full((n_clients,), float(per_client))
    transport = SecAggPlusTransport(neighbours=2)
    rc = RoundContext(0, trial, plan.model, ids, 100)
    out = transport(updates, weights, rc)
    assert out.updates is None and out.info["clipped_coordinates"] == 0  # imprint inside the range
    view = server_view(0, ids, (per_client,) * n_clients, plan, None, out.update_sum)
    output = attack.observe(view, task(model))
    assert output is not None
    scores = attack.metrics(output, truth_of(ids, batches, (x[:POOL], y[:POOL])))
    # the truth: samples alone in their bin (the thresholds are in the model the server sent)
    layer = first_layer(ParamLayout.of(model), 64)
    k = int(plan.info["imprint_rows"])
    scale = layer.weight_of(plan.model)[0].double().norm()
    direction = layer.weight_of(plan.model)[0].double() / scale
    thresholds = -layer.bias_of(plan.model)[:k].double() / scale
    bins = bins_of(x[pick], direction, thresholds)
    alone = int((torch.bincount(bins + 1)[bins + 1] == 1).sum())
    return int(scores["n_recovered"]), alone, pick.numel()


def test_through_secagg_plus_recovers_the_birthday_bound_over_twenty_trials() -> None:
    """20 rounds of 5 clients × 8 digits, 64 bins: the number of samples recovered (PSNR ≥ 30 dB
    and 3 dB above the class mean) is the number alone in their bin, and their total lies in the
    95% binomial interval of the birthday expectation for the pool's own bin masses."""
    trials, n_clients, per_client, hidden = 20, 5, 8, 64
    recovered = alone = 0
    for trial in range(trials):
        r, a, n = _trial(trial, n_clients, per_client, hidden)
        assert r == a  # every sample alone in its bin is recovered, and nothing else is
        recovered += r
        alone += a
    # expectation: N = 40 drawn without replacement from the pool, bins as the attack set them
    x, y = digits()
    expected_rate = []
    for trial in range(trials):  # the bins differ per trial (the direction is drawn per round)
        model = mlp(hidden, seed=trial)
        ctx = broadcast_context(model, (0, 1, 2), (x[POOL:], y[POOL:]), seed=trial, round_=0)
        plan = RobbingTheFed().broadcast(flat_params(model), ctx)
        layer = first_layer(ParamLayout.of(model), 64)
        w0 = layer.weight_of(plan.model)[0].double()
        thresholds = -layer.bias_of(plan.model)[:hidden].double() / w0.norm()
        bins = bins_of(x[:POOL], w0 / w0.norm(), thresholds)
        counts = torch.bincount(bins + 1, minlength=hidden + 1)
        n = n_clients * per_client
        expected_rate.append(expected_alone_without_replacement(counts, n) / n)
    p = sum(expected_rate) / trials
    total = trials * n_clients * per_client
    low, high = binom.interval(0.95, total, p)
    print(
        f"recovered {recovered} of {total}; expected {p * total:.1f}, 95% [{low:.0f}, {high:.0f}]"
    )
    assert low <= recovered <= high, (recovered, low, high, p * total)
    # and the uniform-bin bound is of the same size (the public estimate of the masses is good)
    uniform = trials * birthday_expectation(n_clients * per_client, hidden)
    assert math.isclose(recovered, uniform, rel_tol=0.15)
