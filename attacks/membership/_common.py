"""Shared machinery of the membership-inference attacks.

* :class:`MembershipTask` — the attacker's knowledge (the ``env`` of ``observe``): the model
  architecture, the candidate points to score, population data for reference models, and the
  recipe the target was trained with.
* :func:`resolve_target` — the attacked parameters: the final global model, or one client's
  local model ``θ_global + Δ_i`` (the server attacking that client; members = the client's data).
* :func:`client_recipe` — a client's local round as reference-model training, read from the
  typed :class:`~fedguard.types.LocalTrainingRecipe` the core puts in the view (steps, batches
  with the partial last one, momentum, FedSGD's single full-batch step, the proximal term).
* :func:`reference_models` — shadow / reference models trained on random halves of
  ``candidates ∪ population`` with :mod:`attacks.membership._shadow` (vectorized); a client-level
  target's references start from ``θ_global`` and repeat the client's local training exactly.
* :func:`score_membership` — AUC and TPR at 1% / 0.1% FPR with Clopper-Pearson intervals;
  members are the candidates found (row-exact) in the target's training data from :class:`Truth`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from fedguard.api import PrivacyAttack, require
from fedguard.core.knowledge import AttackerKnowledge
from fedguard.errors import ConfigError
from fedguard.metrics.privacy_attack_metrics import auc, roc_curve, tpr_at_fpr
from fedguard.rng import torch_generator
from fedguard.types import LocalTrainingRecipe, ServerView, Truth

from ..inversion._common import ParamLayout, env_module
from ._shadow import (
    TrainingRecipe,
    draw_batches,
    init_stacked,
    member_indices,
    random_subsets,
    stacked_logits,
    train_stacked,
)

TARGETS = ("global", "client")
NO_RECIPE = (
    "a membership attack with reference models needs the clients' local training recipe: "
    "build the ServerView with recipe=LocalTrainingRecipe(...)."
)


@dataclass(frozen=True)
class MembershipTask:
    """What a membership attacker knows (the ``env`` of ``observe``).

    ``target_params`` is the final global model; when ``None`` the view's ``global_params`` is
    attacked. ``recipe`` is how the global target was trained (reference models for a client
    target repeat the client's round from the view's :attr:`~fedguard.types.ServerView.recipe`
    instead).
    """

    model: nn.Module
    candidates: tuple[Tensor, Tensor]  # (N, ...) inputs, (N,) labels
    population: tuple[Tensor, Tensor]  # (P, ...) inputs, (P,) labels
    recipe: TrainingRecipe
    target_params: Tensor | None = None  # (d,)
    train_size: int | None = None  # size of the global target's training set (None: half the pool)


def as_membership_task(
    env: Any,
    view: ServerView,
    target: str,
    target_client: int | None,
    n_candidates: int,
    shadow_steps: int | None,
    generator: torch.Generator,
) -> MembershipTask:
    """A :class:`MembershipTask` as given, or built from the core's simulation.

    From a simulation (``env.data`` with ``train``/``test``/``validation`` splits): the candidates
    are the target's members — the attacked client's data, or ``n_candidates/2`` random training
    points for the global model — and as many random test points (non-members); the attacker's
    population is the validation split (the unused test points when it is empty). Reference
    models for the global model train on ``len(train)`` points for ``shadow_steps`` SGD steps
    at the local learning rate (default: FedAvg — rounds × local epochs × ⌈mean client size /
    batch⌉ mini-batch steps with the local momentum; FedSGD — one full-batch step per round) —
    an approximation of federated training, stated as such.
    """
    if isinstance(env, MembershipTask):
        return env
    if not isinstance(env, AttackerKnowledge):
        raise ConfigError(
            "a membership attack's environment must be a MembershipTask or the AttackerKnowledge "
            "the core builds."
        )
    if env.candidates is None or env.model is None:
        raise ConfigError(
            "a membership attack needs the candidate pool and the architecture: declare "
            "threat_model = {'architecture', 'candidates'}."
        )
    local = view_recipe(view)
    cid = target_client if target_client is not None else view.client_ids[0]
    pool = env.candidates.membership_candidates(
        target, cid if target == "client" else None, n_candidates, generator
    )
    population, train_size = pool.population, pool.train_size
    mean_size = max(1, round(env.candidates.train_size / env.n_clients))
    if local.algorithm == "fedsgd":  # each round one full-batch gradient step over all data
        steps = shadow_steps or env.rounds
        recipe = TrainingRecipe(steps=steps, batch_size=train_size, lr=local.learning_rate)
    else:
        steps = shadow_steps or env.rounds * local.local_steps(mean_size)
        recipe = TrainingRecipe(
            steps=steps,
            batch_size=local.batch_size,
            lr=local.learning_rate,
            momentum=local.momentum,
        )
    return MembershipTask(
        model=env_module(env),
        candidates=pool.candidates,
        population=population,
        recipe=recipe,
        train_size=train_size,
    )


def attack_this_round(env: Any, view: ServerView, at_round: int | None) -> bool:
    """``at_round`` given: only that round; ``None``: the last round of a simulation (read from
    ``AttackerKnowledge.rounds``), or every call when the environment does not say."""
    if at_round is not None:
        return view.round == at_round
    if isinstance(env, AttackerKnowledge):
        return view.round == env.rounds - 1
    return True


@dataclass(frozen=True)
class ResolvedTarget:
    params: Tensor  # (d,)
    client_id: int | None  # None for the global model
    start: Tensor | None  # (d,) references start here (client target); None = fresh init
    recipe: TrainingRecipe | None  # None: the view carried no recipe (no references possible)
    from_aggregate: bool
    train_size: int | None  # references train on random subsets of this size (None: half)


def view_recipe(view: ServerView) -> LocalTrainingRecipe:
    """The clients' local training recipe the core handed over with the view."""
    if view.recipe is None:
        raise ConfigError(NO_RECIPE)
    return view.recipe


