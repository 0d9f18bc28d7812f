"""Membership inference: kernels against closed forms / brute force, attacks on digits."""

from __future__ import annotations

import math

import pytest
import torch
from opacus.accountants import RDPAccountant
from pa_util import digits, dp_sgd_train, local_sgd, mlp
from scipy.stats import norm

from fedguard import registry
from fedguard.attacks.inversion._common import ParamLayout, module_params
from fedguard.attacks.membership._common import (
    MembershipOutput,
    MembershipTask,
    membership_labels,
    membership_metrics,
    reliability_warnings,
)
from fedguard.attacks.membership._shadow import (
    TrainingRecipe,
    draw_batches,
    init_stacked,
    member_indices,
    random_subsets,
    stacked_logits,
    train_sequential,
    train_stacked,
)
from fedguard.attacks.membership.lira import LiRA, lira_scores, logit_scaled_confidence
from fedguard.attacks.membership.loss_threshold import LossThreshold, loss_scores
from fedguard.attacks.membership.rmia import RMIA, marginal_probability, rmia_scores
from fedguard.errors import ConfigError
from fedguard.metrics.privacy_attack_metrics import dp_consistency
from fedguard.types import LocalTrainingRecipe, ServerView, Truth

X, Y = digits()
RECIPE = TrainingRecipe(steps=100, batch_size=50, lr=0.2, momentum=0.9)


def _empty_view(params: torch.Tensor, round_index: int = 0) -> ServerView:
    return ServerView(
        round=round_index,
        global_params=params,
        client_ids=(),
        updates=None,
        update_sum=torch.zeros_like(params),
        num_samples=(),
    )


# ------------------------------------------------------------------------------------------
# kernels


def test_logit_scaling_matches_naive_formula_and_stays_finite() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 10, generator=gen, dtype=torch.float64) * 3
    labels = torch.randint(0, 10, (50,), generator=gen)
    p = torch.softmax(logits, dim=-1)
    p_y = p[torch.arange(50), labels]
    naive = torch.log(p_y) - torch.log(1 - p_y)
    assert torch.allclose(logit_scaled_confidence(logits, labels), naive, atol=1e-10)
    extreme = torch.tensor([[500.0, 0.0, -3.0]])  # p_y rounds to 1 in float32 and float64
    phi = logit_scaled_confidence(extreme, torch.tensor([0]))
    assert phi.item() == pytest.approx(500.0 - math.log(1 + math.exp(-3.0)), rel=1e-12)


def test_lira_scores_match_scipy_gaussians() -> None:
    gen = torch.Generator().manual_seed(1)
    stats = torch.randn(12, 6, generator=gen, dtype=torch.float64)
    inside = torch.rand(12, 6, generator=gen) < 0.5
    inside[0], inside[1] = True, False  # every column has IN and OUT shadows
    target = torch.randn(6, generator=gen, dtype=torch.float64)
    online = lira_scores(target, stats, inside, online=True, fixed_variance=False, min_count=1)
    offline = lira_scores(target, stats, inside, online=False, fixed_variance=False, min_count=1)
    for j in range(6):
        s_in, s_out = stats[inside[:, j], j].numpy(), stats[~inside[:, j], j].numpy()
        t = float(target[j])
        ref_on = norm.logpdf(t, s_in.mean(), s_in.std()) - norm.logpdf(t, s_out.mean(), s_out.std())
        ref_off = norm.logcdf(t, s_out.mean(), s_out.std())
        assert online[j].item() == pytest.approx(ref_on, rel=1e-9, abs=1e-9)
        assert offline[j].item() == pytest.approx(ref_off, rel=1e-9, abs=1e-9)
    fixed = lira_scores(target, stats, inside, online=False, fixed_variance=True)
    mu_out = torch.stack([stats[~inside[:, j], j].mean() for j in range(6)])
    pooled_sd = ((stats - mu_out)[~inside] ** 2).mean().sqrt()
    assert torch.allclose(fixed, torch.special.log_ndtr((target - mu_out) / pooled_sd))


