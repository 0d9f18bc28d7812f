"""What a privacy attack is given: :class:`AttackerKnowledge`, built by the core — never the
simulation, never the ground truth.

An attack's threat model grants the model's architecture, public facts about the setup (rounds,
number of clients), a description of the data (input shape, classes, value range) and, for
membership inference, the evaluation's candidate pool: records whose membership the attack must
guess, mixed from the target's training data and held-out records, plus a public population from
the validation split. Which candidates are members stays in :class:`~fedguard.types.Truth`, which
only metrics see. The pool keeps the data it samples from private; the attack reaches it only
through :meth:`CandidatePool.membership_candidates`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from fedguard.core.federated_data import FederatedData
from fedguard.errors import require


@dataclass(frozen=True)
class DataDescription:
    """What is public about the data: one sample's shape, the classes, the value range."""

    input_shape: tuple[int, ...]
    n_classes: int
    value_range: tuple[float, float] | None
    image_shape: tuple[int, int, int] | None = None
    #: text: the formats of planted secrets (:class:`fedguard.text.secrets.SecretFormat`; public
    #: knowledge — the candidate spaces — never the secrets)
    secret_formats: tuple[Any, ...] = ()


@dataclass(frozen=True)
class MembershipCandidates:
    candidates: tuple[Tensor, Tensor]  # (N, ...) inputs, (N,) labels: members, then non-members
    population: tuple[Tensor, Tensor]  # (P, ...) the attacker's public population
    train_size: int  # size of a reference model's training set


class CandidatePool:
    """The candidate records of a membership evaluation (Carlini et al. 2022's setting): the
    target's members — the attacked client's data, or random training points for the global
    model — and as many random held-out test points; the validation split (else the unused test
    points) is the attacker's population."""

    def __init__(self, data: FederatedData) -> None:
        self.__data = data  # name-mangled: not part of what an attack is given

    @property
    def train_size(self) -> int:
        """Number of training records overall (public: the server sees every client's count)."""
        return len(self.__data.train)

    def membership_candidates(
        self, target: str, client_id: int | None, n_candidates: int, generator: torch.Generator
    ) -> MembershipCandidates:
        data = self.__data
        train, test, validation = data.train, data.test, data.validation
        if target == "client":
            require(client_id is not None, "target_client", "a client id for a client target")
            assert client_id is not None
            xm, ym = data.client_arrays(client_id)
        else:
            idx = torch.randperm(train.features.shape[0], generator=generator)[: n_candidates // 2]
            xm, ym = train.features[idx], train.labels[idx]
        n_members = xm.shape[0]
        order = torch.randperm(len(test), generator=generator)
        require(len(test) > n_members, "data.test_fraction", "large enough to supply non-members")
        x_non, y_non = test.features[order[:n_members]], test.labels[order[:n_members]]
        if len(validation) > 0:
            population = (validation.features, validation.labels)
        else:
            rest = order[n_members:]
            population = (test.features[rest], test.labels[rest])
        train_size = min(len(train), (len(population[0]) + 2 * n_members) // 2)
        return MembershipCandidates(
            (torch.cat([xm, x_non]), torch.cat([ym, y_non])), population, train_size
        )

    def public_population(self) -> tuple[Tensor, Tensor]:
        """The attacker's public sample of the data distribution: the validation split, else the
        test split (never training data) — e.g. to estimate a feature's distribution."""
        data = self.__data
        split = data.validation if len(data.validation) > 0 else data.test
        return split.features, split.labels


#: What a threat model may grant beyond the public facts (data description, rounds, clients):
#: ``architecture`` — an independent copy of the model; ``candidates`` — the membership
#: evaluation's candidate pool and public population.
GRANTS = frozenset({"architecture", "candidates"})


@dataclass(frozen=True)
class AttackerKnowledge:
    """Everything a privacy attack's threat model grants, besides the round's
    :class:`~fedguard.types.ServerView` (what the server saw, with the clients' recipe). What
    the attack's declared threat model (``PrivacyAttack.threat_model``) does not grant is
    ``None``."""

    model: nn.Module | None  # the architecture: an independent copy, its weights the initial ones
    data: DataDescription
    rounds: int
    n_clients: int
    candidates: CandidatePool | None


def attacker_knowledge(
    module: nn.Module,
    data: FederatedData,
    rounds: int,
    n_clients: int,
    grants: frozenset[str] = GRANTS,
) -> AttackerKnowledge:
    """The knowledge ``grants`` (a subset of :data:`GRANTS`) allows, built fresh: the model is
    a deep copy, so nothing an attack does to it reaches the run."""
    unknown = set(grants) - GRANTS
    require(not unknown, "threat_model", f"a subset of {sorted(GRANTS)} (got {sorted(unknown)})")
    shape = tuple(int(v) for v in data.input_shape)
    image = shape if len(shape) == 3 else None
    return AttackerKnowledge(
        model=copy.deepcopy(module) if "architecture" in grants else None,
        data=DataDescription(
            shape,
            int(data.n_classes),
            data.value_range,
            image,  # type: ignore[arg-type]
            tuple(data.secret_formats),
        ),
        rounds=rounds,
        n_clients=n_clients,
        candidates=CandidatePool(data) if "candidates" in grants else None,
    )


__all__ = [
    "GRANTS",
    "AttackerKnowledge",
    "CandidatePool",
    "DataDescription",
    "MembershipCandidates",
    "attacker_knowledge",
]
