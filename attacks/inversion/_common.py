"""Shared machinery of the gradient-inversion attacks.

* :class:`ParamLayout` maps fedguard's flat parameter vectors to a ``{name: tensor}`` dict for
  :func:`torch.func.functional_call` (flat order = ``module.named_parameters()`` order, the order
  of :func:`torch.nn.utils.parameters_to_vector`).
* :class:`InversionTask` is what an inversion attack needs to know besides the :class:`ServerView`
  (the model architecture, the input shape and valid range); it is the ``env`` of ``observe``.
* :func:`observed_direction` turns a client's update ``Δ = θ_local − θ_global`` into the gradient
  it implies: for local SGD with learning rate η and ``K`` steps, ``g ≈ −Δ / (η·K)`` (exact for
  ``K = 1``).
* :func:`matching_loss` is the gradient-matching objective shared by DLG, inverting gradients and
  SME.

Sign convention: updates are ``θ_local − θ_global`` (as in :class:`~fedguard.types.ClientUpdate`).
The loss of a batch is the *mean* softmax cross-entropy over the batch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.func import functional_call

from attacks.inversion.reconstruction import AGGREGATE_ID, InversionOutput, Reconstruction
from fedguard.api import PrivacyAttack, require
from fedguard.errors import ConfigError, IncompatibleError
from fedguard.metrics.privacy_attack_metrics import (
    class_mean_psnr,
    exact_match_rate,
    feature_abs_error,
    hungarian_match,
    label_multiset_accuracy,
    mean_image_psnr,
    mse_per_sample,
    psnr_per_sample,
    recovered,
    ssim_per_sample,
)
from fedguard.rng import torch_generator
from fedguard.types import LocalTrainingRecipe, ServerView, Truth


@dataclass(frozen=True)
class ParamLayout:
    """Names, shapes and offsets of a module's parameters inside a flat ``(d,)`` vector."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]  # start of each parameter in the flat vector
    size: int

    @classmethod
    def from_module(cls, module: nn.Module) -> ParamLayout:
        names, shapes, offsets = [], [], []
        start = 0
        for name, p in module.named_parameters():
            names.append(name)
            shapes.append(tuple(p.shape))
            offsets.append(start)
            start += p.numel()
        return cls(tuple(names), tuple(shapes), tuple(offsets), start)

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """``(d,)`` → ``{name: view}``; differentiable and ``vmap``-compatible."""
        return {
            name: flat[o : o + math.prod(shape)].view(shape)
            for name, shape, o in zip(self.names, self.shapes, self.offsets, strict=True)
        }

    def flatten(self, params: Mapping[str, Tensor]) -> Tensor:
        return torch.cat([params[name].reshape(-1) for name in self.names])

    def slice_of(self, name: str) -> slice:
        i = self.names.index(name)
        return slice(self.offsets[i], self.offsets[i] + math.prod(self.shapes[i]))


def module_params(module: nn.Module) -> Tensor:
    """The module's current parameters as one flat detached ``(d,)`` vector."""
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


@dataclass(frozen=True)
class InversionTask:
    """What an inversion attack knows besides the server view (the ``env`` of ``observe``).

    ``input_shape`` is one sample's shape as the model consumes it (``(64,)`` for the digits MLP);
    ``image_shape`` is ``(C, H, W)`` when samples are images (enables total variation and SSIM),
    ``None`` for tabular data.
    """

    model: nn.Module
    input_shape: tuple[int, ...]
    n_classes: int
    data_range: tuple[float, float] | None = (0.0, 1.0)  # None: unbounded (tabular)
    image_shape: tuple[int, int, int] | None = None
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        require(self.n_classes >= 2, "n_classes", "an integer ≥ 2")
        require(
            self.data_range is None or self.data_range[0] < self.data_range[1],
            "data_range",
            "(low, high) with low < high, or None",
        )
        if self.image_shape is not None:
            require(
                math.prod(self.image_shape) == math.prod(self.input_shape),
                "image_shape",
                "a (C, H, W) shape with as many values as input_shape",
            )


def env_module(env: Any) -> nn.Module:
    """The ``nn.Module`` of an environment: ``env.model`` itself or its ``.module`` (the core's
    :class:`~fedguard.models.flat.FlatModel`)."""
    model = getattr(env, "model", None)
    if isinstance(model, nn.Module):
        return model
    module = getattr(model, "module", None)
    if isinstance(module, nn.Module):
        return module
    raise ConfigError("a privacy attack's environment must provide the model (env.model).")