def client_recipe(local: LocalTrainingRecipe, n_samples: int) -> TrainingRecipe:
    """Reference-model training that repeats one client's local round on ``n_samples`` points:
    the same number of steps, batch size (partial last batch kept; FedSGD: one full batch),
    learning rate, momentum and proximal term (pulling towards the start, ``θ_global``)."""
    return TrainingRecipe(
        steps=local.local_steps(n_samples),
        batch_size=local.step_batch_size(n_samples),
        lr=local.learning_rate,
        momentum=local.momentum,
        prox_mu=local.prox_mu,
        drop_last=False,
    )


def resolve_target(
    view: ServerView, task: MembershipTask, target: str, target_client: int | None
) -> ResolvedTarget:
    """The attacked parameters and how its reference models train.

    A client target's references start from ``θ_global`` and train with :func:`client_recipe`
    of the view's :class:`~fedguard.types.LocalTrainingRecipe` on as many points as the client
    holds; under secure aggregation the mean local model is attacked (a client of mean size).
    A view without a recipe resolves to ``recipe=None``: enough for attacks without reference
    models; :func:`reference_models` then refuses.
    """
    if target == "global":
        params = task.target_params if task.target_params is not None else view.global_params
        return ResolvedTarget(params.detach(), None, None, task.recipe, False, task.train_size)
    if view.updates is None:
        # Secure aggregation: only the mean local model is visible; reported as such.
        mean = view.global_params + view.update_sum / len(view.client_ids)
        size = round(sum(view.num_samples) / len(view.client_ids))
        recipe = None if view.recipe is None else client_recipe(view.recipe, size)
        return ResolvedTarget(mean.detach(), None, view.global_params.detach(), recipe, True, size)
    if target_client is None and view.client_ids:
        target_client = view.client_ids[0]
    if target_client is None or target_client not in view.client_ids:
        raise ConfigError(
            f"target_client must be one of this round's clients {view.client_ids} when "
            "target is 'client'."
        )
    row = view.client_ids.index(target_client)
    params = view.global_params + view.updates[row]
    size = view.num_samples[row]
    return ResolvedTarget(
        params.detach(),
        target_client,
        view.global_params.detach(),
        None if view.recipe is None else client_recipe(view.recipe, size),
        False,
        size,
    )


