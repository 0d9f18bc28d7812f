"""Label recovery from the output layer's bias gradient (iDLG; counting for batches)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from attacks.inversion._common import (
    InversionOutput,
    InversionTask,
    ParamLayout,
    Reconstruction,
    as_inversion_task,
    attack_generator,
    check_common_fields,
    last_linear_with_bias,
    observed_direction,
    param_name,
    select_targets,
    uniform_init,
)
from fedguard.api import PrivacyAttack, require
from fedguard.metrics.privacy_attack_metrics import label_multiset_accuracy
from fedguard.types import ServerView, Truth


def idlg_label(output_bias_grad: Tensor) -> int:
    """iDLG: for one sample, ``∂L/∂b_c = p_c − 1[c = y]`` is negative only at the true class."""
    return int(torch.argmin(output_bias_grad))


def count_labels(output_bias_grad: Tensor, n_samples: int, mean_probs: Tensor) -> Tensor:
    """Per-class counts of a batch from the mean-loss bias gradient.

    With mean cross-entropy, ``∂L/∂b_c = p̄_c − n_c / B`` where ``p̄_c`` is the batch's mean
    softmax probability, so ``n_c = B·(p̄_c − ∂L/∂b_c)``. ``p̄`` is estimated by ``mean_probs``
    (the model's mean prediction on probe inputs); estimates are clipped at 0 and rounded to
    integers summing to ``B`` by largest remainders. ``(C,) → (C,)`` int64.
    """
    raw = (n_samples * (mean_probs.double() - output_bias_grad.double())).clamp_min(0.0)  # (C,)
    if raw.sum() <= 0:
        raw = torch.ones_like(raw)
    raw = raw * (n_samples / raw.sum())
    counts = torch.floor(raw).long()
    missing = n_samples - int(counts.sum())
    if missing > 0:
        remainder = raw - counts.double()
        counts[torch.argsort(remainder, descending=True, stable=True)[:missing]] += 1
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
) -> Tensor:
    """Labels of a batch of ``n_samples`` from the flat gradient ``(d,)``; sorted ``(B,)``.

    One sample: iDLG's arg-min. Batches: :func:`count_labels` with ``p̄`` from ``probe_inputs``
    (e.g. a reconstruction), or from uniform random probes drawn with ``generator``.
    """
    prefix = last_linear_with_bias(task.model, task.n_classes)
    bias_grad = gradient[layout.slice_of(param_name(prefix, "bias"))]  # (C,)
    if n_samples == 1:
        return torch.tensor([idlg_label(bias_grad)])
    if probe_inputs is None:
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        probe_inputs = uniform_init(n_probes, task.input_shape, task.data_range, gen)
    probs = mean_probabilities(task.model, layout, params, probe_inputs.to(task.dtype))
    counts = count_labels(bias_grad, n_samples, probs)
    return torch.repeat_interleave(torch.arange(task.n_classes), counts)


@dataclass(frozen=True)
class LabelRecovery(PrivacyAttack):
    """Recover the labels of a client's batch from the output-layer bias gradient.

    Convention: the loss is the batch-mean cross-entropy, so the observed gradient is rescaled as
    ``g = −Δ/(η·K)`` with the learning rate η and local steps K from ``ServerView.training``;
    batch counting needs η (a single sample does not: only the sign pattern matters).

    Parameters
    ----------
    target_client
        Client id to attack; ``None`` attacks the first ``max_clients`` clients of the view.
    max_clients
        How many clients to attack per round when ``target_client`` is ``None`` (``None``: all).
    at_round
        The round whose view is attacked (0-based); ``None`` attacks every round.
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
    "User-Level Label Leakage from Gradients in Federated Learning." PETS 2022.
    """

    target_client: int | None = None
    max_clients: int | None = 1
    at_round: int | None = 0
    n_probes: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        check_common_fields(self.at_round, self.max_clients)
        require(self.n_probes >= 1, "n_probes", "a positive integer")

    def observe(self, view: ServerView, env: Any) -> InversionOutput | None:
        if self.at_round is not None and view.round != self.at_round:
            return None
        task = as_inversion_task(env)
        layout = ParamLayout.from_module(task.model)
        recs = []
        for target in select_targets(view, self.target_client, None, self.max_clients):
            gen = attack_generator(self.seed, view.round, target.client_id, "label_recovery")
            labels = recover_labels(
                task,
                layout,
                view.global_params,
                observed_direction(target),
                target.n_samples,
                generator=gen,
                n_probes=self.n_probes,
            )
            recs.append(
                Reconstruction(
                    client_id=target.client_id,
                    inputs=torch.empty(0, *task.input_shape),
                    labels=labels,
                    matching_loss=0.0,
                )
            )
        return InversionOutput(
            attack="label_recovery",
            reconstructions=tuple(recs),
            from_aggregate=view.updates is None,
            n_clients_in_aggregate=len(view.client_ids) if view.updates is None else 1,
            data_range=task.data_range,
            image_shape=task.image_shape,
            n_classes=task.n_classes,
        )

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


__all__ = ["LabelRecovery", "count_labels", "idlg_label", "recover_labels"]