def test_rmia_scores_match_brute_force_pairs() -> None:
    gen = torch.Generator().manual_seed(2)
    px, prx = torch.rand(30, generator=gen), torch.rand(30, generator=gen) + 0.1
    pz, prz = torch.rand(40, generator=gen), torch.rand(40, generator=gen) + 0.1
    for gamma in (1.0, 2.0):
        lr = (px / prx)[:, None] / (pz / prz)[None, :]  # (N, Z)
        brute = (lr >= gamma).double().mean(dim=1)
        assert torch.allclose(rmia_scores(px, prx, pz, prz, gamma), brute)


def test_rmia_offline_marginal_formula() -> None:
    probs = torch.tensor([[0.2, 0.9], [0.4, 0.5], [0.6, 0.7]], dtype=torch.float64)
    inside = torch.tensor([[False, True], [False, False], [True, False]])
    p_out = torch.tensor([0.3, 0.6], dtype=torch.float64)
    for a in (0.0, 0.3, 1.0):
        got = marginal_probability(probs, inside, offline=True, offline_a=a)
        assert torch.allclose(got, 0.5 * ((1 + a) * p_out + (1 - a)))
    assert torch.allclose(
        marginal_probability(probs, inside, offline=False, offline_a=0.0), probs.mean(dim=0)
    )


def test_batches_are_per_model_epoch_permutations() -> None:
    gen = torch.Generator().manual_seed(3)
    mask = random_subsets(5, 40, gen, 12)
    assert (mask.sum(dim=1) == 12).all()
    members = member_indices(mask)
    batches = draw_batches(members, TrainingRecipe(steps=9, batch_size=4, lr=0.1), gen)
    assert batches.shape == (9, 5, 4)
    for k in range(5):
        for epoch in range(3):
            seen = batches[3 * epoch : 3 * epoch + 3, k].flatten().sort().values
            assert torch.equal(seen, members[k])


def test_vectorized_training_matches_one_by_one() -> None:
    model = mlp(0)
    gen = torch.Generator().manual_seed(4)
    layout = ParamLayout.from_module(model)
    recipe = TrainingRecipe(steps=25, batch_size=10, lr=0.2, momentum=0.9, weight_decay=1e-3)
    mask = random_subsets(3, 60, gen)
    batches = draw_batches(member_indices(mask), recipe, gen)
    init = init_stacked(layout, 3, gen)
    fast = train_stacked(model, init, X[:60], Y[:60], batches, recipe)
    slow = train_sequential(model, init, X[:60], Y[:60], batches, recipe)
    assert torch.allclose(fast, slow, atol=1e-5)
    assert not torch.allclose(fast[0], fast[1])


# ------------------------------------------------------------------------------------------
# attacks on digits, pooled over several target models


@pytest.fixture(scope="module")
def pooled() -> dict[str, dict[str, float]]:
    """Four targets, each trained on 100 random digits of a 200-point candidate pool."""
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(X.shape[0], generator=gen)
    xc, yc = X[perm[:200]], Y[perm[:200]]
    xp, yp = X[perm[200:400]], Y[perm[200:400]]
    model = mlp(0)
    layout = ParamLayout.from_module(model)
    n_targets = 4
    mask = random_subsets(n_targets, 200, gen, 100)
    batches = draw_batches(member_indices(mask), RECIPE, gen)
    targets = train_stacked(model, init_stacked(layout, n_targets, gen), xc, yc, batches, RECIPE)
    attacks = {
        "loss": LossThreshold(),
        "lira": LiRA(n_shadows=16),
        "lira_offline": LiRA(n_shadows=16, online=False, fixed_variance=True),
        "rmia": RMIA(n_references=8),
    }
    results: dict[str, dict[str, float]] = {}
    for name, attack in attacks.items():
        scores, labels = [], []
        for t in range(n_targets):
            task = MembershipTask(
                model=model,
                candidates=(xc, yc),
                population=(xp, yp),
                recipe=RECIPE,
                target_params=targets[t],
                train_size=100,
            )
            out = attack.observe(_empty_view(targets[t], round_index=t), task)
            truth = Truth(malicious_ids=(), private_batches={0: (xc[mask[t]], yc[mask[t]])})
            labels.append(membership_labels(out, truth))
            assert torch.equal(labels[-1], mask[t])
            scores.append(out.scores)
        results[name] = membership_metrics(torch.cat(scores), torch.cat(labels))
    return results


