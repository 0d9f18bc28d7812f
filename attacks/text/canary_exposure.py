"""Canary exposure of planted secrets (The Secret Sharer), as an observer of the server's view."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from attacks.membership._common import attack_generator
from attacks.text._common import (
    TextTarget,
    attack_round,
    check_text_target,
    formats_for,
    formats_of,
    resolve_text_target,
    secrets_in,
    text_module,
)
from attacks.text.exposure import exact_exposure, skew_normal_exposure
from attacks.text.lm_scoring import sequence_nll
from fedguard.api import PrivacyAttack, require
from fedguard.errors import ConfigError
from fedguard.text.secrets import SecretFormat
from fedguard.text.tokenizer import encode
from fedguard.types import ServerView, Truth


def texts_nll(module: nn.Module, params: Tensor, texts: Sequence[str]) -> Tensor:
    """NLL (nats) of each text after its first byte under ``params``; texts grouped by length."""
    ids = [encode(t) for t in texts]
    context = int(getattr(module, "context", 0) or 0)
    longest = max((len(i) for i in ids), default=0)
    if context and longest - 1 > context:
        raise ConfigError(
            f"formats: a candidate of {longest} bytes does not fit model.context ({context}); "
            "raise model.context or drop the format."
        )
    out = torch.empty(len(ids), dtype=torch.float64)
    for length in sorted({len(i) for i in ids}):
        rows = [k for k, i in enumerate(ids) if len(i) == length]
        out[rows] = sequence_nll(module, torch.tensor([ids[k] for k in rows]), params)
    return out


@dataclass(frozen=True)
class ExposureOutput:
    """The target model and, per format, its candidates' NLLs: all of them (``exact``) or a
    uniform sample (skew-normal extrapolation)."""

    module: nn.Module
    target: TextTarget
    formats: tuple[SecretFormat, ...]
    candidate_nll: dict[str, Tensor]
    exact: dict[str, bool]

    def secret_nll(self, texts: Sequence[str]) -> Tensor:
        return texts_nll(self.module, self.target.params, texts)


@dataclass(frozen=True)
class CanaryExposure(PrivacyAttack):
    """Exposure of every planted secret of the target: ``log2|R| − log2 rank``.

    The server scores the candidates of each public secret format under the attacked model —
    every candidate when the format has at most ``exact_limit`` of them, otherwise
    ``n_samples`` drawn uniformly (keyed stream) for Carlini et al.'s skew-normal
    extrapolation. The secrets themselves come only from the ground truth, when scored.

    Parameters
    ----------
    target, target_client
        ``"global"`` (the model broadcast in the attacked round) or ``"client"``
        (``θ_global + Δ`` of ``target_client``, default the round's first client; under secure
        aggregation the mean local model, reported with ``from_aggregate = 1``).
    at_round
        Round attacked (``None``: the last).
    formats
        The public secret formats ``{name: template}`` (default: those the core describes in
        ``AttackerKnowledge.data.secret_formats``, else the dataset's defaults).
    exact_limit, n_samples, seed
        Enumeration bound, sample size of the extrapolation and its stream's seed.

    References
    ----------
    Carlini, Liu, Erlingsson, Kos, Song. "The Secret Sharer: Evaluating and Testing Unintended
    Memorization in Neural Networks." USENIX Security 2019.
    """

    #: what the core gives it besides the view: the architecture
    threat_model: ClassVar[frozenset[str]] = frozenset({"architecture"})
    target: str = "global"
    target_client: int | None = None
    at_round: int | None = None
    formats: dict[str, str] | None = None
    exact_limit: int = 20_000
    n_samples: int = 2_000
    seed: int = 0

    def __post_init__(self) -> None:
        check_text_target(self.target, self.target_client, self.at_round)
        if self.formats is not None:
            formats_of(self.formats)
        require(self.exact_limit >= 1, "exact_limit", "an integer ≥ 1")
        require(self.n_samples >= 10, "n_samples", "an integer ≥ 10")

    def observe(self, view: ServerView, env: Any) -> ExposureOutput | None:
        if not attack_round(env, view, self.at_round):
            return None
        target = resolve_text_target(view, self.target, self.target_client)
        module = text_module(env)
        formats = formats_for(env, self.formats)
        nll: dict[str, Tensor] = {}
        exact: dict[str, bool] = {}
        for fmt in formats:
            exact[fmt.name] = fmt.size <= self.exact_limit
            indices: list[int] | range = range(fmt.size)
            if not exact[fmt.name]:
                gen = attack_generator(
                    self.seed, view.round, target.client_id, f"exposure/{fmt.name}"
                )
                indices = torch.randint(0, fmt.size, (self.n_samples,), generator=gen).tolist()
            nll[fmt.name] = texts_nll(module, target.params, [fmt.render(i) for i in indices])
        return ExposureOutput(module, target, formats, nll, exact)

    def exposures(self, output: ExposureOutput, truth: Truth) -> list[dict[str, Any]]:
        secrets = secrets_in(truth, output.target.client_id, output.formats)
        if not secrets:
            return []
        by_name = {f.name: f for f in output.formats}
        nll = output.secret_nll([s.text for s in secrets])
        rows = []
        for s, value in zip(secrets, nll.tolist(), strict=True):
            fmt = by_name[s.format]
            cands = output.candidate_nll[s.format]
            if output.exact[s.format]:
                exposure = exact_exposure(value, cands)
            else:
                exposure = skew_normal_exposure(value, cands, fmt.size)
            rows.append(
                {
                    "format": s.format,
                    "secret": s.text,
                    "client": s.client,
                    "repetitions": s.occurrences,
                    "exposure": exposure,
                    "max_exposure": math.log2(fmt.size),
                    "method": "exact" if output.exact[s.format] else "skew_normal",
                }
            )
        return rows

    def metrics(self, output: ExposureOutput, truth: Truth) -> dict[str, float]:
        rows = self.exposures(output, truth)
        out: dict[str, float] = {
            "n_secrets": float(len(rows)),
            "from_aggregate": float(output.target.from_aggregate),
        }
        if not rows:
            return out
        values = [r["exposure"] for r in rows]
        out["exposure_mean"] = sum(values) / len(values)
        out["exposure_max"] = max(values)
        out["exposure_fraction_of_max"] = sum(
            r["exposure"] / r["max_exposure"] for r in rows
        ) / len(rows)
        for reps in sorted({r["repetitions"] for r in rows}):
            chosen = [r["exposure"] for r in rows if r["repetitions"] == reps]
            out[f"exposure_rep{reps}"] = sum(chosen) / len(chosen)
        result: dict[str, Any] = dict(out)
        result["examples"] = json.dumps(self.examples(rows)[:2])  # text, for the report
        return result

    @staticmethod
    def examples(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
        """The most exposed secrets with their exposure."""
        return [
            {
                "original": r["secret"],
                "recovered": "",
                "secret": r["secret"],
                "detail": f"exposure {r['exposure']:.1f} of {r['max_exposure']:.1f} bits "
                f"({r['method']}, {r['repetitions']} repetitions, client {r['client']})",
            }
            for r in sorted(rows, key=lambda r: -r["exposure"])
        ]

    def artifacts(self, output: Any, truth: Truth, directory: Path) -> dict[str, str]:
        if not isinstance(output, ExposureOutput):
            return {}
        rows = self.exposures(output, truth)
        name = f"{self.registry_name or 'canary_exposure'}_leaks.json"
        directory.mkdir(parents=True, exist_ok=True)
        examples = self.examples(rows)[:10]
        (directory / name).write_text(
            json.dumps({"attack": self.registry_name, "examples": examples})
        )
        return {f"{self.registry_name}: leaked text": name}


__all__ = ["CanaryExposure", "ExposureOutput", "texts_nll"]
