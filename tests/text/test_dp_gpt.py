"""Record-level DP-SGD through the transformer: per-sample gradients and the clipped sum of the
vmap reference and of ghost clipping equal Opacus' (full model and LoRA adapters)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedguard.core.ghost_norms_text import (
    embedding_squared_norms,
    ghost_clipped_gradient_sum,
    layer_norm_squared_norms,
    linear_squared_norms,
    supports,
)
from fedguard.core.local_training import clipped_gradient_sum
from fedguard.models.flat import FlatModel
from fedguard.models.gpt import GPT
from fedguard.models.losses import per_sample_cross_entropy
from fedguard.text.tokenizer import VOCAB_SIZE


def _model(adapter: str) -> nn.Module:
    spec = GPT(n_layer=2, n_head=2, d_model=16, context=8, adapter=adapter, lora_rank=2)
    module = spec.build((8,), VOCAB_SIZE)
    torch.manual_seed(0)
    spec.initialize(module)
    if adapter != "none":  # non-zero B, so that A has a gradient too
        with torch.no_grad():
            for name, p in module.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.5)
    return module


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    w = torch.randint(0, 40, (6, 9), generator=gen)  # small id range: repeated tokens
    return w[:, :-1], w[:, 1:]


def _opacus(
    module: nn.Module, x: torch.Tensor, y: torch.Tensor, clip: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Opacus' per-sample gradients ``(B, d)`` and clipped sum ``(d,)`` (layout order)."""
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    gsm = GradSampleModule(module, loss_reduction="mean")
    opt = DPOptimizer(
        torch.optim.SGD(gsm.parameters(), lr=0.1),
        noise_multiplier=0.0,
        max_grad_norm=clip,
        expected_batch_size=len(x),
    )
    opt.zero_grad()
    per_sample_cross_entropy(gsm(x), y).mean().backward()
    per_sample = torch.cat([p.grad_sample.reshape(len(x), -1) for p in gsm.parameters()], dim=1)
    opt.clip_and_accumulate()
    clipped = torch.cat([p.summed_grad.reshape(-1) for p in gsm.parameters()])
    gsm._close()
    return per_sample, clipped


@pytest.mark.filterwarnings("ignore:Full backward hook")
@pytest.mark.parametrize("adapter", ["none", "lora"])
def test_clipped_gradient_sums_equal_opacus(adapter: str) -> None:
    module = _model(adapter)
    model = FlatModel.of(module)
    params = model.initial_params()
    x, y = _batch()
    norms = _opacus(_model(adapter), x, y, 1e9)[0].norm(dim=1)
    clip = float(norms.median())  # half of the samples are clipped
    per_sample, opacus_sum = _opacus(_model(adapter), x, y, clip)
    assert per_sample.shape[1] == params.numel()
    mask = torch.ones(1, len(x))
    ours = clipped_gradient_sum(model, params[None], x[None], y[None], mask, clip)[0]
    torch.testing.assert_close(ours, opacus_sum, rtol=1e-4, atol=1e-6)
    assert supports(model)
    ghost = ghost_clipped_gradient_sum(model, params, x, y, mask[0], clip)
    torch.testing.assert_close(ghost, opacus_sum, rtol=1e-4, atol=1e-6)
    # padding rows contribute nothing
    half = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    part = ghost_clipped_gradient_sum(model, params, x, y, half, clip)
    factor = torch.clamp(clip / norms, max=1.0) * half
    torch.testing.assert_close(part, (per_sample * factor[:, None]).sum(0), rtol=1e-4, atol=1e-6)


def test_ghost_norm_kernels_equal_per_sample_gradients() -> None:
    gen = torch.Generator().manual_seed(2)
    b = 3
    linear, embedding, norm = nn.Linear(4, 6), nn.Embedding(7, 4), nn.LayerNorm(4)
    with torch.no_grad():
        norm.weight.normal_(generator=gen)
    ids = torch.tensor([[1, 1, 2, 1, 3], [0, 6, 6, 6, 6], [5, 4, 3, 2, 1]])
    for sample in range(b):
        e = embedding(ids[sample : sample + 1])  # (1, T, 4)
        n = norm(e)
        out = linear(n)
        grad_out = torch.randn(out.shape, generator=gen)
        ge, gn, go = torch.autograd.grad(out, [e, n, out], grad_out, retain_graph=True)
        grads = torch.autograd.grad(
            out, [linear.weight, linear.bias, embedding.weight, norm.weight, norm.bias], grad_out
        )
        want = [float(g.pow(2).sum()) for g in grads]
        got_linear = linear_squared_norms(n.detach(), go, bias=True)
        got_embedding = embedding_squared_norms(ids[sample : sample + 1], ge)
        got_norm = layer_norm_squared_norms(e.detach(), gn, norm, True, True)
        assert float(got_linear[0]) == pytest.approx(want[0] + want[1], rel=1e-5)
        assert float(got_embedding[0]) == pytest.approx(want[2], rel=1e-5)
        assert float(got_norm[0]) == pytest.approx(want[3] + want[4], rel=1e-5)


@pytest.mark.parametrize("adapter", ["none", "lora"])
def test_dp_sgd_trainer_takes_the_ghost_path_for_the_gpt_and_equals_the_vmap_path(
    adapter, monkeypatch
) -> None:
    from fedguard.core import ghost_norms_text
    from fedguard.core.ghost_norms_text import applies_each_layer_once
    from fedguard.core.local_training import (
        ClientData,
        DPSGDConfig,
        LocalTrainingConfig,
        train_dp_sgd,
    )

    model = FlatModel.of(_model(adapter))
    gen = torch.Generator().manual_seed(3)
    windows = [torch.randint(0, 40, (n, 9), generator=gen) for n in (6, 3)]
    data = ClientData.pad([w[:, :-1].float() for w in windows], [w[:, 1:] for w in windows])
    assert applies_each_layer_once(model, data.features[0, :1])
    monkeypatch.setattr(ghost_norms_text, "GHOST_MIN_PARAMETERS", 0)  # this tiny GPT too
    calls = []
    original = ghost_norms_text.ghost_clipped_gradient_sum
    monkeypatch.setattr(
        ghost_norms_text,
        "ghost_clipped_gradient_sum",
        lambda *args: calls.append(1) or original(*args),
    )
    cfg = LocalTrainingConfig(batch_size=3, learning_rate=0.5)
    dp = DPSGDConfig(noise_multiplier=0.5, clip_norm=0.05)  # small C: every sample clipped
    p0 = model.initial_params()
    ghost = train_dp_sgd(model, p0, data, [0, 1], cfg, dp, 0, 0)
    assert calls, "the trainer took the ghost path"
    calls.clear()
    vmap = train_dp_sgd(model, p0, data, [0, 1], cfg, dp, 0, 0, engine="vmap")
    assert not calls
    assert ghost.abs().max() > 0
    torch.testing.assert_close(ghost, vmap, rtol=1e-4, atol=1e-6)


def test_recurrent_and_small_models_are_left_to_the_vmap_path() -> None:
    from fedguard.core.ghost_norms_text import applies_each_layer_once, clipped_gradient_sums
    from fedguard.models.char_lstm import CharLSTM

    model = FlatModel.of(CharLSTM(embedding=4, hidden=8, layers=1).build((5,), 81))
    assert not applies_each_layer_once(model, torch.zeros(1, 5))
    lora = FlatModel.of(_model("lora"))  # a few hundred adapter parameters: vmap is cheaper
    x, y = _batch()
    params = lora.initial_params()[None]
    assert clipped_gradient_sums(lora, params, x[None], y[None], torch.ones(1, 6), 1.0) is None