def test_lira_and_rmia_beat_the_loss_attack_at_low_fpr(pooled: dict[str, dict[str, float]]) -> None:
    loss = pooled["loss"]["tpr_at_1pct_fpr"]
    assert pooled["loss"]["n_nonmembers"] == 400 and pooled["loss"]["tpr_at_1pct_fpr_reliable"]
    for name in ("lira", "lira_offline", "rmia"):
        assert pooled[name]["tpr_at_1pct_fpr"] > loss, (name, pooled[name], loss)
    assert pooled["lira"]["tpr_at_1pct_fpr_lower"] > loss


def test_lira_and_rmia_auc_on_a_100_sample_model(pooled: dict[str, dict[str, float]]) -> None:
    for name in ("lira", "rmia"):
        assert pooled[name]["auc"] >= 0.65, (name, pooled[name])


def test_membership_against_one_clients_update() -> None:
    gen = torch.Generator().manual_seed(5)
    perm = torch.randperm(X.shape[0], generator=gen)
    client = perm[:40]
    candidates = perm[:80]  # 40 members (the client's data) + 40 non-members
    population = perm[80:280]
    model = mlp(1)
    w0 = module_params(model)
    delta = local_sgd(model, w0, X[client], Y[client], lr=0.5, steps=60)
    view = ServerView(
        round=2,
        global_params=w0,
        client_ids=(7, 9),
        updates=torch.stack([torch.zeros_like(delta), delta]),
        update_sum=delta,
        num_samples=(40, 40),
        training={"lr": 0.5, "local_steps": 60, "batch_size": 40},
        # 60 full-batch steps: 60 epochs of one batch of all 40 samples
        recipe=LocalTrainingRecipe("fedavg", learning_rate=0.5, local_epochs=60, batch_size=40),
    )
    task = MembershipTask(
        model=model,
        candidates=(X[candidates], Y[candidates]),
        population=(X[population], Y[population]),
        recipe=RECIPE,
    )
    truth = Truth(malicious_ids=(), private_batches={9: (X[client], Y[client])})
    attack = LiRA(n_shadows=16, target="client", target_client=9)
    out = attack.observe(view, task)
    assert out.client_id == 9 and not out.from_aggregate
    with pytest.warns(UserWarning, match="non-members"):
        m = attack.metrics(out, truth)
    assert m["n_members"] == 40 and m["auc"] >= 0.6
    with pytest.raises(ConfigError, match="target_client must be one of"):
        LiRA(target="client", target_client=3).observe(view, task)
    secagg = ServerView(2, w0, (7, 9), None, delta, (40, 40), view.training, view.recipe)
    assert LossThreshold(target="client").observe(secagg, task).from_aggregate


def test_registry_and_parameter_validation() -> None:
    assert registry.get("privacy_attack", "lira") is LiRA
    assert isinstance(registry.create("privacy_attack", "rmia", n_references=4), RMIA)
    with pytest.raises(ConfigError, match="target must be 'global' or 'client'"):
        LossThreshold(target="server")
    with pytest.raises(ConfigError, match="offline_a must be in"):
        RMIA(offline_a=2.0)


# ------------------------------------------------------------------------------------------
# DP check: TPR ≤ e^ε·FPR + δ must hold under DP-SGD and fail on an overfit model


