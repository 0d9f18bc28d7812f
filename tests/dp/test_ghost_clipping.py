"""Ghost-norm DP-SGD: clipped sums and per-sample norms against Opacus and the vmap reference;
the DP trainer agrees across engines; cohort noise is keyed per client."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

from fedguard.core.ghost_clipping import ghost_clipped_gradient_sum, per_sample_squared_norms
from fedguard.core.local_training import (
    ClientData,
    DPSGDConfig,
    LocalTrainingConfig,
    clipped_gradient_sum,
    stacked_plan,
    train_dp_sgd,
)
from fedguard.models.flat import FlatModel
from fedguard.rng import counter_normals, torch_generator


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.Tanh(), nn.Linear(7, 3))


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(3, 4, 2, stride=2, bias=False),
        nn.Sigmoid(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


SHAPES = {"mlp": (_mlp, (12,)), "cnn": (_cnn, (2, 6, 6))}


def _opacus_clipped_sum(module: nn.Module, x: torch.Tensor, y: torch.Tensor, clip: float):
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    gsm = GradSampleModule(module, loss_reduction="mean")
    opt = DPOptimizer(
        torch.optim.SGD(gsm.parameters(), lr=0.1),
        noise_multiplier=0.0,
        max_grad_norm=clip,
        expected_batch_size=len(y),
    )
    opt.zero_grad()
    nn.functional.cross_entropy(gsm(x), y).backward()
    opt.clip_and_accumulate()
    return torch.cat([p.summed_grad.reshape(-1) for p in gsm.parameters()])


@pytest.mark.filterwarnings("ignore:Full backward hook")
@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("ghost_conv", [None, True, False])
def test_ghost_clipped_sum_equals_opacus_and_vmap(name: str, ghost_conv: bool | None) -> None:
    build, shape = SHAPES[name]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(10, *shape, generator=g) * 2.0
    y = torch.randint(0, 3, (10,), generator=g)
    clip = 0.3
    model = FlatModel.of(build())
    plan = stacked_plan(model, shape)
    assert plan is not None
    params = model.initial_params()
    mask = torch.ones(1, 10)
    ours = ghost_clipped_gradient_sum(plan, params[None], x[None], y[None], mask, clip, ghost_conv)
    torch.testing.assert_close(
        ours[0], _opacus_clipped_sum(build(), x, y, clip), rtol=1e-5, atol=1e-6
    )

    # several clients with different parameters and padding: the vmap reference path
    params3 = params + 0.2 * torch.randn(3, params.numel(), generator=g)
    x3, y3 = torch.stack([x, x.flip(0), x * 0.5]), torch.stack([y, y.flip(0), y])
    mask3 = torch.ones(3, 10)
    mask3[1, 6:] = 0
    mask3[2, :] = 0  # a client with an empty Poisson batch
    ghost = ghost_clipped_gradient_sum(plan, params3, x3, y3, mask3, clip, ghost_conv)
    reference = clipped_gradient_sum(model, params3, x3, y3, mask3, clip)
    torch.testing.assert_close(ghost, reference, rtol=1e-5, atol=1e-6)
    assert torch.equal(ghost[2], torch.zeros_like(ghost[2]))
    # clipping was active: the unclipped sum differs
    assert not torch.allclose(reference, clipped_gradient_sum(model, params3, x3, y3, mask3, 1e9))


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_per_sample_norms_equal_norms_of_per_sample_gradients(name: str) -> None:
    from torch.func import grad, vmap

    from fedguard.core.local_training import _sample_loss

    build, shape = SHAPES[name]
    model = FlatModel.of(build())
    plan = stacked_plan(model, shape)
    assert plan is not None
    g = torch.Generator().manual_seed(3)
    params = model.initial_params()[None].repeat(2, 1)
    x = torch.randn(2, 4, *shape, generator=g)
    y = torch.randint(0, 3, (2, 4), generator=g)
    per_sample = vmap(vmap(grad(_sample_loss), in_dims=(None, 0, 0, None)), in_dims=(0, 0, 0, None))
    expected = per_sample(params, x, y, model).pow(2).sum(-1)  # (2, 4)
    for ghost_conv in (True, False):
        logits, traces = plan.forward(plan.blocks(params), x, trace=True)
        loss = nn.functional.cross_entropy(logits.reshape(8, -1), y.reshape(-1), reduction="sum")
        grads = torch.autograd.grad(loss, [t.outputs for t in traces])
        norms = per_sample_squared_norms(traces, grads, 2, ghost_conv)
        torch.testing.assert_close(norms, expected, rtol=1e-5, atol=1e-7)


def _clients(sizes: list[int], shape: tuple[int, ...]) -> ClientData:
    g = torch.Generator().manual_seed(5)
    return ClientData.pad(
        [torch.randn(n, *shape, generator=g) for n in sizes],
        [torch.randint(0, 3, (n,), generator=g) for n in sizes],
    )


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_dp_trainer_agrees_across_engines_and_cohorts(name: str) -> None:
    build, shape = SHAPES[name]
    model = FlatModel.of(build())
    p0 = model.initial_params()
    data = _clients([9, 30, 17, 4], shape)
    cfg = LocalTrainingConfig(local_epochs=2, batch_size=6, learning_rate=0.2, momentum=0.5)
    dp = DPSGDConfig(noise_multiplier=0.8, clip_norm=0.5)
    ids = [2, 0, 3, 1]
    stacked = train_dp_sgd(model, p0, data, ids, cfg, dp, 7, 2, engine="stacked")
    vmapped = train_dp_sgd(model, p0, data, ids, cfg, dp, 7, 2, engine="vmap")
    torch.testing.assert_close(stacked, vmapped, rtol=1e-4, atol=1e-6)
    alone = train_dp_sgd(model, p0, data, [0], cfg, dp, 7, 2)
    torch.testing.assert_close(stacked[1], alone[0], rtol=1e-5, atol=1e-7)
    # the client-by-client generators (the reference noise path) give the same clean part
    gens = [torch_generator(7, 2, c, "x") for c in ids]
    quiet = DPSGDConfig(noise_multiplier=1e-12, clip_norm=0.5)
    a = train_dp_sgd(model, p0, data, ids, cfg, quiet, 7, 2, noise=gens)
    b = train_dp_sgd(model, p0, data, ids, cfg, quiet, 7, 2)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_cohort_noise_is_keyed_per_client_and_standard_normal() -> None:
    clients = np.array([5, 2, 9, 40])
    z = counter_normals(3, 1, "dp_sgd_noise", clients, 4, 1001)  # odd size
    assert z.shape == (4, 1001) and z.dtype == torch.float64
    alone = counter_normals(3, 1, "dp_sgd_noise", clients[2:3], 4, 1001)
    assert torch.equal(z[2], alone[0])  # bit for bit, whoever trains with it
    assert not torch.equal(z[2], counter_normals(3, 1, "dp_sgd_noise", clients[2:3], 5, 1001)[0])
    assert not torch.equal(z[2], counter_normals(3, 2, "dp_sgd_noise", clients[2:3], 4, 1001)[0])
    assert scipy.stats.kstest(z.numpy().ravel(), "norm").pvalue > 1e-3
    corr = np.corrcoef(z.numpy())
    assert np.abs(corr[np.triu_indices(4, 1)]).max() < 0.15


def test_secure_noise_differs_between_calls() -> None:
    model = FlatModel.of(_mlp())
    p0 = model.initial_params()
    data = _clients([8], (12,))
    cfg = LocalTrainingConfig(batch_size=8, learning_rate=1.0)
    dp = DPSGDConfig(noise_multiplier=1.0, clip_norm=1.0)
    a = train_dp_sgd(model, p0, data, [0], cfg, dp, 0, 0, secure_noise=True)
    b = train_dp_sgd(model, p0, data, [0], cfg, dp, 0, 0, secure_noise=True)
    seeded = train_dp_sgd(model, p0, data, [0], cfg, dp, 0, 0)
    assert not torch.equal(a, b) and not torch.equal(a, seeded)
    noise = ((a - b) * 8).double().numpy().ravel() / np.sqrt(2.0)
    assert scipy.stats.kstest(noise, "norm").pvalue > 1e-3


# ------------------------------------------------------------------ issue 17: CNN / LeNet-5 path


def _lenet() -> nn.Module:
    from fedguard.models.lenet import LeNet5

    torch.manual_seed(0)
    return LeNet5().build((1, 12, 12), 3)


@pytest.mark.filterwarnings("ignore:Full backward hook")
def test_lenet5_gets_the_stacked_plan_and_opacus_clipped_sum() -> None:
    """LeNet-5 nests its feature block in a Sequential: it runs on the stacked plan (not the
    vmap fallback) and its ghost-norm clipped sum equals Opacus'."""
    shape = (1, 12, 12)
    model = FlatModel.of(_lenet())
    plan = stacked_plan(model, shape)
    assert plan is not None
    g = torch.Generator().manual_seed(4)
    x = torch.randn(6, *shape, generator=g)
    y = torch.randint(0, 3, (6,), generator=g)
    params = model.initial_params()
    ours = ghost_clipped_gradient_sum(plan, params[None], x[None], y[None], torch.ones(1, 6), 0.05)
    torch.testing.assert_close(
        ours[0], _opacus_clipped_sum(_lenet(), x, y, 0.05), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("ghost_conv", [True, False])
def test_conv_norms_are_exact_across_chunk_boundaries(monkeypatch, ghost_conv: bool) -> None:
    """The convolution norms run in chunks of samples; chunks that split a client's batch and
    a last partial chunk give the same norms as the per-sample gradients."""
    from torch.func import grad, vmap

    from fedguard.core import ghost_clipping
    from fedguard.core.local_training import _sample_loss

    monkeypatch.setattr(ghost_clipping, "_CONV_CHUNK", 3)
    monkeypatch.setattr(ghost_clipping, "_GRAM_FLOATS", 2 * 36**2)  # 2 samples of 6×6 maps
    build, shape = SHAPES["cnn"]
    model = FlatModel.of(build())
    plan = stacked_plan(model, shape)
    assert plan is not None
    g = torch.Generator().manual_seed(8)
    params = model.initial_params() + 0.1 * torch.randn(3, model.layout.dim, generator=g)
    x = torch.randn(3, 5, *shape, generator=g)  # 15 samples: chunks of 3 (or 2), last partial
    y = torch.randint(0, 3, (3, 5), generator=g)
    per_sample = vmap(vmap(grad(_sample_loss), in_dims=(None, 0, 0, None)), in_dims=(0, 0, 0, None))
    expected = per_sample(params, x, y, model).pow(2).sum(-1)  # (3, 5)
    logits, traces = plan.forward(plan.blocks(params), x, trace=True)
    loss = nn.functional.cross_entropy(logits.reshape(15, -1), y.reshape(-1), reduction="sum")
    grads = torch.autograd.grad(loss, [t.outputs for t in traces])
    norms = per_sample_squared_norms(traces, grads, 3, ghost_conv)
    torch.testing.assert_close(norms, expected, rtol=1e-5, atol=1e-7)


def test_norm_dispatch_by_layer_type() -> None:
    from fedguard.core.ghost_clipping import (
        SQUARED_NORMS,
        linear_squared_norms,
        register_squared_norms,
        squared_norms_of,
    )

    class MyLinear(nn.Linear):
        pass

    assert squared_norms_of(MyLinear(2, 3)) is linear_squared_norms  # a subclass: its base's
    with pytest.raises(TypeError, match="LayerNorm"):
        squared_norms_of(nn.LayerNorm(3))
    try:
        register_squared_norms(nn.LayerNorm, linear_squared_norms)
        assert squared_norms_of(nn.LayerNorm(3)) is linear_squared_norms
    finally:
        SQUARED_NORMS.pop(nn.LayerNorm)


def test_slot_levels_are_the_cheapest_cut() -> None:
    """The pass cut points minimise slots·cost + passes·pass cost (brute force over cuts)."""
    import itertools

    from fedguard.core.poisson_passes import slot_levels

    def cost(levels: list[int], sizes: np.ndarray, macs: int, per_pass: int) -> int:
        total, low = 0, 0
        for j, high in enumerate(levels):
            clients = len(sizes) if j == 0 else int((sizes > low).sum())
            total += clients * (high - low) * macs + (per_pass if j else 0)
            low = high
        return total

    rng = np.random.default_rng(1)
    for _ in range(200):
        sizes = rng.integers(0, 15, int(rng.integers(1, 12)))
        macs, per_pass = int(rng.choice([1, 10, 1000])), int(rng.choice([0, 5, 100, 10**6]))
        max_passes = int(rng.integers(1, 5))
        got = slot_levels(sizes.tolist(), macs, max_passes, per_pass)
        top = max(int(sizes.max()), 1)
        assert got[-1] == top and len(got) <= max_passes
        assert all(a < b for a, b in itertools.pairwise(got))
        cuts = sorted({int(s) for s in sizes if 0 < s < top})
        best = min(
            cost([*cut, top], sizes, macs, per_pass)
            for g in range(max_passes)
            for cut in itertools.combinations(cuts, g)
        )
        assert cost(got, sizes, macs, per_pass) == best
    assert slot_levels([0, 0], 10) == [1]  # empty batches still take one (masked) slot


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_dp_trainer_in_passes_equals_one_padded_pass(monkeypatch, name: str) -> None:
    """Running a step's Poisson batches in several passes (forced: a pass costs nothing) gives
    the clipped sums, hence the deltas, of one pass padded to the largest batch."""
    from fedguard.core import poisson_passes

    build, shape = SHAPES[name]
    model = FlatModel.of(build())
    p0 = model.initial_params()
    data = _clients([9, 30, 17, 4, 25, 12], shape)
    cfg = LocalTrainingConfig(local_epochs=2, batch_size=6, learning_rate=0.2, momentum=0.5)
    dp = DPSGDConfig(noise_multiplier=0.8, clip_norm=0.5)
    ids = [2, 0, 3, 1, 5, 4]
    monkeypatch.setattr(poisson_passes, "MAX_PASSES", 1)
    padded = train_dp_sgd(model, p0, data, ids, cfg, dp, 7, 2, engine="stacked")
    calls = []
    original = poisson_passes.slot_levels

    def spy(sizes, macs, max_passes=None, pass_cost=None):
        levels = original(sizes, macs, 4, 0)
        calls.append(levels)
        return levels

    import fedguard.core.local_training as local_training

    monkeypatch.setattr(local_training, "slot_levels", spy)
    passes = train_dp_sgd(model, p0, data, ids, cfg, dp, 7, 2, engine="stacked")
    assert any(len(levels) > 1 for levels in calls)  # several passes did run
    torch.testing.assert_close(passes, padded, rtol=1e-5, atol=1e-6)
    vmapped = train_dp_sgd(model, p0, data, ids, cfg, dp, 7, 2, engine="vmap")
    torch.testing.assert_close(passes, vmapped, rtol=1e-4, atol=1e-6)


def test_cohort_noise_in_blocks_equals_the_one_shot_formula() -> None:
    """The noise is drawn in column blocks: across block boundaries (and an odd size) it is
    SplitMix64 + Box–Muller of the whole row at once, and a client's row is bit for bit the
    same alone or in a cohort."""
    from fedguard import rng

    clients = np.array([7, 3, 11])
    size = 2 * rng._NOISE_BLOCK + 2 * 37 + 1  # two full blocks, a partial one, an odd size
    z = counter_normals(5, 2, "dp_sgd_noise", clients, 3, size)
    half = (size + 1) // 2
    base = np.uint64(rng.stream_seed(5, 2, rng.GLOBAL, "dp_sgd_noise"))
    with np.errstate(over="ignore"):
        per_client = rng._splitmix64(base ^ rng._splitmix64(clients.astype(np.uint64)))
        position = np.arange(2 * half, dtype=np.uint64) | (np.uint64(3) << np.uint64(40))
        keys = rng._splitmix64(per_client[:, None] ^ rng._splitmix64(position)[None, :])
    uniform = torch.from_numpy((keys >> np.uint64(11)).astype(np.float64))
    radius = torch.sqrt(-2.0 * torch.log((uniform[:, :half] + 1.0) * 2.0**-53))
    angle = uniform[:, half:] * (2.0 * np.pi * 2.0**-53)
    expected = torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)], 1)[:, :size]
    torch.testing.assert_close(z, expected, rtol=0, atol=1e-12)
    alone = counter_normals(5, 2, "dp_sgd_noise", clients[1:2], 3, size)
    assert torch.equal(z[1], alone[0])


