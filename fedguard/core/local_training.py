"""Local training of a round's clients: vectorized (all clients at once) and sequential reference.

Both trainers run the same algorithm on the same mini-batches:

* each client's samples are shuffled once per local epoch by its own generator stream
  ``(seed, round, client, "local_batches")`` and cut into batches of ``batch_size`` (last one partial);
* each step takes the mean cross-entropy of the batch, adds the FedProx term ``μ/2‖w − w₀‖²``
  (Li et al. 2020), and applies SGD with PyTorch's momentum convention ``b ← m·b + g; w ← w − η·b``;
* FedSGD (McMahan et al. 2017) is one full-batch step per client.

The vectorized trainer stacks the clients' flat parameters into ``(n, d)`` and takes every step
for all clients at once with ``torch.func.vmap(grad(...))``; batches are padded to a common shape and
masked, and clients whose schedule is shorter are frozen (``active`` mask) once they are done.

Sample-level DP-SGD (:func:`train_dp_sgd`, Abadi et al. 2016) runs in the same vectorized way:
Poisson-sampled local batches (rate B/n per client), per-sample gradients by ``vmap`` over samples
inside ``vmap`` over clients, each clipped to C, summed, plus N(0, (zC)²), divided by the expected
batch size (Opacus' convention; Opacus is the test oracle).

References
----------
McMahan et al., "Communication-efficient learning of deep networks from decentralized data", 2017.
Li et al., "Federated optimization in heterogeneous networks" (FedProx), 2020.
Abadi et al., "Deep learning with differential privacy", CCS 2016.
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from fedguard.core.adapter_gradients import adapter_gradient_fn
from fedguard.core.client_stack import ClientStack, schedule_prefixes
from fedguard.core.ghost_clipping import (
    ghost_clipped_blocks,
    macs_per_sample,
    module_ghost_clipped_sums,
)
from fedguard.core.heap import retain_freed_memory
from fedguard.core.per_client_gradients import per_client_gradient_fn
from fedguard.core.poisson_passes import slot_levels
from fedguard.core.stacked_gradients import clients_per_group, stacked_gradients
from fedguard.core.stacked_model import StackedModel
from fedguard.models.flat import FlatModel
from fedguard.models.losses import mean_cross_entropy, per_sample_cross_entropy
from fedguard.rng import counter_keys, keyed_normals


@dataclass(frozen=True)
class LocalTrainingConfig:
    algorithm: str = "fedavg"  # "fedavg" | "fedsgd"
    local_epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 0.05
    momentum: float = 0.0
    prox_mu: float = 0.0


@dataclass(frozen=True)
class ClientData:
    """All clients' training data padded into one tensor (row c holds client c's samples)."""

    features: Tensor  # (n_clients, max_samples, *input_shape)
    labels: Tensor  # (n_clients, max_samples)
    counts: Tensor  # (n_clients,) long
    #: user id of every record (n_clients, max_samples) long, −1 past each client's count, when
    #: the dataset has a user id column and clients are silos holding many users' records
    users: Tensor | None = None

    def to(self, device: str) -> ClientData:
        users = None if self.users is None else self.users.to(device)
        return ClientData(
            self.features.to(device), self.labels.to(device), self.counts.to(device), users
        )

    @staticmethod
    def pad(
        features: Sequence[Tensor],
        labels: Sequence[Tensor],
        users: Sequence[Tensor] | None = None,
    ) -> ClientData:
        counts = torch.tensor([len(y) for y in labels], dtype=torch.long)
        width = int(counts.max())
        shape = features[0].shape[1:]
        x = torch.zeros(len(features), width, *shape, dtype=features[0].dtype)
        y = torch.zeros(
            len(labels), width, *labels[0].shape[1:], dtype=torch.long
        )  # (n, width, *target)
        for i, (xi, yi) in enumerate(zip(features, labels, strict=True)):
            x[i, : len(yi)] = xi
            y[i, : len(yi)] = yi
        padded_users = None
        if users is not None:
            padded_users = torch.full((len(labels), width), -1, dtype=torch.long)
            for i, ui in enumerate(users):
                padded_users[i, : len(ui)] = ui
        return ClientData(x, y, counts, padded_users)


def batch_schedule(
    counts: Sequence[int],
    client_ids: Sequence[int],
    cfg: LocalTrainingConfig,
    seed: int,
    round_index: int,
) -> tuple[Tensor, Tensor]:
    """Sample positions ``(n, steps, batch)`` and validity mask of every client's local steps.

    Each epoch a client visits its samples in the order of counter-based random keys from its own
    stream (:func:`fedguard.rng.counter_keys`), so the schedule of a client does not depend on
    which other clients train with it. Built without a Python loop over clients.
    """
    count = torch.as_tensor(list(counts), dtype=torch.long)  # (n,)
    width = int(count.max())
    if cfg.algorithm == "fedsgd":
        index = torch.arange(width).expand(len(count), 1, width)
        return index.clone(), index < count[:, None, None]
    epochs, batch = cfg.local_epochs, cfg.batch_size
    keys = counter_keys(seed, round_index, "local_batches", np.asarray(client_ids), (epochs, width))
    padding = np.arange(width)[None, None, :] >= np.asarray(counts)[:, None, None]
    keys = np.where(padding, np.iinfo(np.uint64).max, keys)  # padding sorts last
    order = torch.from_numpy(np.argsort(keys, axis=-1, kind="stable"))  # (n, epochs, width)
    per_epoch = (count + batch - 1) // batch  # (n,)
    total = epochs * per_epoch
    step = torch.arange(int(total.max()))  # (steps,)
    divisor = per_epoch.clamp_min(1)[:, None]  # a client without samples takes no step
    epoch = torch.minimum(step[None, :] // divisor, torch.tensor(epochs - 1))
    position = (step[None, :] % divisor)[..., None] * batch + torch.arange(batch)
    mask = (position < count[:, None, None]) & (step[None, :, None] < total[:, None, None])
    rows = torch.arange(len(count))[:, None, None]
    index = order[rows, epoch[..., None], position.clamp(max=width - 1)]
    return torch.where(mask, index, 0), mask


def _weighted_loss(flat: Tensor, x: Tensor, y: Tensor, weight: Tensor, model: FlatModel) -> Tensor:
    from torch.func import functional_call

    logits = functional_call(model.module, model.layout.unflatten(flat), (x,))
    return (per_sample_cross_entropy(logits, y) * weight).sum()


#: ``gradient(params, x (k, batch, *input), y, weight (k, batch), out)`` →
#: ``Σ_j weight_cj ∇ℓ(θ_c; x_cj, y_cj)`` per client as blocks (written into ``out`` where it can)
GradientFn = Callable[[list[Tensor], Tensor, Tensor, Tensor, list[Tensor]], list[Tensor]]

_PLANS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, ...], StackedModel | None]] = (
    weakref.WeakKeyDictionary()
)


def stacked_plan(model: FlatModel, input_shape: tuple[int, ...]) -> StackedModel | None:
    """The stacked-parameter plan of ``model`` (cached per module and input shape), or None."""
    cache = _PLANS.setdefault(model.module, {})
    key = tuple(int(s) for s in input_shape)
    if key not in cache:
        cache[key] = StackedModel.of(model, key)
    return cache[key]


def _plan_for(model: FlatModel, data: ClientData, engine: str) -> StackedModel | None:
    """The plan the trainers use: ``engine`` "auto" (stacked where supported, else vmap),
    "stacked" (an error where unsupported) or "vmap" (the torch.func reference path)."""
    if engine not in ("auto", "stacked", "vmap"):
        raise ValueError(f"engine must be 'auto', 'stacked' or 'vmap'; got {engine!r}.")
    if engine == "vmap":
        return None
    plan = stacked_plan(model, tuple(data.features.shape[2:]))
    if plan is None and engine == "stacked":
        raise ValueError("this model has layers the stacked engine does not support.")
    return plan


def _gradient_fn(model: FlatModel, plan: StackedModel | None) -> GradientFn:
    if plan is None:
        from torch.func import grad, vmap

        per_client = vmap(grad(_weighted_loss), in_dims=(0, 0, 0, 0, None))
        return lambda params, x, y, weight, out: [per_client(params[0], x, y, weight, model)]

    def stacked(
        params: list[Tensor], x: Tensor, y: Tensor, weight: Tensor, out: list[Tensor]
    ) -> list[Tensor]:
        return stacked_gradients(plan, params, x, y, weight, out)

    return stacked


def train_vectorized(
    model: FlatModel,
    global_params: Tensor,  # (d,), or (n, d): each client's own starting point
    data: ClientData,
    client_ids: Sequence[int],
    cfg: LocalTrainingConfig,
    seed: int,
    round_index: int,
    *,
    engine: str = "auto",
) -> Tensor:
    """Train all ``client_ids`` together; returns their deltas ``(n, d)`` from their starts.

    Clients are ordered by decreasing schedule length, so the clients still training at any step
    are a prefix of the stacked parameters: each step works on views of that prefix (no padding
    steps, no masked copies) and updates them in place (:class:`ClientStack`). Gradients come
    from the stacked plan (:mod:`fedguard.core.stacked_model`) where the model allows, else from
    ``vmap(grad)`` (``engine``: "auto", "stacked" or "vmap").
    """
    if global_params.device.type == "cpu":
        # the round's stack, workspace and activations are reused every round: returned to the
        # OS they are page-faulted in again (LeNet-5, 100 clients: 3–7% of a round's CPU time)
        retain_freed_memory()
    ids = list(client_ids)
    counts = _counts(data, ids)
    index, mask = batch_schedule(counts, ids, cfg, seed, round_index)
    plan = _plan_for(model, data, engine)
    gradient = _gradient_fn(model, plan)
    if plan is None and engine == "auto":  # ResNet-GN on a CPU: client by client, in cache
        gradient = per_client_gradient_fn(model, str(global_params.device)) or gradient
        gradient = adapter_gradient_fn(model) or gradient  # adapted GPT: one autograd pass
    order, active = schedule_prefixes(mask.any(dim=2).sum(dim=1))
    device, dtype = global_params.device, global_params.dtype
    rows = torch.as_tensor(ids, dtype=torch.long)
    if order is not None:
        rows, index, mask = rows[order], index[order], mask[order]
    # slots past every real batch of a step's clients hold padding only (real samples come
    # first): each step runs the largest real batch's width (on the CPU: no device sync)
    sizes = mask.sum(dim=2)  # (n, steps)
    widths = [max(int(sizes[:k, step].max()), 1) for step, k in enumerate(active)]
    rows, index, mask = rows.to(device)[:, None], index.to(device), mask.to(device)

    if global_params.dim() == 2 and order is not None:  # per-client starts, in stack order
        global_params = global_params[order.to(global_params.device)]
    stack = ClientStack.of(plan, global_params, len(ids), bool(cfg.momentum))
    weights = mask.to(dtype)  # (n, steps, batch)
    weights /= weights.sum(dim=2, keepdim=True).clamp_min(1)  # mean over each real batch
    # samples as rows of one flat table: a step's batch is one index_select (a plain gather,
    # several times faster than advanced indexing with a (client, position) pair)
    features, labels = data.features.flatten(0, 1), data.labels.flatten(0, 1)
    first = rows * data.features.shape[1]  # (n, 1) row of each client's first sample
    for step, (k, width) in enumerate(zip(active, widths, strict=True)):
        flat = (first[:k] + index[:k, step, :width]).view(-1)  # (k · width,)
        weight = weights[:k, step, :width]  # (k, width)
        x = features.index_select(0, flat).view(k, width, *features.shape[1:])
        y = labels.index_select(0, flat).view(k, width, *labels.shape[1:])
        params, out = stack.prefix(k)
        g = gradient(params, x, y, weight, out)
        stack.sgd_update(params, g, cfg.learning_rate, cfg.momentum, cfg.prox_mu)
    return stack.deltas(order)


def _counts(data: ClientData, client_ids: Sequence[int]) -> list[int]:
    return data.counts[torch.as_tensor(list(client_ids), dtype=torch.long)].tolist()


def train_sequential(
    model: FlatModel,
    global_params: Tensor,
    data: ClientData,
    client_ids: Sequence[int],
    cfg: LocalTrainingConfig,
    seed: int,
    round_index: int,
) -> Tensor:
    """Reference: one client after the other with a plain ``nn.Module`` and ``torch.optim.SGD``."""
    module = model.module
    deltas = []
    starts = global_params if global_params.dim() == 2 else None  # per-client starting points
    for row, cid in enumerate(client_ids):
        if starts is not None:
            global_params = starts[row]
        count = int(data.counts[cid])
        index, mask = batch_schedule([count], [cid], cfg, seed, round_index)
        torch.nn.utils.vector_to_parameters(global_params.clone(), module.parameters())
        opt = torch.optim.SGD(module.parameters(), lr=cfg.learning_rate, momentum=cfg.momentum)
        for step in range(index.shape[1]):
            batch = index[0, step][mask[0, step]]
            if len(batch) == 0:
                continue
            opt.zero_grad()
            loss = mean_cross_entropy(module(data.features[cid, batch]), data.labels[cid, batch])
            if cfg.prox_mu:
                flat = torch.nn.utils.parameters_to_vector(module.parameters())
                loss = loss + 0.5 * cfg.prox_mu * (flat - global_params).pow(2).sum()
            loss.backward()
            opt.step()
        trained = torch.nn.utils.parameters_to_vector(module.parameters()).detach()
        deltas.append(trained - global_params)
    return torch.stack(deltas)


def local_steps(count: int, cfg: LocalTrainingConfig) -> int:
    """Number of SGD steps a client with ``count`` samples takes in one round."""
    if cfg.algorithm == "fedsgd":
        return 1
    return cfg.local_epochs * math.ceil(count / cfg.batch_size)


Trainer = Callable[
    [FlatModel, Tensor, ClientData, Sequence[int], LocalTrainingConfig, int, int], Tensor
]
TRAINERS: dict[str, Trainer] = {"vectorized": train_vectorized, "sequential": train_sequential}


# --------------------------------------------------------------------------------------------
# Sample-level DP-SGD (Abadi et al. 2016) inside the vectorized trainer


@dataclass(frozen=True)
class DPSGDConfig:
    """Per-sample clipping norm C and noise multiplier z of DP-SGD (noise std z·C on the sum)."""

    noise_multiplier: float
    clip_norm: float


def dp_sgd_sampling_rate(count: int, cfg: LocalTrainingConfig) -> float:
    """Poisson rate q = B / n of a client with n samples and expected batch size B (≤ 1)."""
    return min(1.0, cfg.batch_size / max(count, 1))


def dp_sgd_steps(count: int, cfg: LocalTrainingConfig) -> int:
    """DP-SGD steps of one round: ``local_epochs · ceil(n / B)`` (as the non-private trainer)."""
    return cfg.local_epochs * math.ceil(count / cfg.batch_size)


def poisson_batch_schedule(
    counts: Sequence[int],
    client_ids: Sequence[int],
    cfg: LocalTrainingConfig,
    seed: int,
    round_index: int,
) -> tuple[Tensor, Tensor]:
    """Poisson-sampled batches: every sample of client i joins each step with probability q_i.

    Returns positions ``(n, steps, width)`` and a mask (``width`` = the largest batch drawn;
    steps beyond a client's own count are empty). Uniforms come from counter-based keys of the
    client's own stream ``(seed, round, client, "dp_sgd_batches")``, so a client's batches do not
    depend on who else trains. Built without a Python loop over clients.
    """
    count = np.asarray(list(counts), dtype=np.int64)  # (n,)
    width = int(count.max())
    steps = np.asarray([dp_sgd_steps(int(c), cfg) for c in count])  # (n,)
    rate = np.minimum(1.0, cfg.batch_size / np.maximum(count, 1))  # (n,)
    keys = counter_keys(
        seed, round_index, "dp_sgd_batches", np.asarray(client_ids), (int(steps.max()), width)
    )  # (n, steps, width)
    uniform = (keys >> np.uint64(11)).astype(np.float64) * 2.0**-53
    take = uniform < rate[:, None, None]
    take &= np.arange(width)[None, None, :] < count[:, None, None]
    take &= np.arange(int(steps.max()))[None, :, None] < steps[:, None, None]
    order = np.argsort(~take, axis=-1, kind="stable")  # chosen positions first
    batch = max(int(take.sum(axis=-1).max()), 1)
    index = torch.from_numpy(order[..., :batch].copy())  # (n, steps, batch)
    mask = torch.from_numpy(np.take_along_axis(take, order[..., :batch], axis=-1))
    return torch.where(mask, index, 0), mask


def _sample_loss(flat: Tensor, x: Tensor, y: Tensor, model: FlatModel) -> Tensor:
    from torch.func import functional_call

    logits = functional_call(model.module, model.layout.unflatten(flat), (x.unsqueeze(0),))
    return mean_cross_entropy(logits, y.unsqueeze(0))


def clipped_gradient_sum(
    model: FlatModel, params: Tensor, x: Tensor, y: Tensor, mask: Tensor, clip_norm: float
) -> Tensor:
    """Σ_j clip_C(∇ℓ(θ_c; x_cj, y_cj)) over each client's masked batch: ``(n, d)``.

    The reference path for any model: per-sample gradients by ``vmap`` over samples inside
    ``vmap`` over clients (torch.func); ``params`` (n, d), ``x`` (n, batch, *input), ``y`` and
    ``mask`` (n, batch). :func:`fedguard.core.ghost_clipping.ghost_clipped_gradient_sum` computes
    the same without per-sample gradients where the layers allow.
    """
    from torch.func import grad, vmap

    per_sample = vmap(vmap(grad(_sample_loss), in_dims=(None, 0, 0, None)), in_dims=(0, 0, 0, None))
    g = per_sample(params, x, y, model)  # (n, batch, d)
    norms = torch.linalg.vector_norm(g, dim=-1, keepdim=True)  # (n, batch, 1)
    factor = torch.clamp(clip_norm / norms.clamp_min(1e-30), max=1.0) * mask[..., None]
    return (g * factor).sum(dim=1)


def train_dp_sgd(
    model: FlatModel,
    global_params: Tensor,  # (d,)
    data: ClientData,
    client_ids: Sequence[int],
    cfg: LocalTrainingConfig,
    dp: DPSGDConfig,
    seed: int,
    round_index: int,
    noise: Sequence[torch.Generator | None] | None = None,
    *,
    secure_noise: bool = False,
    engine: str = "auto",
) -> Tensor:
    """DP-SGD for all ``client_ids`` together; returns their deltas ``(n, d)``.

    Each step of client c: a Poisson batch (rate q_c = B/n_c), per-sample gradients clipped to
    C, summed, plus N(0, (zC)² I), divided by the expected batch size q_c·n_c (Opacus'
    convention for Poisson sampling); then the FedProx term and SGD with momentum as in
    :func:`train_vectorized` (post-processing). The clipped sum comes from ghost norms
    (:mod:`fedguard.core.ghost_clipping`) where the model allows, else from per-sample
    gradients (``vmap``). Clients run in order of decreasing step count (the ones still
    training are a prefix); with ghost norms a step runs in passes over slot ranges of the
    batches, cut so that padding costs less than another pass
    (:mod:`fedguard.core.poisson_passes`); the vmap path pads to the largest batch.

    Noise: by default the keyed stream ``(seed, round, client, "dp_sgd_noise")`` at position
    ``step`` (:func:`fedguard.rng.keyed_normals`), drawn for the whole cohort, the same for
    a client whoever trains with it; ``secure_noise``: the OS CSPRNG; ``noise[c]``: client c's
    own ``torch.Generator`` (None: the CSPRNG), drawn client by client (the reference path).

    References
    ----------
    Abadi et al., "Deep learning with differential privacy", CCS 2016.
    Yousefpour et al., "Opacus: User-friendly differential privacy library in PyTorch", 2021.
    """
    if global_params.device.type == "cpu":
        retain_freed_memory()  # the step's temporaries would be page-faulted back every step
    ids = list(client_ids)
    counts = _counts(data, ids)
    plan = _plan_for(model, data, engine)
    index, mask = poisson_batch_schedule(counts, ids, cfg, seed, round_index)  # (n, steps, width)
    steps = torch.as_tensor([dp_sgd_steps(c, cfg) for c in counts], dtype=torch.long)  # (n,)
    expected = torch.as_tensor([dp_sgd_sampling_rate(c, cfg) * c for c in counts])  # (n,)
    order, active = schedule_prefixes(steps)
    rows = torch.as_tensor(ids, dtype=torch.long)
    gens = list(noise) if noise is not None else None
    if order is not None:
        rows, index, mask, expected = rows[order], index[order], mask[order], expected[order]
        gens = [gens[i] for i in order.tolist()] if gens is not None else None
    sizes = mask.sum(dim=2)  # (n, steps) real samples of each batch
    device, dtype = global_params.device, global_params.dtype
    ordered_ids = rows.numpy()
    rows, index, mask = rows.to(device)[:, None], index.to(device), mask.to(device)
    expected = expected.to(device=device, dtype=dtype)

    std = dp.noise_multiplier * dp.clip_norm
    d = global_params.numel()
    stack = ClientStack.of(plan, global_params, len(ids), bool(cfg.momentum))
    macs = macs_per_sample(plan, tuple(data.features.shape[2:])) if plan is not None else 0
    for step, k in enumerate(active):
        params, out = stack.prefix(k)
        if plan is not None:
            levels = slot_levels(sizes[:k, step].tolist(), macs)
            total = _clipped_sum_in_passes(
                plan, params, out, data, rows[:k], index[:k, step], mask[:k, step], levels, dp
            )
        else:
            width = max(int(sizes[:k, step].max()), 1)  # no slots beyond the largest real batch
            positions = index[:k, step, :width]  # (k, width)
            x, y = data.features[rows[:k], positions], data.labels[rows[:k], positions]
            weight = mask[:k, step, :width].to(dtype)
            step_args = (model, params[0], x, y, weight, dp.clip_norm)
            # ghost norms of sequence layers (the GPT) where they apply, else vmap
            ghost = None if engine == "vmap" else module_ghost_clipped_sums(*step_args)
            total = [ghost if ghost is not None else clipped_gradient_sum(*step_args)]
        if gens is not None:
            z = torch.stack([_standard_normal(d, gen, dtype) for gen in gens[:k]])
        elif secure_noise:
            z = _secure_normals((k, d), dtype)
        else:
            z = keyed_normals(seed, round_index, "dp_sgd_noise", ordered_ids[:k], step, d)
        z = z.to(device=device, dtype=dtype)
        for g, noise_block in zip(total, stack.split(z), strict=True):
            scale = expected[:k].view(k, *([1] * (g.dim() - 1)))
            g.add_(noise_block, alpha=std).div_(scale)
        stack.sgd_update(params, total, cfg.learning_rate, cfg.momentum, cfg.prox_mu)
    return stack.deltas(order)


def _clipped_sum_in_passes(
    plan: StackedModel,
    params: list[Tensor],  # blocks (k, *shape): the clients of this step
    out: list[Tensor],  # gradient blocks (k, *shape), written in place
    data: ClientData,
    rows: Tensor,  # (k, 1) the clients' rows of ``data``
    index: Tensor,  # (k, width) positions of this step's batches, real samples first
    mask: Tensor,  # (k, width)
    levels: list[int],
    dp: DPSGDConfig,
) -> list[Tensor]:
    """The step's clipped gradient sums in passes over slot ranges (:mod:`.poisson_passes`):
    the first over all k clients straight into ``out``, each later one over the clients whose
    batch reaches into its range (their parameters gathered), added in. Per-sample clipping
    makes the sum additive over the passes. On a CPU each pass runs in groups of clients whose
    activations stay in cache (:func:`fedguard.core.stacked_gradients.clients_per_group`, as
    the non-private step); a client's clipped sum depends on its own rows only."""
    on_cpu = params[0].device.type == "cpu"
    start = 0
    for level in levels:
        clients = None if start == 0 else torch.nonzero(mask[:, start]).squeeze(1)
        count = rows.shape[0] if clients is None else len(clients)
        size = count
        if on_cpu:
            size = clients_per_group(plan, count, level - start, params[0].element_size())
        for first in range(0, count, size):
            group = slice(first, min(count, first + size))
            if clients is None:  # views of the stack's rows, written in place
                views = [p[group] for p in params], [o[group] for o in out]
                slots = index[group, start:level], mask[group, start:level]
                _clipped_sum_of_group(plan, *views, data, rows[group], *slots, dp)
                continue
            members = clients[group]
            part = [p[members] for p in params]  # gathered copies (k', *shape)
            sums = [torch.empty_like(p) for p in part]
            slots = index[members, start:level], mask[members, start:level]
            _clipped_sum_of_group(plan, part, sums, data, rows[members], *slots, dp)
            for o, g in zip(out, sums, strict=True):
                o.index_add_(0, members, g)
        start = level
    return out


def _clipped_sum_of_group(
    plan: StackedModel,
    params: list[Tensor],
    out: list[Tensor],
    data: ClientData,
    rows: Tensor,  # (k', 1)
    positions: Tensor,  # (k', slots)
    mask: Tensor,  # (k', slots)
    dp: DPSGDConfig,
) -> None:
    x, y = data.features[rows, positions], data.labels[rows, positions]
    weight = mask.to(params[0].dtype)
    ghost_clipped_blocks(plan, params, x, y, weight, dp.clip_norm, out)


def _standard_normal(d: int, generator: torch.Generator | None, dtype: torch.dtype) -> Tensor:
    if generator is not None:
        return torch.randn(d, generator=generator, dtype=torch.float64, device=generator.device).to(
            dtype
        )
    return _secure_normals((d,), dtype)


def _secure_normals(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """Standard normals from ``os.urandom`` (Box–Muller on 53-bit uniforms, float64 maths)."""
    count = math.prod(shape)
    raw = np.frombuffer(os.urandom(16 * count), dtype=np.uint64).reshape(2, count)
    u1 = ((raw[0] >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0**-53
    u2 = (raw[1] >> np.uint64(11)).astype(np.float64) * 2.0**-53
    z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)  # Box–Muller
    return torch.from_numpy(z.reshape(shape)).to(dtype)
