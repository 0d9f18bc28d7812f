"""Shared machinery of the text attacks: the attacked model, public facts, ground-truth lookups.

* :func:`resolve_text_target` — the attacked parameters: the global model of the attacked round,
  or one client's local model ``θ_global + Δ_i`` (its adapter update when adapters are trained);
  under secure aggregation only the mean local model ``θ_global + ΣΔ / n`` is visible and the
  target says so (``from_aggregate``).
* :func:`window_tokens` — a text sample ``(x, y)`` as the token sequence it was cut from.
* :func:`secrets_in` — the planted secrets a target's training data holds, found in the ground
  truth (:class:`~fedguard.types.Truth`, metrics only) by matching each public format.

The secret formats are public knowledge the threat model grants (Carlini et al. rank a canary
among its format's candidates): an attack takes them as its ``formats`` parameter (default: the
dataset's default formats), never from the data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from attacks.inversion._common import env_module
from fedguard.api import require
from fedguard.core.knowledge import AttackerKnowledge
from fedguard.errors import ConfigError
from fedguard.text.secrets import DEFAULT_FORMATS, SLOT_VALUES, SecretFormat, parse_formats
from fedguard.text.tokenizer import decode
from fedguard.types import ServerView, Truth

TARGETS = ("global", "client")
DEFAULT_TEMPLATES: dict[str, str] = {f.name: f.template for f in DEFAULT_FORMATS}


@dataclass(frozen=True)
class TextTarget:
    params: Tensor  # (d,)
    client_id: int | None  # None: the global model (or the aggregate's mean model)
    from_aggregate: bool
    round: int


def check_text_target(target: str, target_client: int | None, at_round: int | None) -> None:
    require(target in TARGETS, "target", "'global' or 'client'")
    require(target_client is None or target_client >= 0, "target_client", "a client id ≥ 0 or None")
    require(at_round is None or at_round >= 0, "at_round", "a round index ≥ 0, or None (last)")


def attack_round(env: Any, view: ServerView, at_round: int | None) -> bool:
    """``at_round`` given: that round only; ``None``: the run's last round (every call when the
    environment does not say how many rounds there are)."""
    if at_round is not None:
        return view.round == at_round
    if isinstance(env, AttackerKnowledge):
        return view.round == env.rounds - 1
    return True


def resolve_text_target(view: ServerView, target: str, target_client: int | None) -> TextTarget:
    if target == "global":
        return TextTarget(view.global_params.detach(), None, False, view.round)
    if view.updates is None:
        mean = view.global_params + view.update_sum / max(len(view.client_ids), 1)
        return TextTarget(mean.detach(), None, True, view.round)
    cid = view.client_ids[0] if target_client is None else target_client
    if cid not in view.client_ids:
        raise ConfigError(
            f"target_client must be one of this round's clients {view.client_ids} when target "
            "is 'client'."
        )
    row = view.client_ids.index(cid)
    return TextTarget((view.global_params + view.updates[row]).detach(), cid, False, view.round)


def text_module(env: Any) -> nn.Module:
    """The attacker's copy of the language model (frozen weights, e.g. a pre-trained base under
    adapters, are part of the architecture it is given)."""
    return env_module(env).eval()


def formats_of(templates: Mapping[str, str]) -> tuple[SecretFormat, ...]:
    return parse_formats(dict(templates))


def formats_for(env: Any, templates: Mapping[str, str] | None) -> tuple[SecretFormat, ...]:
    """The secret formats an attack uses: its own ``formats`` parameter when given, else the
    public formats the core describes (:attr:`DataDescription.secret_formats`), else the
    dataset's defaults."""
    if templates is not None:
        return formats_of(templates)
    described = getattr(getattr(env, "data", None), "secret_formats", ())
    if described:
        return tuple(described)
    return DEFAULT_FORMATS


def window_tokens(x: Tensor, y: Tensor) -> Tensor:
    """Text samples ``x (N, L)`` (ids, possibly float) and next tokens ``y (N, L)`` → the
    ``(N, L + 1)`` windows they were cut from."""
    return torch.cat([x.long(), y.long()[:, -1:]], dim=1)


def format_pattern(fmt: SecretFormat) -> re.Pattern[str]:
    """A regular expression matching every candidate of ``fmt`` (and nothing else)."""
    parts = re.split(r"\{([^{}]*)\}", fmt.template)
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out.append(re.escape(part))
        elif part in SLOT_VALUES:
            out.append("(?:" + "|".join(map(re.escape, SLOT_VALUES[part])) + ")")
        else:
            out.append(rf"\d{{{int(part[1:])}}}")
    return re.compile("".join(out))


@dataclass(frozen=True)
class FoundSecret:
    format: str
    index: int
    text: str
    client: int
    occurrences: int  # windows of the client's training data that hold it


def secrets_in(
    truth: Truth, client_id: int | None, formats: tuple[SecretFormat, ...]
) -> list[FoundSecret]:
    """The secrets of the target's clients (every client's for the global model), ordered by
    client, format, index: from :attr:`Truth.secrets` when the core filled it (``occurrences``:
    times planted), else found by matching each format in the ground truth's training windows
    (``occurrences``: windows holding it)."""
    names = {f.name for f in formats}
    if truth.secrets:
        chosen = [
            s
            for s in truth.secrets
            if s.format in names and s.client >= 0 and (client_id is None or s.client == client_id)
        ]
        return [
            FoundSecret(s.format, s.index, s.text, s.client, s.repetitions)
            for s in sorted(chosen, key=lambda s: (s.client, s.format, s.index))
        ]
    clients = [client_id] if client_id is not None else sorted(truth.private_batches)
    found: dict[tuple[int, str, int], int] = {}
    texts: dict[tuple[int, str, int], str] = {}
    for cid in clients:
        if cid not in truth.private_batches:
            raise ConfigError(f"the truth holds no data for client {cid}.")
        x, y = truth.private_batches[cid]
        for row in window_tokens(x, y).tolist():
            text = decode(row)
            for fmt in formats:
                for match in format_pattern(fmt).finditer(text):
                    index = fmt.index_of(match.group(0))
                    if index is None:
                        continue
                    key = (cid, fmt.name, index)
                    found[key] = found.get(key, 0) + 1
                    texts[key] = match.group(0)
    return [
        FoundSecret(name, index, texts[(cid, name, index)], cid, count)
        for (cid, name, index), count in sorted(found.items())
    ]


__all__ = [
    "DEFAULT_TEMPLATES",
    "FoundSecret",
    "TextTarget",
    "attack_round",
    "check_text_target",
    "format_pattern",
    "formats_of",
    "resolve_text_target",
    "secrets_in",
    "text_module",
    "window_tokens",
]
