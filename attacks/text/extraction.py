"""Extraction of planted secrets by prompting the model with each format's prefix."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

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
from attacks.text.decoding import continue_prompts
from fedguard.api import PrivacyAttack, require
from fedguard.text.secrets import SLOT_VALUES, SecretFormat
from fedguard.text.tokenizer import decode, encode
from fedguard.types import ServerView, Truth


def longest_candidate_bytes(fmt: SecretFormat) -> int:
    """Bytes of the format's longest candidate (each slot at its longest value)."""

    def longest(kind: str) -> str:
        return max(SLOT_VALUES[kind], key=len) if kind in SLOT_VALUES else "0" * int(kind[1:])

    return len(encode(re.sub(r"\{([^{}]*)\}", lambda m: longest(m.group(1)), fmt.template)))


@dataclass(frozen=True)
class ExtractionOutput:
    target: TextTarget
    formats: tuple[SecretFormat, ...]
    greedy: dict[str, str]  # format → prefix + greedy continuation
    sampled: dict[str, tuple[str, ...]]  # format → prefix + sampled continuations


@dataclass(frozen=True)
class Extraction(PrivacyAttack):
    """Prompt the attacked model with each public format's prefix (``"my PIN is "``) and decode
    as many bytes as the format's longest candidate needs: greedily, and ``n_samples`` times
    by top-``top_k`` sampling at ``temperature`` (keyed stream). A secret counts as extracted
    when a continuation reproduces it verbatim.

    ``every_round: true`` attacks every round (leakage against rounds, in the round records);
    otherwise ``at_round`` (``None``: the last). ``target``/``target_client`` as in
    :class:`~attacks.text.canary_exposure.CanaryExposure`.

    References
    ----------
    Carlini et al. "Extracting Training Data from Large Language Models." USENIX Security 2021.
    Carlini et al. "The Secret Sharer." USENIX Security 2019 (prefix-prompted extraction of
    canaries).
    """

    #: what the core gives it besides the view: the architecture
    threat_model: ClassVar[frozenset[str]] = frozenset({"architecture"})
    target: str = "global"
    target_client: int | None = None
    at_round: int | None = None
    every_round: bool = False
    formats: dict[str, str] | None = None
    n_samples: int = 16
    temperature: float = 1.0
    top_k: int = 40
    seed: int = 0

    def __post_init__(self) -> None:
        check_text_target(self.target, self.target_client, self.at_round)
        if self.formats is not None:
            formats_of(self.formats)
        require(self.n_samples >= 0, "n_samples", "an integer ≥ 0")
        require(self.temperature > 0, "temperature", "a number > 0")
        require(self.top_k >= 1, "top_k", "an integer ≥ 1")

    def observe(self, view: ServerView, env: Any) -> ExtractionOutput | None:
        if not self.every_round and not attack_round(env, view, self.at_round):
            return None
        target = resolve_text_target(view, self.target, self.target_client)
        module: nn.Module = text_module(env)
        context = getattr(module, "context", None)
        greedy: dict[str, str] = {}
        sampled: dict[str, tuple[str, ...]] = {}
        formats = formats_for(env, self.formats)
        for fmt in formats:
            prompt = encode(fmt.prefix)
            n_new = longest_candidate_bytes(fmt) - len(prompt)
            prompts = torch.tensor([prompt])
            out = continue_prompts(module, prompts, n_new, target.params, context=context)
            greedy[fmt.name] = fmt.prefix + decode(out[0].tolist())
            if self.n_samples:
                gen = attack_generator(
                    self.seed, view.round, target.client_id, f"extract/{fmt.name}"
                )
                many = continue_prompts(
                    module,
                    prompts.expand(self.n_samples, -1),
                    n_new,
                    target.params,
                    generator=gen,
                    temperature=self.temperature,
                    top_k=self.top_k,
                    context=context,
                )
                sampled[fmt.name] = tuple(fmt.prefix + decode(r) for r in many.tolist())
        return ExtractionOutput(target, formats, greedy, sampled)

    def matches(self, output: ExtractionOutput, truth: Truth) -> list[dict[str, Any]]:
        rows = []
        for s in secrets_in(truth, output.target.client_id, output.formats):
            greedy = output.greedy.get(s.format, "")
            sampled = output.sampled.get(s.format, ())
            rows.append(
                {
                    "secret": s.text,
                    "format": s.format,
                    "client": s.client,
                    "repetitions": s.occurrences,
                    "greedy": greedy,
                    "greedy_hit": greedy.startswith(s.text),
                    "sampled_hit": any(t.startswith(s.text) for t in sampled),
                }
            )
        return rows

    def metrics(self, output: ExtractionOutput, truth: Truth) -> dict[str, float]:
        rows = self.matches(output, truth)
        n = len(rows)
        greedy = sum(r["greedy_hit"] for r in rows)
        either = sum(r["greedy_hit"] or r["sampled_hit"] for r in rows)
        out: dict[str, Any] = {
            "n_secrets": float(n),
            "extracted_greedy": float(greedy),
            "extracted": float(either),
            "extracted_fraction": either / n if n else 0.0,
            "from_aggregate": float(output.target.from_aggregate),
        }
        # text for the report (kept in the round record, dropped from numeric tables)
        out["examples"] = json.dumps(self.examples(rows)[:3])
        return out

    @staticmethod
    def examples(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
        """Each secret next to the greedy continuation, extracted ones first."""
        ordered = sorted(rows, key=lambda r: not (r["greedy_hit"] or r["sampled_hit"]))
        return [
            {
                "original": r["secret"],
                "recovered": r["greedy"],
                "secret": r["secret"],
                "detail": ("extracted greedily" if r["greedy_hit"] else "extracted by sampling")
                if r["greedy_hit"] or r["sampled_hit"]
                else "not extracted",
            }
            for r in ordered
        ]

    def artifacts(self, output: Any, truth: Truth, directory: Path) -> dict[str, str]:
        if not isinstance(output, ExtractionOutput):
            return {}
        examples = self.examples(self.matches(output, truth))[:10]
        name = f"{self.registry_name or 'extraction'}_leaks.json"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(
            json.dumps({"attack": self.registry_name, "examples": examples})
        )
        return {f"{self.registry_name}: leaked text": name}


__all__ = ["Extraction", "ExtractionOutput", "longest_candidate_bytes"]
