"""Label recovery from the output layer's bias gradient (iDLG; counting for batches)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.func import functional_call

from fedguard.api import require
from fedguard.metrics.privacy_attack_metrics import label_multiset_accuracy
from fedguard.types import ServerView, Truth

from ._common import (
    AttackTarget,
    InversionOutput,
    InversionTask,
    ParamLayout,
    Reconstruction,
    TargetedInversion,
    attack_generator,
    last_linear_with_bias,
    observed_direction,
    param_name,
    uniform_init,
)


def idlg_label(output_bias_grad: Tensor) -> int:
    """iDLG: for one sample, ``∂L/∂b_c = p_c − 1[c = y]`` is negative only at the true class."""
    return int(torch.argmin(output_bias_grad))


def count_labels(output_bias_grad: Tensor, n_samples: int, mean_probs: Tensor) -> Tensor:
    """Per-class counts of a batch from the mean-loss bias gradient.

    With mean cross-entropy, ``∂L/∂b_c = p̄_c − n_c / B`` where ``p̄_c`` is the batch's mean
    softmax probability, so ``n_c = B·(p̄_c − ∂L/∂b_c)``; ``p̄`` is estimated by ``mean_probs``.
    Since ``p̄_c ≥ 0``, a negative ``∂L/∂b_c`` proves class ``c`` present: such classes get at
    least one sample (the most negative first if there are more than ``B``), and the rest is
    allotted from the estimates, clipped at 0, by largest remainders so the counts sum to ``B``.
    ``(C,) → (C,)`` int64.
    """
    g = output_bias_grad.double()
    raw = (n_samples * (mean_probs.double() - g)).clamp_min(0.0)  # (C,)
    counts = torch.zeros_like(g, dtype=torch.long)
    negative = torch.nonzero(g < 0).flatten()
    negative = negative[torch.argsort(g[negative], stable=True)][:n_samples]
    counts[negative] = 1
    remaining = n_samples - int(counts.sum())
    if remaining > 0:
        extra = (raw - counts.double()).clamp_min(0.0)
        if extra.sum() <= 0:
            extra = torch.ones_like(extra)
        extra = extra * (remaining / extra.sum())
        floor = torch.floor(extra).long()
        counts += floor
        missing = remaining - int(floor.sum())
        order = torch.argsort(extra - floor.double(), descending=True, stable=True)
        counts[order[:missing]] += 1
    return counts


def mean_probabilities(
    model: nn.Module, layout: ParamLayout, params: Tensor, probes: Tensor
) -> Tensor:
    """Mean softmax of the model over probe inputs ``(P, ...) → (C,)``."""
    with torch.no_grad():
        logits = functional_call(model, layout.unflatten(params), (probes,))
    return torch.softmax(logits.double(), dim=-1).mean(dim=0)


def recover_labels(
    task: InversionTask,
    layout: ParamLayout,
    params: Tensor,
    gradient: Tensor,
    n_samples: int,
    probe_inputs: Tensor | None = None,
    generator: torch.Generator | None = None,
    n_probes: int = 64,
    update: Tensor | None = None,
) -> Tensor:
    """Labels of a batch of ``n_samples`` from the flat gradient ``(d,)``; sorted ``(B,)``.

    One sample: iDLG's arg-min. Batches: :func:`count_labels` with ``p̄`` from ``probe_inputs``
    (e.g. a reconstruction), or from uniform random probes drawn with ``generator``. For a
    multi-step ``update`` Δ the gradient is an average along the local trajectory, so ``p̄`` is
    averaged over the models ``θ + tΔ``, ``t ∈ {0, ¼, ½, ¾, 1}`` (a straight-line stand-in for the
    unknown trajectory).
    """
    prefix = last_linear_with_bias(task.model, task.n_classes)
    bias_grad = gradient[layout.slice_of(param_name(prefix, "bias"))]  # (C,)
    if n_samples == 1:
        return torch.tensor([idlg_label(bias_grad)])
    if probe_inputs is None:
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        probe_inputs = uniform_init(n_probes, task.input_shape, task.data_range, gen)
    probes = probe_inputs.to(task.dtype)
    if update is None:
        probs = mean_probabilities(task.model, layout, params, probes)
    else:
        points = [params + t * update for t in (0.0, 0.25, 0.5, 0.75, 1.0)]
        probs = torch.stack([mean_probabilities(task.model, layout, p, probes) for p in points])
        probs = probs.mean(dim=0)
    counts = count_labels(bias_grad, n_samples, probs)
    return torch.repeat_interleave(torch.arange(task.n_classes), counts)


def labels_for_target(
    task: InversionTask,
    layout: ParamLayout,
    params: Tensor,
    target: AttackTarget,
    generator: torch.Generator | None,
    n_probes: int = 64,
    probe_inputs: Tensor | None = None,
) -> Tensor:
    """:func:`recover_labels` for one attacked update (``g = −Δ/(η·K)``; trajectory-averaged
    ``p̄`` when the client took more than one local step)."""
    return recover_labels(
        task,
        layout,
        params,
        observed_direction(target),
        target.n_samples,
        probe_inputs=probe_inputs,
        generator=generator,
        n_probes=n_probes,
        update=target.delta if target.local_steps > 1 else None,
    )


@dataclass(frozen=True)
class LabelRecovery(TargetedInversion):
    """Recover the labels of a client's batch from the output-layer bias gradient.

    Convention: the loss is the batch-mean cross-entropy, so the observed gradient is rescaled as
    ``g = −Δ/(η·K)`` with the learning rate η and local steps K from ``ServerView.training``;
    batch counting needs η (a single sample does not: only the sign pattern matters).

    Parameters
    ----------
    target_client, max_clients, at_round
        Which clients and rounds are attacked (see :class:`TargetedInversion`).
    n_probes
        Random inputs used to estimate the model's mean prediction ``p̄`` for batches.
    seed
        Seed of the attack's random stream (probes), combined with the round and client.

    References
    ----------
    Zhao, Mopuri, Bilen. "iDLG: Improved Deep Leakage from Gradients." arXiv:2001.02610, 2020.
    Geng, Mou, Li, Li, Wu, Xiao, Ye, Chen. "Towards General Deep Leakage in Federated Learning."
    arXiv:2110.09074, 2021 (batch label counting from the bias gradient).
    Wainakh, Ventola, Müßig, Keim, Garcia Cordero, Zimmer, Grube, Kersting, Mühlhäuser.
    "User-Level Label Leakage from Gradients in Federated Learning." PETS 2022 (negative
    bias-gradient entries mark present classes).
    """

    attack_name: ClassVar[str] = "label_recovery"
    n_probes: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.n_probes >= 1, "n_probes", "a positive integer")

    def reconstructor(
        self, view: ServerView, task: InversionTask, layout: ParamLayout
    ) -> Callable[[AttackTarget], Reconstruction]:
        def invert(target: AttackTarget) -> Reconstruction:
            gen = attack_generator(self.seed, view.round, target.client_id, self.attack_name)
            labels = labels_for_target(
                task, layout, view.global_params, target, gen, n_probes=self.n_probes
            )
            return Reconstruction(
                client_id=target.client_id,
                inputs=torch.empty(0, *task.input_shape),
                labels=labels,
                matching_loss=0.0,
            )

        return invert

    def metrics(self, output: InversionOutput, truth: Truth) -> dict[str, float]:
        """Order-free label accuracy ``Σ_c min(n̂_c, n_c) / B``, averaged over clients."""
        accs = []
        for rec in output.reconstructions:
            if rec.client_id in truth.private_batches:
                true = truth.private_batches[rec.client_id][1]
            elif rec.client_id < 0 and truth.private_batches:
                true = torch.cat([b[1] for b in truth.private_batches.values()])
            else:
                continue
            accs.append(label_multiset_accuracy(rec.labels, true, output.n_classes))
        require(bool(accs), "truth.private_batches", "non-empty for the attacked clients")
        return {
            "label_accuracy": sum(accs) / len(accs),
            "from_aggregate": float(output.from_aggregate),
        }


__all__ = [
    "LabelRecovery",
    "count_labels",
    "idlg_label",
    "labels_for_target",
    "recover_labels",
]