def as_inversion_task(env: Any) -> InversionTask:
    """Accept an :class:`InversionTask`, or the core's simulation (``env.model``, ``env.data``
    with ``input_shape``, ``n_classes`` and ``value_range``), or any object with the same
    attributes as :class:`InversionTask`."""
    if isinstance(env, InversionTask):
        return env
    source = getattr(env, "data", env)
    try:
        input_shape = tuple(int(v) for v in source.input_shape)
        n_classes = int(source.n_classes)
    except AttributeError as exc:
        raise ConfigError(
            "an inversion attack's environment must provide model, input_shape and n_classes."
        ) from exc
    value_range = getattr(source, "value_range", None) or getattr(source, "data_range", None)
    image_shape = getattr(source, "image_shape", None)
    if image_shape is None and len(input_shape) == 3:
        image_shape = input_shape
    return InversionTask(
        model=env_module(env),
        input_shape=input_shape,
        n_classes=n_classes,
        data_range=None if value_range is None else (float(value_range[0]), float(value_range[1])),
        image_shape=image_shape,
    )


# --------------------------------------------------------------------------------------------
# Targets: which update is attacked


@dataclass(frozen=True)
class AttackTarget:
    """One update to invert: a client's (or the aggregate's mean) delta and its training setup."""

    client_id: int
    delta: Tensor  # (d,)
    n_samples: int  # how many samples to reconstruct
    lr: float
    local_steps: int
    batch_size: int
    from_aggregate: bool
    n_clients_in_aggregate: int


def training_hparams(
    training: Mapping[str, Any] | LocalTrainingRecipe,
) -> tuple[float, int | None, int | None, int]:
    """``(lr, local_steps, batch_size, local_epochs)`` from the view's typed
    :class:`~fedguard.types.LocalTrainingRecipe` or its ``training`` mapping.

    A mapping may use fedguard's keys (``learning_rate``, ``local_epochs``, ``batch_size``,
    ``algorithm``) or the short ones (``lr``, ``local_steps``). ``local_steps`` is ``None`` when
    it depends on each client's data size (FedAvg: ``local_epochs·⌈n / batch_size⌉``).
    """
    if isinstance(training, LocalTrainingRecipe):
        training = dataclasses.asdict(training)
    lr = float(training.get("lr", training.get("learning_rate", 1.0)))
    require(lr > 0, "training.lr", "a positive learning rate")
    batch = training.get("batch_size")
    epochs = int(training.get("local_epochs", 1))
    if training.get("algorithm") == "fedsgd":
        return lr, 1, None, 1
    steps = training.get("local_steps")
    if steps is not None:
        require(int(steps) >= 1, "training.local_steps", "a positive integer")
    return (
        lr,
        (int(steps) if steps is not None else None),
        (int(batch) if batch is not None else None),
        epochs,
    )


def client_steps(n_data: int, steps: int | None, batch: int | None, epochs: int) -> int:
    """Local SGD steps of a client holding ``n_data`` samples."""
    if steps is not None:
        return steps
    if batch is None:
        return epochs
    return epochs * max(1, math.ceil(n_data / batch))


def select_targets(
    view: ServerView,
    target_client: int | None,
    n_samples: int | None,
    max_clients: int | None = None,
) -> list[AttackTarget]:
    """The updates an inversion attack works on.

    With individual updates: the client ``target_client``, or the first ``max_clients`` clients
    of the view (all when ``None``). Under secure aggregation only ``update_sum`` is visible: the
    attack inverts the mean update ``sum / n`` as if it came from one client holding all the
    round's samples, and the reconstruction is marked ``from_aggregate``.
    A client that takes one local step on a batch of ``b < n`` samples has ``b`` samples
    reconstructed; otherwise all its ``n`` samples are.
    """
    lr, steps, batch, epochs = training_hparams(
        view.recipe if view.recipe is not None else view.training
    )

    def count(n_data: int) -> int:
        if n_samples is not None:
            return n_samples
        k = client_steps(n_data, steps, batch, epochs)
        if k == 1 and batch is not None and steps is not None:
            return min(batch, n_data)
        return n_data

    if view.updates is None:
        n = len(view.client_ids)
        require(n >= 1, "view.client_ids", "non-empty under secure aggregation")
        total = sum(count(k) for k in view.num_samples)
        mean_n = max(1, round(sum(view.num_samples) / n))
        k = client_steps(mean_n, steps, batch, epochs)
        return [
            AttackTarget(AGGREGATE_ID, view.update_sum / n, total, lr, k, batch or total, True, n)
        ]
    if target_client is None:
        ids = view.client_ids if max_clients is None else view.client_ids[:max_clients]
    else:
        ids = (target_client,)
    out = []
    for cid in ids:
        if cid not in view.client_ids:
            raise ConfigError(
                f"target_client must be one of this round's clients {view.client_ids}."
            )
        row = view.client_ids.index(cid)
        n_data = view.num_samples[row]
        k = client_steps(n_data, steps, batch, epochs)
        n_rec = count(n_data)
        out.append(AttackTarget(cid, view.updates[row], n_rec, lr, k, batch or n_rec, False, 1))
    return out