def test_dp_guarantee_holds_for_dp_sgd_and_fails_without_it() -> None:
    gen = torch.Generator().manual_seed(1)
    perm = torch.randperm(X.shape[0], generator=gen)
    model = mlp(0)
    layout = ParamLayout.from_module(model)
    q, z, steps, delta = 0.1, 4.0, 200, 1e-5
    accountant = RDPAccountant()
    accountant.history = [(z, q, steps)]
    eps = accountant.get_epsilon(delta)
    assert 1.0 < eps < 2.0
    train, test = perm[:1000], perm[1000:]
    theta = dp_sgd_train(
        model,
        init_stacked(layout, 1, gen)[0],
        X[train],
        Y[train],
        sampling_rate=q,
        noise_multiplier=z,
        clip_norm=1.0,
        steps=steps,
        lr=1.0,
        generator=gen,
    )
    logits = stacked_logits(model, theta[None], X)[0]
    assert (logits[test].argmax(dim=1) == Y[test]).double().mean() >= 0.7  # accuracy floor
    is_member = torch.zeros(X.shape[0], dtype=torch.bool)
    is_member[train] = True
    dp_check = dp_consistency(loss_scores(logits, Y), is_member, eps, delta)
    assert dp_check.consistent, dp_check
    # LiRA (8 non-private shadows on random 1000-point halves) must respect it as well
    lira_task = MembershipTask(
        model=model,
        candidates=(X, Y),
        population=(X[:0], Y[:0]),
        recipe=TrainingRecipe(steps=100, batch_size=100, lr=0.5, momentum=0.9),
        target_params=theta,
        train_size=1000,
    )
    lira_scores_dp = LiRA(n_shadows=8).observe(_empty_view(theta), lira_task).scores
    lira_check = dp_consistency(lira_scores_dp, is_member, eps, delta)
    assert lira_check.consistent, lira_check

    # undefended, overfit: four models on 100 points each, pooled; the same ε must be refuted
    pool = perm[:200]
    mask = random_subsets(4, 200, gen, 100)
    batches = draw_batches(member_indices(mask), RECIPE, gen)
    thetas = train_stacked(model, init_stacked(layout, 4, gen), X[pool], Y[pool], batches, RECIPE)
    logits4 = stacked_logits(model, thetas, X[pool])  # (4, 200, C)
    scores = loss_scores(logits4, Y[pool]).flatten()
    undefended = dp_consistency(scores, mask.flatten(), eps, delta)
    assert not undefended.consistent and undefended.max_excess > 0.05


def test_membership_output_scoring_needs_truth() -> None:
    out = MembershipOutput("loss_threshold", torch.zeros(2), (X[:2], Y[:2]), 4, False)
    with pytest.raises(ConfigError, match="no data for client 4"):
        membership_labels(out, Truth(malicious_ids=()))


def test_same_seed_same_scores_bit_for_bit() -> None:
    model = mlp(0)
    recipe = TrainingRecipe(steps=10, batch_size=20, lr=0.1)
    task = MembershipTask(
        model, (X[:40], Y[:40]), (X[40:80], Y[40:80]), recipe, module_params(model)
    )
    view = _empty_view(module_params(model))
    a = RMIA(n_references=3, seed=1).observe(view, task)
    b = RMIA(n_references=3, seed=1).observe(view, task)
    c = LiRA(n_shadows=3, seed=1).observe(view, task)
    d = LiRA(n_shadows=3, seed=2).observe(view, task)
    assert torch.equal(a.scores, b.scores) and a.info == b.info
    assert not torch.equal(c.scores, d.scores)


def test_stacked_init_follows_pytorch_linear_bounds() -> None:
    # nn.Linear's default init is U(±1/√fan_in) for weight and bias (kaiming_uniform, a=√5)
    model = mlp(0)
    layout = ParamLayout.from_module(model)
    init = init_stacked(layout, 50, torch.Generator().manual_seed(0))  # (50, d)
    for name, fan_in in (("0.weight", 64), ("0.bias", 64), ("2.weight", 32), ("2.bias", 32)):
        values = init[:, layout.slice_of(name)]
        bound = fan_in**-0.5
        assert values.abs().max() <= bound and values.abs().max() > 0.95 * bound
        assert abs(float(values.mean())) < 0.05 * bound


def test_membership_metrics_carry_tie_and_sample_size_warnings() -> None:
    """Ties at the 1% threshold and too few non-members for 0.1% are in the metrics dict."""
    members = torch.cat([torch.ones(100), torch.zeros(100)]).bool()
    scores = torch.cat([torch.linspace(0.2, 0.9, 100), torch.linspace(0.0, 0.5, 100)])
    scores[:33] = 1.0
    scores[100] = 1.0  # a non-member tied with 33 members at the top score
    m = membership_metrics(scores, members)
    assert m["tpr_at_1pct_fpr"] == 0.0 and m["tpr_at_1pct_fpr_tied"] == 1.0
    assert m["tpr_at_1pct_fpr_if_ties_broken"] == pytest.approx(0.33)
    assert m["tpr_at_1pct_fpr_reliable"] == 0.0 and m["tpr_at_0.1pct_fpr_reliable"] == 0.0
    notes = reliability_warnings(m)
    assert len(notes) == 3  # too few non-members for 0.1%; ties at both thresholds
    assert "only 100 non-members: TPR at 0.1% FPR" in notes[0]
    assert "1.0% FPR depends on tie-breaking" in notes[1]