@dataclass(frozen=True)
class ReferenceModels:
    """Logits of the target and of ``K`` reference models on ``pool = candidates ∪ population``."""

    target_logits: Tensor  # (N + P, C)
    reference_logits: Tensor  # (K, N + P, C)
    reference_in: Tensor  # (K, N + P) bool: pool point in the reference model's training set
    pool_labels: Tensor  # (N + P,)
    n_candidates: int


def reference_models(
    task: MembershipTask, target: ResolvedTarget, n_models: int, generator: torch.Generator
) -> ReferenceModels:
    """Train ``n_models`` references on random subsets of the pool (vectorized) and evaluate."""
    if target.recipe is None:
        raise ConfigError(NO_RECIPE)
    xc, yc = task.candidates
    xp, yp = task.population
    pool_x = torch.cat([xc, xp])
    pool_y = torch.cat([yc, yp])
    layout = ParamLayout.from_module(task.model)
    mask = reference_masks(n_models, xc.shape[0], xp.shape[0], target.train_size, generator)
    batches = draw_batches(member_indices(mask), target.recipe, generator)
    if target.start is None:
        init = init_stacked(layout, n_models, generator)
    else:
        init = target.start.expand(n_models, -1).clone()
    params = train_stacked(task.model, init, pool_x, pool_y, batches, target.recipe)  # (K, d)
    ref_logits = stacked_logits(task.model, params, pool_x)
    tgt_logits = stacked_logits(task.model, target.params[None], pool_x)[0]
    return ReferenceModels(tgt_logits, ref_logits, mask, pool_y, xc.shape[0])