def check_common_fields(at_round: int | None, max_clients: int | None) -> None:
    require(
        at_round is None or at_round >= 0, "at_round", "a round index ≥ 0, or None (every round)"
    )
    require(
        max_clients is None or max_clients >= 1, "max_clients", "a positive integer, or None (all)"
    )


def observed_direction(target: AttackTarget) -> Tensor:
    """The gradient implied by an update: ``g = −Δ / (η·K)``, exact for one local SGD step."""
    return -target.delta / (target.lr * target.local_steps)


def attack_generator(seed: int, round_index: int, client_id: int, attack: str) -> torch.Generator:
    """The attack's own random stream per (seed, round, client) — see :mod:`fedguard.rng`."""
    return torch_generator(seed, round_index, client_id, f"privacy_attack/{attack}")


# --------------------------------------------------------------------------------------------
# Model helpers


def first_parametrized_module(model: nn.Module) -> tuple[str, nn.Module]:
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            return name, module
    raise IncompatibleError("the model has no parameters.")


def last_linear_with_bias(model: nn.Module, n_classes: int) -> str:
    """Name prefix of the output layer (a Linear with bias producing the logits)."""
    found = ""
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.bias is not None:
            found = name
    module = model.get_submodule(found) if found else None
    if not isinstance(module, nn.Linear) or module.out_features != n_classes:
        raise IncompatibleError(
            "label recovery needs an output layer that is a fully connected layer with bias "
            f"producing the {n_classes} logits; this model has none."
        )
    return found


def param_name(prefix: str, leaf: str) -> str:
    return f"{prefix}.{leaf}" if prefix else leaf


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy; ``labels`` are class indices ``(B,)`` or soft labels ``(B, C)``."""
    if labels.dim() == 2:
        return -(labels * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
    return torch.nn.functional.cross_entropy(logits, labels)


def batch_gradient(
    model: nn.Module,
    layout: ParamLayout,
    params: Tensor,
    inputs: Tensor,
    labels: Tensor,
    create_graph: bool,
) -> Tensor:
    """``∇_θ L(θ; inputs, labels)`` as a flat ``(d,)`` vector (mean cross-entropy)."""
    if not params.requires_grad:
        params = params.detach().requires_grad_(True)
    logits = functional_call(model, layout.unflatten(params), (inputs,))
    loss = cross_entropy(logits, labels)
    (grad,) = torch.autograd.grad(loss, params, create_graph=create_graph)
    return grad


def cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    """``1 − cos(a, b)`` over whole flat vectors (Geiping et al. 2020, all layers jointly)."""
    return 1.0 - (a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-30)


def total_variation(x: Tensor, image_shape: tuple[int, int, int] | None) -> Tensor:
    """Anisotropic total variation: mean absolute difference of neighbouring pixels."""
    if image_shape is None:
        return x.new_zeros(())
    img = x.reshape(x.shape[0], *image_shape)  # (B, C, H, W)
    dh = (img[:, :, 1:, :] - img[:, :, :-1, :]).abs().mean()
    dw = (img[:, :, :, 1:] - img[:, :, :, :-1]).abs().mean()
    return dh + dw


def uniform_init(
    n: int,
    input_shape: tuple[int, ...],
    data_range: tuple[float, float] | None,
    generator: torch.Generator,
) -> Tensor:
    """Random starting inputs: uniform over ``data_range``, standard normal when unbounded."""
    if data_range is None:
        return torch.randn((n, *input_shape), generator=generator)
    low, high = data_range
    return low + (high - low) * torch.rand((n, *input_shape), generator=generator)


def project(x: Tensor, data_range: tuple[float, float] | None) -> Tensor:
    """Clamp to the valid range (no-op when unbounded); in place on ``x``."""
    if data_range is not None:
        x.clamp_(data_range[0], data_range[1])
    return x


def signed_adam_step_decay(
    variables: list[Tensor], lr: float, iterations: int
) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.MultiStepLR]:
    """Adam with Geiping et al.'s schedule: ×0.1 at 3/8, 5/8 and 7/8 of the iterations."""
    opt = torch.optim.Adam(variables, lr=lr)
    milestones = [int(iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)]
    return opt, torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)