@pytest.mark.parametrize(("keep_bytes", "chunk"), [(1 << 26, 6), (1 << 26, 3), (0, 6)])
def test_kept_per_sample_conv_gradients_give_the_clipped_sum(
    monkeypatch, keep_bytes: int, chunk: int
) -> None:
    """Convolutions whose direct norm is used keep their per-sample gradients (computed in
    channels-last chunks that split the batch — 2 rows of 3 clients, the last chunk partial, or
    single rows that need no copy) and weight them into the clipped sum; with no memory for
    them the norm is computed alone and the sum by book-keeping. All equal the vmap reference
    and the per-sample gradients' norms."""
    from torch.func import grad, vmap

    from fedguard.core import ghost_clipping
    from fedguard.core.local_training import _sample_loss

    monkeypatch.setattr(ghost_clipping, "_SAMPLE_CHUNK", chunk)  # rows of 3 clients per chunk
    monkeypatch.setattr(ghost_clipping, "_KEEP_BYTES", keep_bytes)
    build, shape = SHAPES["cnn"]
    model = FlatModel.of(build())
    plan = stacked_plan(model, shape)
    assert plan is not None
    g = torch.Generator().manual_seed(9)
    params = model.initial_params() + 0.3 * torch.randn(3, model.layout.dim, generator=g)
    x = torch.randn(3, 5, *shape, generator=g) * 2.0
    y = torch.randint(0, 3, (3, 5), generator=g)
    mask = torch.ones(3, 5)
    mask[1, 3:] = 0
    _, traces = plan.forward(plan.blocks(params), x, trace=True)
    kept = [ghost_clipping.keeps_per_sample_gradients(t, 3) for t in traces]
    assert kept == [bool(keep_bytes), bool(keep_bytes), False]  # two convolutions, a Linear
    assert not any(ghost_clipping.keeps_per_sample_gradients(t, 3, True) for t in traces)
    ours = ghost_clipped_gradient_sum(plan, params, x, y, mask, 0.2)
    torch.testing.assert_close(
        ours, clipped_gradient_sum(model, params, x, y, mask, 0.2), rtol=1e-5, atol=1e-6
    )
    # the kept gradients are the per-sample gradients, and their norms those gradients' norms
    per_sample = vmap(vmap(grad(_sample_loss), in_dims=(None, 0, 0, None)), in_dims=(0, 0, 0, None))
    expected = per_sample(params, x, y, model)  # (3, 5, d)
    logits, traces = plan.forward(plan.blocks(params), x, trace=True)
    loss = nn.functional.cross_entropy(logits.reshape(15, -1), y.reshape(-1), reduction="sum")
    grads = torch.autograd.grad(loss, [t.outputs for t in traces])
    norms, weights, bias = ghost_clipping.conv2d_per_sample_gradients(traces[0], grads[0], 3)
    first = model.layout.sizes[0]  # the first convolution's weight, then its bias
    assert weights.shape == (3, 5, 3, 2, 3, 3)  # (k, batch, out, C, kh, kw)
    flat = weights.reshape(3, 5, -1)
    torch.testing.assert_close(flat, expected[..., :first], rtol=1e-5, atol=1e-6)
    assert bias is not None
    torch.testing.assert_close(bias, expected[..., first : first + 3], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        norms, expected[..., : first + 3].pow(2).sum(-1), rtol=1e-5, atol=1e-7
    )