def reference_masks(
    n_models: int,
    n_candidates: int,
    n_population: int,
    train_size: int | None,
    generator: torch.Generator,
) -> Tensor:
    """Which pool points (candidates, then population) each reference model trains on, ``(K, N +
    P)``, each row holding ``train_size`` points.

    LiRA's and RMIA's online tests need every candidate IN about half of the models (Carlini et
    al. 2022: random halves of the pool). A training set of half the pool or more (the global
    model's) is a uniformly random subset of the whole pool. A smaller one — a client's, of its
    own size — drawn from the whole pool would rarely hold a candidate: 17 of 1,234 points on the
    CIFAR stand-in, so a candidate sat in 0.1 of 8 shadows on average and the IN Gaussian was
    mostly a pooled guess (or, with no candidate IN at all, NaN scores that stopped the run).
    It therefore takes a uniformly random half of the candidates (for a client target its
    members' count, the whole training set) and fills the rest from the population.
    """
    pool = n_candidates + n_population
    if train_size is None or 2 * train_size >= pool or n_candidates < 2:
        return random_subsets(n_models, pool, generator, train_size)
    from_candidates = min(train_size, n_candidates // 2)
    mask = random_subsets(n_models, n_candidates, generator, from_candidates)  # (K, N)
    rest = train_size - from_candidates
    filled = (
        random_subsets(n_models, n_population, generator, rest)
        if rest > 0
        else torch.zeros(n_models, n_population, dtype=torch.bool)
    )
    return torch.cat([mask, filled], dim=1)


def attack_generator(
    seed: int, round_index: int, client: int | None, attack: str
) -> torch.Generator:
    return torch_generator(
        seed, round_index, -1 if client is None else client, f"privacy_attack/{attack}"
    )


def log_softmax64(logits: Tensor) -> Tensor:
    return torch.log_softmax(logits.double(), dim=-1)


def true_class_logprob(logits: Tensor, labels: Tensor) -> Tensor:
    """``log p_y`` in float64 from logits ``(..., N, C)`` and labels ``(N,)`` → ``(..., N)``."""
    logp = log_softmax64(logits)
    idx = labels.long().expand(logp.shape[:-1]).unsqueeze(-1)
    return torch.gather(logp, -1, idx).squeeze(-1)


# --------------------------------------------------------------------------------------------
# Output and scoring


@dataclass(frozen=True)
class MembershipOutput:
    attack: str
    scores: Tensor  # (N,) higher = more likely a member
    candidates: tuple[Tensor, Tensor]
    client_id: int | None  # None: the global model
    from_aggregate: bool
    info: Mapping[str, float] = field(default_factory=dict)


def _row_keys(x: Tensor, y: Tensor) -> list[bytes]:
    flat = torch.cat([x.reshape(x.shape[0], -1).double(), y.reshape(-1, 1).double()], dim=1)
    return [row.numpy().tobytes() for row in flat]


def membership_labels(output: MembershipOutput, truth: Truth) -> Tensor:
    """Candidates that appear (exactly, with their label) in the target's training data."""
    if output.client_id is not None:
        if output.client_id not in truth.private_batches:
            raise ConfigError(f"the truth holds no data for client {output.client_id}.")
        batches = [truth.private_batches[output.client_id]]
    else:
        batches = list(truth.private_batches.values())
    require(bool(batches), "truth.private_batches", "non-empty for membership scoring")
    members = set()
    for xb, yb in batches:
        members.update(_row_keys(xb, yb))
    keys = _row_keys(*output.candidates)
    return torch.tensor([k in members for k in keys])


def membership_metrics(scores: Tensor, is_member: Tensor) -> dict[str, float]:
    """AUC, TPR at 1% and 0.1% FPR with 95% Clopper-Pearson intervals and reliability flags.

    TPR at a target FPR follows the LiRA reference (the last ROC point with FPR strictly below
    the target, :func:`~fedguard.metrics.privacy_attack_metrics.tpr_at_fpr`). Per target:
    ``_reliable`` (0 when fewer than 1/target non-members or a tie at the threshold),
    ``_tied`` (1 when members and non-members share the score at the threshold) and
    ``_if_ties_broken`` (the TPR if that tie were broken in the members' favour).
    """
    out = {"auc": auc(scores, is_member)}
    roc = roc_curve(scores, is_member)
    out["n_members"] = float(roc.n_members)
    out["n_nonmembers"] = float(roc.n_nonmembers)
    for fpr, tag in ((0.01, "1pct"), (0.001, "0.1pct")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            r = tpr_at_fpr(scores, is_member, fpr)
        out[f"tpr_at_{tag}_fpr"] = r.tpr
        out[f"tpr_at_{tag}_fpr_lower"] = r.tpr_interval[0]
        out[f"tpr_at_{tag}_fpr_upper"] = r.tpr_interval[1]
        out[f"tpr_at_{tag}_fpr_reliable"] = float(r.reliable)
        out[f"tpr_at_{tag}_fpr_tied"] = float(r.tied_at_threshold)
        out[f"tpr_at_{tag}_fpr_if_ties_broken"] = r.tpr_if_ties_broken
    return out


def reliability_warnings(result: Mapping[str, float]) -> list[str]:
    """One sentence per reason a TPR-at-FPR figure of :func:`membership_metrics` is unreliable."""
    notes = []
    n_non = result["n_nonmembers"]
    short = [f"{fpr:.1%}" for fpr in (0.01, 0.001) if n_non * fpr < 1.0]
    if short:
        notes.append(
            f"only {int(n_non)} non-members: TPR at {' and '.join(short)} FPR is not meaningful "
            "below 1/(number of non-members)."
        )
    for fpr, tag in ((0.01, "1pct"), (0.001, "0.1pct")):
        if result[f"tpr_at_{tag}_fpr_tied"]:
            notes.append(
                f"TPR at {fpr:.1%} FPR depends on tie-breaking: members and non-members share "
                f"the score at the threshold (TPR {result[f'tpr_at_{tag}_fpr']:.3f}, "
                f"{result[f'tpr_at_{tag}_fpr_if_ties_broken']:.3f} if broken for the members)."
            )
    return notes


def score_membership(output: MembershipOutput, truth: Truth) -> dict[str, float]:
    is_member = membership_labels(output, truth)
    result = membership_metrics(output.scores, is_member)
    for note in reliability_warnings(result):
        warnings.warn(note, UserWarning, stacklevel=2)
    result["from_aggregate"] = float(output.from_aggregate)
    return result


def check_target(
    target: str, target_client: int | None, at_round: int | None = None, n_candidates: int = 2
) -> None:
    require(target in TARGETS, "target", "'global' or 'client'")
    require(at_round is None or at_round >= 0, "at_round", "a round index ≥ 0, or None (last)")
    require(n_candidates >= 2, "n_candidates", "an integer ≥ 2")
    require(target_client is None or target_client >= 0, "target_client", "a client id ≥ 0 or None")


__all__ = [
    "MembershipOutput",
    "MembershipTask",
    "ReferenceModels",
    "ResolvedTarget",
    "as_membership_task",
    "attack_generator",
    "attack_this_round",
    "check_target",
    "client_recipe",
    "membership_labels",
    "membership_metrics",
    "reference_models",
    "reliability_warnings",
    "resolve_target",
    "score_membership",
    "true_class_logprob",
    "view_recipe",
]


class MembershipAttack(PrivacyAttack):
    """Base of the membership attacks: their report artifact is the ROC curve's data.

    ``observe`` is shared: on the attacked round it builds the :class:`MembershipTask` (candidates
    drawn from the stream ``"<attack_name>/candidates"``), resolves the target and wraps what
    :meth:`score_candidates` returns in a :class:`MembershipOutput`; metrics are
    :func:`score_membership`. Subclasses are frozen dataclasses with the fields below.

    Parameters
    ----------
    target, target_client
        ``"global"`` (final model) or ``"client"`` (``θ_global + Δ`` of ``target_client``;
        ``None``: the view's first client).
    at_round
        Round whose view is attacked; ``None``: the last round of the run.
    n_candidates
        Points scored when candidates come from a simulation (half members, half test points).
    shadow_steps
        SGD steps of each reference model for a global target built from a simulation
        (default: FedAvg rounds × local epochs × ⌈mean client size / batch⌉; FedSGD rounds).
    seed
        Seed of the attack's random stream.
    """

    threat_model: ClassVar[frozenset[str]] = frozenset({"architecture", "candidates"})

    attack_name: ClassVar[str]
    target: str
    target_client: int | None
    at_round: int | None
    n_candidates: int
    seed: int
    #: SGD steps of reference models; attacks without reference models keep ``None``.
    shadow_steps: int | None = None

    def score_candidates(
        self, view: ServerView, task: MembershipTask, tgt: ResolvedTarget
    ) -> tuple[Tensor, Mapping[str, float]]:
        """``(scores (N,), info)`` for the task's candidates against the resolved target."""
        raise NotImplementedError  # abstract

    def observe(self, view: ServerView, env: Any) -> MembershipOutput | None:
        if not attack_this_round(env, view, self.at_round):
            return None
        task = as_membership_task(
            env,
            view,
            self.target,
            self.target_client,
            self.n_candidates,
            self.shadow_steps,
            attack_generator(
                self.seed, view.round, self.target_client, f"{self.attack_name}/candidates"
            ),
        )
        tgt = resolve_target(view, task, self.target, self.target_client)
        scores, info = self.score_candidates(view, task, tgt)
        return MembershipOutput(
            attack=self.attack_name,
            scores=scores,
            candidates=task.candidates,
            client_id=tgt.client_id,
            from_aggregate=tgt.from_aggregate,
            info=info,
        )

    def metrics(self, output: MembershipOutput, truth: Truth) -> dict[str, float]:
        return score_membership(output, truth)

    def artifacts(self, output: Any, truth: Truth, directory: Path) -> dict[str, str]:
        if not isinstance(output, MembershipOutput):
            return {}
        roc = roc_curve(output.scores, membership_labels(output, truth))
        name = f"{self.registry_name or type(self).__name__}_roc.json"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(
            json.dumps({"fpr": [float(v) for v in roc.fpr], "tpr": [float(v) for v in roc.tpr]})
        )
        return {f"{self.registry_name}: ROC": name}