# --------------------------------------------------------------------------------------------
# Output and scoring


#: A reconstruction is *recovered* when its PSNR beats both trivial baselines by this much.
RECOVERY_MARGIN_DB = 3.0


def score_reconstruction(
    rec: Reconstruction,
    true_inputs: Tensor,
    true_labels: Tensor,
    data_range: tuple[float, float] | None,
    image_shape: tuple[int, int, int] | None,
    n_classes: int,
    match_tolerance: float = 0.01,
    population: tuple[Tensor, Tensor] | None = None,
) -> dict[str, float]:
    """Hungarian-match the reconstruction to the truth, then MSE / PSNR / SSIM / label accuracy,
    beside the trivial baselines.

    PSNR uses the declared range, or the true values' max − min for unbounded (tabular) data;
    the exact-match rate counts entries within ``match_tolerance`` of that span. Baselines
    (per matched sample, then averaged like ``psnr_db``): ``baseline_mean_psnr_db`` guesses the
    mean of ``population`` (default: the true batch), ``baseline_class_mean_psnr_db`` the mean
    of the population's samples of the true label; ``n_recovered`` counts matched samples whose
    PSNR beats both by :data:`RECOVERY_MARGIN_DB`.
    """
    rows, cols = hungarian_match(rec.inputs, true_inputs)
    x_hat, x = rec.inputs[rows], true_inputs[cols]
    if data_range is None:
        span = float(true_inputs.max() - true_inputs.min()) or 1.0
    else:
        span = data_range[1] - data_range[0]
    psnr = psnr_per_sample(x_hat, x, span).clamp_max(200.0)  # exact → capped at 200 dB
    pop_x, pop_y = population if population is not None else (true_inputs, true_labels)
    pop_x = pop_x.reshape(pop_x.shape[0], *true_inputs.shape[1:])
    base_mean = mean_image_psnr(x, pop_x, span).clamp_max(200.0)  # (B,)
    base_class = class_mean_psnr(x, true_labels[cols], pop_x, pop_y, span).clamp_max(200.0)
    hit = recovered(psnr, base_mean, base_class, margin_db=RECOVERY_MARGIN_DB)
    out = {
        "mse": float(mse_per_sample(x_hat, x).mean()),
        "psnr_db": float(psnr.mean()),
        "psnr_db_min": float(psnr.min()),
        "baseline_mean_psnr_db": float(base_mean.mean()),
        "baseline_class_mean_psnr_db": float(base_class.mean()),
        "n_recovered": float(hit.sum()),
        "label_accuracy": label_multiset_accuracy(rec.labels, true_labels, n_classes),
        "n_reconstructed": float(rec.inputs.shape[0]),
        "n_true": float(true_inputs.shape[0]),
    }
    if image_shape is not None:
        shape = (-1, *image_shape)
        out["ssim"] = float(ssim_per_sample(x_hat.reshape(shape), x.reshape(shape), span).mean())
    else:
        out["feature_mae"] = float(feature_abs_error(x_hat, x).mean())
        out["exact_match_rate"] = exact_match_rate(x_hat, x, match_tolerance * span)
    return out


