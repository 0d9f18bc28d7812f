"""Sequence-level membership inference on a federated language model: loss, zlib ratio and
reference-model LiRA, against the global model or one client's local model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from attacks.inversion._common import ParamLayout, module_params
from attacks.membership._common import attack_generator, membership_metrics
from attacks.text._common import (
    TextTarget,
    attack_round,
    check_text_target,
    resolve_text_target,
    text_module,
    window_tokens,
)
from attacks.text.lm_scoring import sequence_nll
from attacks.text.membership_scores import (
    loss_scores,
    reference_lira_scores,
    zlib_ratio_scores,
)
from fedguard.api import PrivacyAttack, require
from fedguard.core.knowledge import AttackerKnowledge
from fedguard.errors import ConfigError
from fedguard.metrics.privacy_attack_metrics import roc_curve
from fedguard.text.corpus import public_text
from fedguard.text.messages import token_windows
from fedguard.text.tokenizer import encode
from fedguard.types import ServerView, Truth

SCORES = ("loss", "zlib", "lira")


@dataclass(frozen=True)
class SequenceMembershipOutput:
    target: TextTarget
    candidates: Tensor  # (N, L + 1) windows: members first, then non-members (order not used)
    scores: dict[str, Tensor]  # score name → (N,)


def public_windows(length: int) -> Tensor:
    """Windows of ``length`` tokens of the public held-out text (the references' data)."""
    return torch.as_tensor(token_windows(encode(public_text("heldout")), length - 1))


def train_reference(
    module: nn.Module,
    start: Tensor,
    windows: Tensor,
    steps: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
) -> Tensor:
    """SGD on next-token cross-entropy of random batches of ``windows`` ``(M, L + 1)`` from
    ``start`` ``(d,)``; returns the trained flat parameters."""
    layout = ParamLayout.from_module(module)
    params = start.detach().clone().requires_grad_(True)
    for _ in range(steps):
        idx = torch.randint(
            0, windows.shape[0], (min(batch_size, windows.shape[0]),), generator=generator
        )
        batch = windows[idx]
        logits = functional_call(module, layout.unflatten(params), (batch[:, :-1],))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        (grad,) = torch.autograd.grad(loss, params)
        with torch.no_grad():
            params -= lr * grad
    return params.detach()


@dataclass(frozen=True)
class SequenceMembership(PrivacyAttack):
    """Which text windows were in the target's training data?

    Candidates are the target's training windows (the attacked client's, or ``n_candidates/2``
    random training windows for the global model) and as many held-out test windows. Three
    scores, each with AUC and TPR at 1% / 0.1% FPR (Clopper-Pearson intervals):

    * ``loss``: −NLL per token under the target;
    * ``zlib``: −NLL bits / zlib bits (Carlini et al. 2021);
    * ``lira``: offline LiRA against ``n_references`` reference models trained on the public
      held-out text (never on a candidate): for a client target they start from the broadcast
      model and repeat the client's local steps; for the global target they start from the
      architecture's initial weights and take ``reference_steps`` steps.

    ``target``/``target_client``/``at_round`` as in
    :class:`~attacks.text.canary_exposure.CanaryExposure`.

    References
    ----------
    Yeom et al. "Privacy Risk in Machine Learning." IEEE CSF 2018.
    Carlini et al. "Extracting Training Data from Large Language Models." USENIX Security 2021.
    Carlini et al. "Membership Inference Attacks From First Principles." IEEE S&P 2022.
    """

    #: what the core gives it besides the view: the architecture and the candidate pool
    threat_model: ClassVar[frozenset[str]] = frozenset({"architecture", "candidates"})
    target: str = "global"
    target_client: int | None = None
    at_round: int | None = None
    n_candidates: int = 200
    n_references: int = 2
    reference_steps: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        check_text_target(self.target, self.target_client, self.at_round)
        require(self.n_candidates >= 2, "n_candidates", "an integer ≥ 2")
        require(self.n_references >= 0, "n_references", "an integer ≥ 0")
        require(self.reference_steps >= 1, "reference_steps", "an integer ≥ 1")

    def observe(self, view: ServerView, env: Any) -> SequenceMembershipOutput | None:
        if not attack_round(env, view, self.at_round):
            return None
        if not isinstance(env, AttackerKnowledge) or env.candidates is None:
            raise ConfigError(
                "sequence_membership needs the AttackerKnowledge the core builds, with the "
                "candidate pool its threat model grants."
            )
        target = resolve_text_target(view, self.target, self.target_client)
        gen = attack_generator(self.seed, view.round, target.client_id, "sequence_mia")
        # a client target under secure aggregation is the mean local model: its members are
        # every client's data, sampled like the global model's
        scope = "client" if target.client_id is not None else "global"
        pool = env.candidates.membership_candidates(scope, target.client_id, self.n_candidates, gen)
        windows = window_tokens(*pool.candidates)  # (N, L + 1)
        module = text_module(env)
        nll = sequence_nll(module, windows, target.params)
        n_tokens = windows.shape[1] - 1
        scores = {
            "loss": loss_scores(nll, n_tokens),
            "zlib": zlib_ratio_scores(
                nll, [bytes(t for t in r if t < 256) for r in windows.tolist()]
            ),
        }
        if self.n_references:
            scores["lira"] = self._lira(view, env, module, target, windows, -nll, gen)
        return SequenceMembershipOutput(target, windows, scores)

    def _lira(
        self,
        view: ServerView,
        env: AttackerKnowledge,
        module: nn.Module,
        target: TextTarget,
        windows: Tensor,
        target_ll: Tensor,
        gen: torch.Generator,
    ) -> Tensor:
        public = public_windows(windows.shape[1])
        recipe = view.recipe
        lr = recipe.learning_rate if recipe is not None else 0.1
        batch = recipe.batch_size if recipe is not None else 16
        if target.client_id is not None or target.from_aggregate:
            start = view.global_params
            size = round(sum(view.num_samples) / max(len(view.num_samples), 1))
            steps = recipe.local_steps(size) if recipe is not None else self.reference_steps
            batch = recipe.step_batch_size(size) if recipe is not None else batch
        else:
            start, steps = module_params(module), self.reference_steps
        refs = torch.stack(
            [
                -sequence_nll(
                    module, windows, train_reference(module, start, public, steps, batch, lr, gen)
                )
                for _ in range(self.n_references)
            ]
        )
        return reference_lira_scores(target_ll, refs)

    def is_member(self, output: SequenceMembershipOutput, truth: Truth) -> Tensor:
        ids = (
            [output.target.client_id]
            if output.target.client_id is not None
            else list(truth.private_batches)
        )
        members: set[tuple[int, ...]] = set()
        for cid in ids:
            x, _ = truth.private_batches[cid]
            members.update(tuple(row) for row in x.long().tolist())
        return torch.tensor([tuple(row) in members for row in output.candidates[:, :-1].tolist()])

    def metrics(self, output: SequenceMembershipOutput, truth: Truth) -> dict[str, float]:
        labels = self.is_member(output, truth)
        out: dict[str, float] = {"from_aggregate": float(output.target.from_aggregate)}
        for name, scores in output.scores.items():
            out.update({f"{name}.{k}": v for k, v in membership_metrics(scores, labels).items()})
        return out

    def artifacts(self, output: Any, truth: Truth, directory: Path) -> dict[str, str]:
        if not isinstance(output, SequenceMembershipOutput):
            return {}
        labels = self.is_member(output, truth)
        curves = {}
        for name, scores in output.scores.items():
            roc = roc_curve(scores, labels)
            curves[name] = {"fpr": [float(v) for v in roc.fpr], "tpr": [float(v) for v in roc.tpr]}
        file = f"{self.registry_name or 'sequence_membership'}_rocs.json"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / file).write_text(json.dumps(curves))
        return {f"{self.registry_name}: ROC": file}


__all__ = [
    "SCORES",
    "SequenceMembership",
    "SequenceMembershipOutput",
    "public_windows",
    "train_reference",
]