def test_dp_trainer_in_client_groups_equals_one_group(monkeypatch) -> None:
    """On a CPU each pass runs in cache-sized groups of clients (forced here: one client per
    group, with several passes): the deltas equal those of all clients at once."""
    from fedguard.core import local_training, poisson_passes, stacked_gradients

    build, shape = SHAPES["cnn"]
    model = FlatModel.of(build())
    p0 = model.initial_params()
    data = _clients([9, 30, 17, 4, 25, 12], shape)
    cfg = LocalTrainingConfig(local_epochs=2, batch_size=6, learning_rate=0.2, momentum=0.5)
    dp = DPSGDConfig(noise_multiplier=0.8, clip_norm=0.5)
    ids = [2, 0, 3, 1, 5, 4]
    levels = []
    original = poisson_passes.slot_levels

    def spy(sizes, macs, max_passes=None, pass_cost=None):
        levels.append(original(sizes, macs, 4, 0))
        return levels[-1]

    monkeypatch.setattr(local_training, "slot_levels", spy)
    whole = train_dp_sgd(model, p0, data, ids, cfg, dp, 7, 2, engine="stacked")
    groups = []
    original_groups = stacked_gradients.clients_per_group

    def one_each(plan, k, batch, element_bytes):
        groups.append(original_groups(plan, k, batch, element_bytes))
        return 1

    monkeypatch.setattr(local_training, "clients_per_group", one_each)
    split = train_dp_sgd(model, p0, data, ids, cfg, dp, 7, 2, engine="stacked")
    assert any(len(cut) > 1 for cut in levels) and any(g > 1 for g in groups)
    torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-6)