def score_output(output: InversionOutput, truth: Truth) -> dict[str, float]:
    """Average the per-client scores; an aggregate reconstruction is scored against all batches.

    The baselines' population is every client's training data in ``truth`` (the dataset the
    mean images are taken from; the target's own samples included, which only strengthens the
    baselines). ``n_recovered`` is summed over the attacked clients, and ``recovered_fraction``
    is it over the matched samples.
    """
    batches = list(truth.private_batches.values())
    population = None
    if batches:
        population = (
            torch.cat([b[0].reshape(b[0].shape[0], -1) for b in batches]),
            torch.cat([b[1] for b in batches]),
        )
    per_client: list[dict[str, float]] = []
    for rec in output.reconstructions:
        if rec.client_id == AGGREGATE_ID:
            if population is None:
                continue
            xs, ys = population
        elif rec.client_id in truth.private_batches:
            xb, ys = truth.private_batches[rec.client_id]
            xs = xb.reshape(xb.shape[0], -1)
        else:
            continue
        per_client.append(
            score_reconstruction(
                rec,
                xs.reshape(xs.shape[0], *rec.inputs.shape[1:]),
                ys,
                output.data_range,
                output.image_shape,
                output.n_classes,
                population=population,
            )
        )
    if not per_client:
        raise ConfigError("the truth holds no private batch for any reconstructed client.")
    keys = per_client[0].keys()
    result = {k: sum(d[k] for d in per_client) / len(per_client) for k in keys}
    result["psnr_db_min"] = min(d["psnr_db_min"] for d in per_client)
    result["n_recovered"] = sum(d["n_recovered"] for d in per_client)
    matched = sum(min(d["n_reconstructed"], d["n_true"]) for d in per_client)
    result["recovered_fraction"] = result["n_recovered"] / max(matched, 1.0)
    result["from_aggregate"] = float(output.from_aggregate)
    result["n_clients_in_aggregate"] = float(output.n_clients_in_aggregate)
    return result


@dataclass(frozen=True)
class TargetedInversion(PrivacyAttack):
    """``observe`` shared by the attacks that invert each selected update of one round.

    Holds the target-selection fields every such attack has first (subclasses call
    ``super().__post_init__()`` to validate them). Subclasses name their output with
    ``attack_name`` and supply :meth:`reconstructor`: given the round's view, the task and the
    parameter layout, it returns the function that inverts one :class:`AttackTarget`.

    Parameters
    ----------
    target_client
        Client id to attack; ``None`` attacks the first ``max_clients`` clients of the view.
    max_clients
        How many clients to attack per round when ``target_client`` is ``None`` (``None``: all).
    at_round
        The round whose view is attacked (0-based); ``None`` attacks every round.
    """

    threat_model: ClassVar[frozenset[str]] = frozenset({"architecture"})  # no candidate pool

    attack_name: ClassVar[str]
    target_client: int | None = None
    max_clients: int | None = 1
    at_round: int | None = 0

    def __post_init__(self) -> None:
        check_common_fields(self.at_round, self.max_clients)

    def reconstructor(
        self, view: ServerView, task: InversionTask, layout: ParamLayout
    ) -> Callable[[AttackTarget], Reconstruction]:
        raise NotImplementedError  # abstract

    def observe(self, view: ServerView, env: Any) -> InversionOutput | None:
        if self.at_round is not None and view.round != self.at_round:
            return None
        task = as_inversion_task(env)
        layout = ParamLayout.from_module(task.model)
        invert = self.reconstructor(view, task, layout)
        targets = select_targets(view, self.target_client, None, self.max_clients)
        return InversionOutput(
            attack=self.attack_name,
            reconstructions=tuple(invert(target) for target in targets),
            from_aggregate=view.updates is None,
            n_clients_in_aggregate=len(view.client_ids) if view.updates is None else 1,
            data_range=task.data_range,
            image_shape=task.image_shape,
            n_classes=task.n_classes,
        )


class InversionAttack(TargetedInversion):
    """Base of the input-reconstructing attacks: scored by :func:`score_output`; their report
    artifact is an image grid."""

    def metrics(self, output: InversionOutput, truth: Truth) -> dict[str, float]:
        return score_output(output, truth)

    def check_model(self, model: nn.Module, input_shape: tuple[int, ...], n_classes: int) -> None:
        """Label recovery (:mod:`label_recovery`; DLG without ``recover_labels_first`` skips
        it) needs an output layer that is fully connected with bias."""
        if getattr(self, "recover_labels_first", True):
            last_linear_with_bias(model, n_classes)

    def artifacts(self, output: Any, truth: Truth, directory: Path) -> dict[str, str]:
        from attacks.inversion.grid import save_reconstruction_grid

        if not isinstance(output, InversionOutput) or output.image_shape is None:
            return {}
        name = f"{self.registry_name or type(self).__name__}_reconstructions.png"
        save_reconstruction_grid(output, truth, directory / name)
        return {f"{self.registry_name}: originals (top) and reconstructions (bottom)": name}
