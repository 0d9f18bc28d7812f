"""A small synthetic federated run (softmax regression on Gaussian blobs) for tests and benchmarks.

Clients train FedAvg locally with full-batch gradient descent, vectorized over clients. Optional
special clients reproduce the issue's audit scenario: a duplicate of client 0's data, a client with
random labels, and a zero-update free-rider (Fraboni et al. 2021).

References
----------
.. [1] H. B. McMahan et al. "Communication-Efficient Learning of Deep Networks from Decentralized
   Data." AISTATS 2017.
.. [2] Y. Fraboni, R. Vidal, M. Lorenzi. "Free-rider Attacks on Model Aggregation in Federated
   Learning." AISTATS 2021.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedguard.valuation.reconstruction import RoundUpdates


@dataclass(frozen=True)
class SyntheticRun:
    """Saved rounds plus the validation set and a batched evaluator of flat parameters."""

    rounds: tuple[RoundUpdates, ...]
    n_clients: int
    n_features: int
    n_classes: int
    val_features: Tensor  # (N, f)
    val_labels: Tensor  # (N,)
    initial_params: Tensor  # (d,)

    def evaluate(self, params: Tensor, utility: str = "accuracy") -> Tensor:
        """``(k, d)`` flat weights of a softmax regression → ``(k,)`` accuracy or −cross-entropy."""
        logits = linear_logits(params, self.val_features, self.n_classes)  # (k, N, C)
        if utility == "accuracy":
            return (logits.argmax(-1) == self.val_labels).to(torch.float64).mean(-1)
        log_probs = torch.log_softmax(logits, dim=-1)
        picked = log_probs.gather(-1, self.val_labels.expand(logits.shape[0], -1).unsqueeze(-1))
        return picked.squeeze(-1).mean(-1)


def linear_logits(params: Tensor, features: Tensor, n_classes: int) -> Tensor:
    """``(k, d)`` params with ``d = (f + 1)·C`` (weights then bias) → ``(k, N, C)`` logits."""
    f = features.shape[1]
    weights = params[:, : f * n_classes].reshape(-1, f, n_classes)  # (k, f, C)
    bias = params[:, f * n_classes :].reshape(-1, 1, n_classes)  # (k, 1, C)
    return torch.einsum("nf,kfc->knc", features.to(params.dtype), weights) + bias


def _blobs(
    count: int, centers: Tensor, noise: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    labels = torch.randint(centers.shape[0], (count,), generator=generator)  # (count,)
    noise_t = noise * torch.randn(count, centers.shape[1], generator=generator, dtype=torch.float64)
    return centers[labels] + noise_t, labels


def make_synthetic_run(
    n_clients: int = 6,
    n_rounds: int = 5,
    samples_per_client: int = 40,
    n_features: int = 5,
    n_classes: int = 3,
    local_steps: int = 5,
    learning_rate: float = 0.5,
    noise: float = 1.5,
    duplicate_of_zero: int | None = None,
    random_label_client: int | None = None,
    free_rider: int | None = None,
    seed: int = 0,
) -> SyntheticRun:
    """Run FedAvg (all clients every round, server learning rate 1) and save every round.

    Clients get data sizes ``samples_per_client·(1 + i mod 3)/2``-ish so that values differ.
    """
    g = torch.Generator().manual_seed(seed)
    centers = 2.0 * torch.randn(n_classes, n_features, generator=g, dtype=torch.float64)
    sizes = [max(8, samples_per_client * (1 + i % 3) // 2) for i in range(n_clients)]
    data = [_blobs(s, centers, noise, g) for s in sizes]
    if duplicate_of_zero is not None:
        data[duplicate_of_zero] = data[0]
        sizes[duplicate_of_zero] = sizes[0]
    if random_label_client is not None:
        x, y = data[random_label_client]
        data[random_label_client] = (x, torch.randint(n_classes, y.shape, generator=g))
    val_x, val_y = _blobs(300, centers, noise, g)
    m = max(sizes)
    feats = torch.zeros(n_clients, m, n_features, dtype=torch.float64)  # (n, m, f) padded
    labels = torch.zeros(n_clients, m, dtype=torch.int64)
    valid = torch.zeros(n_clients, m, dtype=torch.float64)
    for i, (x, y) in enumerate(data):
        feats[i, : x.shape[0]], labels[i, : y.shape[0]], valid[i, : x.shape[0]] = x, y, 1.0
    d = (n_features + 1) * n_classes
    theta = torch.zeros(d, dtype=torch.float64)
    onehot = torch.nn.functional.one_hot(labels, n_classes).to(torch.float64)  # (n, m, C)
    count = valid.sum(1)  # (n,)
    rounds = []
    for _ in range(n_rounds):
        local = theta.expand(n_clients, d).clone()  # (n, d)
        for _ in range(local_steps):
            w = local[:, : n_features * n_classes].reshape(n_clients, n_features, n_classes)
            b = local[:, n_features * n_classes :].reshape(n_clients, 1, n_classes)
            probs = torch.softmax(torch.einsum("nmf,nfc->nmc", feats, w) + b, dim=-1)
            err = (probs - onehot) * valid.unsqueeze(-1) / count.reshape(-1, 1, 1)  # (n, m, C)
            grad_w = torch.einsum("nmf,nmc->nfc", feats, err).reshape(n_clients, -1)
            grad_b = err.sum(1)  # (n, C)
            local = local - learning_rate * torch.cat([grad_w, grad_b], dim=1)
        deltas = local - theta  # (n, d)
        if free_rider is not None:
            deltas[free_rider] = 0.0
        num_samples = torch.tensor(sizes, dtype=torch.int64)
        rounds.append(
            RoundUpdates(theta.clone(), torch.arange(n_clients), deltas.clone(), num_samples)
        )
        weights = num_samples.to(torch.float64) / num_samples.sum()
        theta = theta + weights @ deltas
    return SyntheticRun(
        rounds=tuple(rounds),
        n_clients=n_clients,
        n_features=n_features,
        n_classes=n_classes,
        val_features=val_x,
        val_labels=val_y,
        initial_params=torch.zeros(d, dtype=torch.float64),
    )
