"""Shared helpers of the privacy-attack tests: digits data, a seeded MLP, FL views."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from torch import Tensor, nn

from fedguard.attacks.inversion._common import InversionTask, ParamLayout, module_params
from fedguard.types import ServerView


def digits() -> tuple[Tensor, Tensor]:
    """sklearn digits, pixels scaled to [0, 1]: ``(1797, 64)`` float32 and ``(1797,)`` int64."""
    data = load_digits()
    x = torch.as_tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.as_tensor(data.target, dtype=torch.long)
    return x, y


def seeded_init_(model: nn.Module, seed: int) -> nn.Module:
    """PyTorch's default Linear init U(±1/√fan_in), drawn from a seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                bound = module.in_features**-0.5
                module.weight.copy_(
                    (torch.rand(module.weight.shape, generator=gen) * 2 - 1) * bound
                )
                if module.bias is not None:
                    module.bias.copy_(
                        (torch.rand(module.bias.shape, generator=gen) * 2 - 1) * bound
                    )
    return model


def mlp(seed: int = 0, hidden: int = 32) -> nn.Module:
    """MLP 64-hidden-10 with ReLU."""
    return seeded_init_(
        nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10)), seed
    )


def digits_task(model: nn.Module) -> InversionTask:
    return InversionTask(
        model=model, input_shape=(64,), n_classes=10, data_range=(0.0, 1.0), image_shape=(1, 8, 8)
    )


def local_sgd(
    model: nn.Module, params: Tensor, x: Tensor, y: Tensor, lr: float, steps: int
) -> Tensor:
    """Full-batch local SGD from ``params``; returns the update ``θ_local − θ_global``."""
    layout = ParamLayout.from_module(model)
    theta = params.clone()
    for _ in range(steps):
        theta = theta.detach().requires_grad_(True)
        logits = torch.func.functional_call(model, layout.unflatten(theta), (x,))
        loss = nn.functional.cross_entropy(logits, y)
        (g,) = torch.autograd.grad(loss, theta)
        theta = theta.detach() - lr * g
    return theta.detach() - params


def single_client_view(
    model: nn.Module, x: Tensor, y: Tensor, lr: float = 0.1, steps: int = 1, client_id: int = 3
) -> ServerView:
    params = module_params(model)
    delta = local_sgd(model, params, x, y, lr, steps)
    return ServerView(
        round=0,
        global_params=params,
        client_ids=(client_id,),
        updates=delta[None],
        update_sum=delta,
        num_samples=(x.shape[0],),
        training={"lr": lr, "local_steps": steps, "batch_size": x.shape[0]},
    )


def dp_sgd_train(
    model: nn.Module,
    init: Tensor,
    x: Tensor,
    y: Tensor,
    *,
    sampling_rate: float,
    noise_multiplier: float,
    clip_norm: float,
    steps: int,
    lr: float,
    generator: torch.Generator,
) -> Tensor:
    """DP-SGD (Abadi et al. 2016) with Poisson sampling: per-sample gradients (vmap), each clipped
    to ``clip_norm``, summed, ``N(0, (noise_multiplier·clip_norm)²)`` noise added, divided by the
    expected batch size ``q·N``. ``init (d,)`` → ``(d,)``."""
    layout = ParamLayout.from_module(model)

    def loss_one(flat: Tensor, xi: Tensor, yi: Tensor) -> Tensor:
        logits = torch.func.functional_call(model, layout.unflatten(flat), (xi[None],))
        return nn.functional.cross_entropy(logits, yi[None])

    per_sample = torch.func.vmap(torch.func.grad(loss_one), in_dims=(None, 0, 0))
    theta = init.detach().clone()
    n = x.shape[0]
    for _ in range(steps):
        keep = torch.rand(n, generator=generator) < sampling_rate  # Poisson sampling
        noise = torch.randn(theta.shape, generator=generator) * noise_multiplier * clip_norm
        g = (
            per_sample(theta, x[keep], y[keep])
            if keep.any()
            else theta.new_zeros((0, theta.numel()))
        )
        scale = (clip_norm / g.norm(dim=1).clamp_min(1e-12)).clamp_max(1.0)  # (b,)
        theta = theta - lr * ((g * scale[:, None]).sum(dim=0) + noise) / (sampling_rate * n)
    return theta
