"""Gradient-inversion attacks on digits, MLP 64-32-10 (untrained), small scale."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pa_util import digits, digits_task, local_sgd, mlp, single_client_view
from torch import nn

from fedguard import registry
from fedguard.attacks.inversion._common import (
    AGGREGATE_ID,
    InversionOutput,
    ParamLayout,
    Reconstruction,
    batch_gradient,
    module_params,
    score_output,
)
from fedguard.attacks.inversion.analytic import (
    AnalyticInversion,
    analytic_single,
    fc_input_candidates,
)
from fedguard.attacks.inversion.dlg import DLG
from fedguard.attacks.inversion.inverting_gradients import InvertingGradients
from fedguard.attacks.inversion.label_recovery import LabelRecovery, count_labels, idlg_label
from fedguard.attacks.inversion.sme import SME
from fedguard.errors import ConfigError, IncompatibleError
from fedguard.types import ServerView, Truth

X, Y = digits()


def _truth(x: torch.Tensor, y: torch.Tensor, client_id: int = 3) -> Truth:
    return Truth(malicious_ids=(), private_batches={client_id: (x, y)})


def test_registry_resolves_every_privacy_attack() -> None:
    for name in ("analytic", "label_recovery", "dlg", "inverting_gradients", "sme"):
        cls = registry.get("privacy_attack", name)
        assert cls.registry_name == name
    assert isinstance(registry.create("privacy_attack", "sme", iterations=5), SME)
    with pytest.raises(ConfigError, match="iterations must be a positive integer"):
        InvertingGradients(iterations=0)
    with pytest.raises(ConfigError, match="alpha_init must be in"):
        SME(alpha_init=1.5)


def test_analytic_kernel_is_exact_on_a_rank_one_gradient() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, generator=gen, dtype=torch.float64)
    delta = torch.randn(32, generator=gen, dtype=torch.float64)
    delta[::3] = 0.0  # inactive units must be ignored
    assert torch.allclose(analytic_single(torch.outer(delta, x), delta), x, atol=1e-14)
    cands = fc_input_candidates(torch.outer(delta, x), delta, 1e-9)
    assert cands.shape == (int((delta != 0).sum()), 64)
    assert torch.allclose(cands, x.expand_as(cands), atol=1e-12)


def test_analytic_recovers_every_image_above_60_db() -> None:
    model = mlp(0)
    attack = AnalyticInversion()
    for i in range(10):
        xb, yb = X[7 * i : 7 * i + 1], Y[7 * i : 7 * i + 1]
        view = single_client_view(model, xb, yb)
        m = attack.metrics(attack.observe(view, digits_task(model)), _truth(xb, yb))
        assert m["psnr_db_min"] >= 60.0
        assert m["label_accuracy"] == 1.0
        assert m["ssim"] > 0.999


def test_analytic_refuses_models_without_a_leading_fc_layer_with_bias() -> None:
    view = single_client_view(mlp(0), X[:1], Y[:1])
    conv = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 2, 3), nn.Flatten())
    conv = nn.Sequential(conv, nn.Linear(72, 10))
    no_bias = nn.Sequential(nn.Linear(64, 32, bias=False), nn.ReLU(), nn.Linear(32, 10))
    for model in (conv, no_bias):
        with pytest.raises(IncompatibleError, match="fully connected with a bias"):
            AnalyticInversion().observe(view, digits_task(model))


def test_idlg_label_recovery_is_exact_at_batch_one() -> None:
    model = mlp(1)
    attack = LabelRecovery()
    hits = 0
    for i in range(30):
        xb, yb = X[i : i + 1], Y[i : i + 1]
        out = attack.observe(single_client_view(model, xb, yb), digits_task(model))
        hits += int(attack.metrics(out, _truth(xb, yb))["label_accuracy"] == 1.0)
    assert hits == 30


def test_label_counting_kernel_closed_form() -> None:
    # mean-loss bias gradient p̄ − n_c/B with the exact p̄ gives back the counts exactly
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    counts = torch.tensor([0, 3, 1, 2])
    grad = probs - counts.double() / 6
    assert torch.equal(count_labels(grad, 6, probs), counts)
    assert idlg_label(torch.tensor([0.1, 0.3, -0.9, 0.5])) == 2


def test_label_counting_on_a_batch_of_eight() -> None:
    model = mlp(2)
    xb, yb = X[100:108], Y[100:108]
    attack = LabelRecovery()
    m = attack.metrics(
        attack.observe(single_client_view(model, xb, yb), digits_task(model)), _truth(xb, yb)
    )
    assert m["label_accuracy"] >= 0.875


def test_inverting_gradients_batch_one_and_four() -> None:
    model = mlp(0)
    attack = InvertingGradients(iterations=300)
    for batch, floor in ((1, 30.0), (4, 20.0)):
        xb, yb = X[20 : 20 + batch], Y[20 : 20 + batch]
        out = attack.observe(single_client_view(model, xb, yb), digits_task(model))
        m = attack.metrics(out, _truth(xb, yb))
        assert m["psnr_db"] >= floor, (batch, m)
        assert m["label_accuracy"] == 1.0


def test_dlg_recovers_a_single_image() -> None:
    model = mlp(0)
    xb, yb = X[40:41], Y[40:41]
    attack = DLG(iterations=100)
    m = attack.metrics(
        attack.observe(single_client_view(model, xb, yb), digits_task(model)), _truth(xb, yb)
    )
    assert m["psnr_db"] >= 30.0


def test_sme_beats_inverting_gradients_on_multi_step_fedavg() -> None:
    model = mlp(0)
    xb, yb = X[10:14], Y[10:14]
    view = single_client_view(model, xb, yb, lr=0.5, steps=20)
    task = digits_task(model)
    ig, sme = InvertingGradients(iterations=300), SME(iterations=300)
    m_ig = ig.metrics(ig.observe(view, task), _truth(xb, yb))
    out = sme.observe(view, task)
    m_sme = sme.metrics(out, _truth(xb, yb))
    assert m_sme["psnr_db"] >= m_ig["psnr_db"] + 2.0, (m_sme, m_ig)
    assert 0.0 <= out.reconstructions[0].info["alpha"] <= 1.0


def test_sme_surrogate_at_alpha_zero_is_inverting_gradients() -> None:
    # the surrogate objective at α = 0 is the inverting-gradients objective at w₀
    model = mlp(0)
    layout = ParamLayout.from_module(model)
    w0 = module_params(model)
    delta = local_sgd(model, w0, X[:2], Y[:2], 0.5, 5)
    g_sur = batch_gradient(model, layout, w0 + 0.0 * delta, X[:2], Y[:2], create_graph=False)
    g_ig = batch_gradient(model, layout, w0, X[:2], Y[:2], create_graph=False)
    assert torch.equal(g_sur, g_ig)


def test_single_step_update_is_minus_lr_times_gradient() -> None:
    model = mlp(3)
    layout = ParamLayout.from_module(model)
    w0 = module_params(model)
    g = batch_gradient(model, layout, w0, X[:5], Y[:5], create_graph=False)
    assert torch.allclose(local_sgd(model, w0, X[:5], Y[:5], 0.3, 1), -0.3 * g, atol=1e-7)


def test_same_seed_same_reconstruction_bit_for_bit() -> None:
    model = mlp(0)
    view = single_client_view(model, X[:2], Y[:2])
    a = InvertingGradients(iterations=20, seed=7).observe(view, digits_task(model))
    b = InvertingGradients(iterations=20, seed=7).observe(view, digits_task(model))
    c = InvertingGradients(iterations=20, seed=8).observe(view, digits_task(model))
    assert torch.equal(a.reconstructions[0].inputs, b.reconstructions[0].inputs)
    assert not torch.equal(a.reconstructions[0].inputs, c.reconstructions[0].inputs)


def test_secure_aggregation_sum_is_attacked_and_reported_as_such() -> None:
    model = mlp(0)
    w0 = module_params(model)
    d1 = local_sgd(model, w0, X[:1], Y[:1], 0.1, 1)
    d2 = local_sgd(model, w0, X[1:2], Y[1:2], 0.1, 1)
    view = ServerView(
        round=0,
        global_params=w0,
        client_ids=(0, 1),
        updates=None,
        update_sum=d1 + d2,
        num_samples=(1, 1),
        training={"lr": 0.1, "local_steps": 1, "batch_size": 1},
    )
    attack = InvertingGradients(iterations=200)
    out = attack.observe(view, digits_task(model))
    assert out.from_aggregate and out.n_clients_in_aggregate == 2
    assert out.reconstructions[0].client_id == AGGREGATE_ID
    assert out.reconstructions[0].inputs.shape == (2, 64)
    truth = Truth(malicious_ids=(), private_batches={0: (X[:1], Y[:1]), 1: (X[1:2], Y[1:2])})
    m = attack.metrics(out, truth)
    assert m["from_aggregate"] == 1.0 and math.isfinite(m["psnr_db"])


def test_label_counting_gives_every_negative_class_a_sample() -> None:
    # a poor p̄ estimate must not drop a class whose bias gradient is negative (proof of presence)
    grad = torch.tensor([-0.05, -0.04, 0.03, 0.02, 0.04], dtype=torch.float64)
    probs = torch.full((5,), 0.2, dtype=torch.float64)
    counts = count_labels(grad, 3, probs)
    assert counts.sum() == 3 and counts[0] >= 1 and counts[1] >= 1


def test_reconstruction_grid_layout_and_png(tmp_path) -> None:
    import matplotlib.pyplot as plt

    from fedguard.attacks.inversion.grid import reconstruction_grid, save_reconstruction_grid

    model = mlp(0)
    xb, yb = X[:3], Y[:3]
    grid = reconstruction_grid(xb.flip(0), xb, (1, 8, 8))
    assert grid.shape == (2 * 9 + 1, 3 * 9 + 1)
    assert np.allclose(grid[1:9, 1:9], xb[0].reshape(8, 8).numpy())
    assert np.allclose(grid[10:18, 1:9], xb[0].reshape(8, 8).numpy())  # matched, not flipped
    out = AnalyticInversion().observe(single_client_view(model, xb[:1], yb[:1]), digits_task(model))
    png = save_reconstruction_grid(out, _truth(xb[:1], yb[:1]), tmp_path / "grid.png")
    assert plt.imread(png).shape[:2] == (19, 10)


def test_tabular_data_without_a_range() -> None:
    from pa_util import seeded_init_
    from sklearn.datasets import load_breast_cancer

    from fedguard.attacks.inversion._common import InversionTask

    data = load_breast_cancer()
    feats = (data.data - data.data.mean(0)) / data.data.std(0)
    xt = torch.as_tensor(feats[:2], dtype=torch.float32)
    yt = torch.as_tensor(data.target[:2])
    model = seeded_init_(nn.Sequential(nn.Linear(30, 16), nn.Tanh(), nn.Linear(16, 2)), 0)
    task = InversionTask(model=model, input_shape=(30,), n_classes=2, data_range=None)
    view = single_client_view(model, xt[:1], yt[:1])
    analytic = AnalyticInversion()
    m = analytic.metrics(analytic.observe(view, task), _truth(xt[:1], yt[:1]))
    assert m["exact_match_rate"] == 1.0 and m["feature_mae"] < 1e-4 and "ssim" not in m
    ig = InvertingGradients(iterations=50)
    out = ig.observe(view, task)
    assert out.data_range is None and torch.isfinite(out.reconstructions[0].inputs).all()
    assert math.isfinite(ig.metrics(out, _truth(xt[:1], yt[:1]))["feature_mae"])


def test_inversion_scores_sit_beside_trivial_baselines() -> None:
    """Guessing class-mean images is not a recovery; an exact reconstruction is, per sample."""
    x, y = X[:6], Y[:6]
    others = (X[6:300], Y[6:300])
    truth = Truth(malicious_ids=(), private_batches={3: (x, y), 4: others})
    pool_x, pool_y = torch.cat([x, others[0]]), torch.cat([y, others[1]])
    class_means = torch.stack([pool_x[pool_y == c].mean(dim=0) for c in y.tolist()])
    exact = x.clone()
    exact[:2] = class_means[:2]  # two samples only as good as the class-mean baseline

    def output(inputs: torch.Tensor) -> InversionOutput:
        rec = Reconstruction(3, inputs, y, 0.0)
        return InversionOutput("test", (rec,), False, 1, (0.0, 1.0), (1, 8, 8), 10)

    baseline = score_output(output(class_means), truth)
    assert baseline["n_recovered"] == 0 and baseline["recovered_fraction"] == 0
    assert baseline["psnr_db"] == pytest.approx(baseline["baseline_class_mean_psnr_db"])
    assert baseline["baseline_class_mean_psnr_db"] > baseline["baseline_mean_psnr_db"]
    partial = score_output(output(exact), truth)
    assert partial["n_recovered"] == 4 and partial["recovered_fraction"] == pytest.approx(4 / 6)
    assert partial["baseline_mean_psnr_db"] == pytest.approx(baseline["baseline_mean_psnr_db"])