def test_stacked_logits_run_in_slices_of_the_inputs(monkeypatch) -> None:
    """Scoring a pool with shadow models runs in slices of the inputs (a whole CIFAR pool at
    once made gigabyte activations, page-faulted in every layer): images on a CPU model after
    model in evaluation-sized batches, other inputs vmapped under the input budget. Both give
    each model's logits on every input."""
    import fedguard.attacks.membership._shadow as shadow
    import fedguard.models.flat as flat

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    layout = ParamLayout.from_module(model)
    thetas = torch.stack([module_params(model) + 0.01 * i for i in range(3)])
    images = torch.randn(50, 1, 8, 8)
    sizes: list[int] = []
    call = shadow.functional_call
    monkeypatch.setattr(
        shadow,
        "functional_call",
        lambda m, p, args: (sizes.append(len(args[0])), call(m, p, args))[1],
    )
    monkeypatch.setattr(flat, "evaluation_batch", lambda inputs: 16)
    monkeypatch.setattr(flat, "INPUT_ELEMENTS", 64 * 3 * 7)  # 7 samples for 3 models
    for x, expected_sizes in ((images, [16, 16, 16, 2] * 3), (images.flatten(1), None)):
        expected = torch.stack(
            [torch.func.functional_call(model, layout.unflatten(t), (x,)) for t in thetas]
        )
        sizes.clear()
        got = stacked_logits(model, thetas, x)
        if expected_sizes is not None:  # model by model, slice by slice
            assert sorted(sizes) == sorted(expected_sizes)
        else:  # vmapped: traced once a slice
            assert max(sizes) == 7 and sum(sizes) == 50
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_client_sized_reference_sets_hold_each_candidate_about_half_the_time() -> None:
    """A client target's shadows train on as many points as the client holds. Drawn from the
    whole pool (34 candidates + 1,200 population points on the CIFAR stand-in), a candidate sat
    in 17/1,234 of them: no candidate was IN any of 8 shadows for seed 4, and LiRA's scores were
    NaN. Now a random half of the candidates, filled up from the population."""
    from fedguard.attacks.membership._common import reference_masks

    gen = torch.Generator().manual_seed(0)
    mask = reference_masks(256, 34, 1200, 17, gen)
    assert mask.shape == (256, 1234) and bool((mask.sum(dim=1) == 17).all())
    candidates = mask[:, :34].double()
    assert bool((candidates.sum(dim=1) == 17).all())  # the client's whole set: candidates
    assert not bool(mask[:, 34:].any())
    assert 0.35 < float(candidates.mean(dim=0).min()) and float(candidates.mean(dim=0).max()) < 0.65
    # a larger set: half the candidates, the rest from the population
    mask = reference_masks(8, 20, 100, 30, gen)
    assert bool((mask[:, :20].sum(dim=1) == 10).all()) and bool(
        (mask[:, 20:].sum(dim=1) == 20).all()
    )
    # half the pool or more (a global target): a uniformly random subset of the whole pool, as
    # before (the same draws for the same generator state)
    a = reference_masks(5, 40, 60, 50, torch.Generator().manual_seed(3))
    b = random_subsets(5, 100, torch.Generator().manual_seed(3), 50)
    assert torch.equal(a, b)


def test_lira_without_any_candidate_in_a_shadow_is_refused_not_nan() -> None:
    phi = torch.randn(6)
    stats = torch.randn(4, 6)
    with pytest.raises(ConfigError, match="raise n_shadows"):
        lira_scores(
            phi, stats, torch.zeros(4, 6, dtype=torch.bool), online=True, fixed_variance=True
        )
    with pytest.raises(ConfigError, match="raise n_shadows"):
        lira_scores(
            phi, stats, torch.ones(4, 6, dtype=torch.bool), online=False, fixed_variance=True
        )
