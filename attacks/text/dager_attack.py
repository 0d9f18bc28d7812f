"""DAGER as an observer: exact token recovery from a client's update of a federated decoder."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from attacks.inversion._common import ParamLayout
from attacks.text._common import text_module
from attacks.text.dager import FAILED, TOKENS_ONLY, DagerResult, ObservedLayer, dager_recover
from attacks.text.layer_inputs import projection_inputs
from attacks.text.recovery_scores import (
    match_sequences,
    position_token_recall,
    sequence_scores,
)
from fedguard.api import PrivacyAttack, require
from fedguard.errors import ConfigError
from fedguard.text.tokenizer import decode
from fedguard.types import ServerView, Truth

AGGREGATE = -1  # the key of a recovery from the secure-aggregation sum
PROJECTIONS = ("query", "key", "value")


def _piece(layout: ParamLayout, update: Tensor, name: str) -> Tensor | None:
    if name not in layout.names:
        return None
    return update[layout.slice_of(name)].view(layout.shapes[layout.names.index(name)])


def observed_layer(
    module: nn.Module, layout: ParamLayout, global_params: Tensor, update: Tensor, block: int
) -> tuple[ObservedLayer, str] | None:
    """What the update reveals about block ``block``'s attention inputs, and the module whose
    input it is: the q/k/v weight updates stacked (full fine-tuning); else the adapters' ``A``
    updates stacked (LoRA once ``B ≠ 0``); else one ``B`` update with its ``A`` as projection
    (FFA-LoRA, and LoRA's first round where ``B = 0`` makes ``A``'s update zero) — the
    value's, whose gradient reaches every position."""
    buffers = dict(module.named_buffers())
    params = layout.unflatten(global_params)
    names = [f"blocks.{block}.attention.{p}" for p in PROJECTIONS]
    names = [n for n in names if n in dict(module.named_modules())]
    if not names:
        return None
    full = [g for n in names if (g := _piece(layout, update, f"{n}.weight")) is not None]
    if full and any(bool(g.any()) for g in full):
        return ObservedLayer(torch.cat(full)), names[0]
    a_updates = [
        (n, g) for n in names if (g := _piece(layout, update, f"{n}.lora_A.weight")) is not None
    ]
    if a_updates and any(bool(g.any()) for _, g in a_updates):
        return ObservedLayer(torch.cat([g for _, g in a_updates])), a_updates[0][0]
    # value first: a query at position 0 attends only to itself, so its gradient is zero there
    for n in sorted(names, key=lambda n: PROJECTIONS[::-1].index(n.rsplit(".", 1)[1])):
        b = _piece(layout, update, f"{n}.lora_B.weight")
        a = params.get(f"{n}.lora_A.weight", buffers.get(f"{n}.lora_A.weight"))
        if b is not None and a is not None and bool(b.any()):
            return ObservedLayer(b, projection=a), n
    return None


@dataclass(frozen=True)
class DagerOutput:
    results: dict[int, DagerResult]  # client id (AGGREGATE for the sum) → recovery
    client_ids: tuple[int, ...]  # the round's clients (whose union the sum holds)
    from_aggregate: bool
    note: str = ""


@dataclass(frozen=True)
class Dager(PrivacyAttack):
    """DAGER on the first (and second) attention layer of a GPT-style decoder.

    On round ``at_round`` the server takes up to ``max_clients`` clients' updates (or, under
    secure aggregation, only their sum — then it can recover at best the union of the clients'
    sequences, without knowing who sent which) and tests every (token, position) of the
    vocabulary against the span of the first block's q/k/v update, then extends prefixes with
    the second block's. Exact for FedSGD (the update is ``−η·∇``); after several local steps the
    update mixes gradients at moving weights (exact again for frozen embeddings, as under
    adapters). Reports failure, not a guess, when the rank saturates. See
    :mod:`attacks.text.dager` for the adapter cases.

    References
    ----------
    Petrov, Dimitrov, Baader, Müller, Vechev. "DAGER: Exact Gradient Inversion for Large
    Language Models." NeurIPS 2024.
    """

    #: what the core gives it besides the view: the architecture
    threat_model: ClassVar[frozenset[str]] = frozenset({"architecture"})
    at_round: int = 0
    max_clients: int = 1
    target_client: int | None = None
    threshold: float = 1e-2
    rank_tolerance: float = 1e-7
    max_length: int | None = None

    def __post_init__(self) -> None:
        require(self.at_round >= 0, "at_round", "a round index ≥ 0")
        require(self.max_clients >= 1, "max_clients", "an integer ≥ 1")
        require(0 < self.threshold < 1, "threshold", "in (0, 1)")
        require(0 < self.rank_tolerance < 1, "rank_tolerance", "in (0, 1)")
        require(self.max_length is None or self.max_length >= 1, "max_length", "an integer ≥ 1")

    def observe(self, view: ServerView, env: Any) -> DagerOutput | None:
        if view.round != self.at_round:
            return None
        module = text_module(env)
        layout = ParamLayout.from_module(module)
        vocab = int(getattr(module, "vocab_size", 0) or 0)
        length = self.max_length or int(getattr(module, "context", 0) or 0)
        if not vocab or not length:
            raise ConfigError("dager needs a GPT-style language model (model: gpt).")
        if view.updates is None:
            targets = {AGGREGATE: view.update_sum}
        else:
            ids = [self.target_client] if self.target_client is not None else view.client_ids
            ids = [i for i in ids if i in view.client_ids][: self.max_clients]
            targets = {i: view.updates[view.client_ids.index(i)] for i in ids}
        results = {}
        for cid, update in targets.items():
            layers, names = [], []
            for block in (0, 1):
                found = observed_layer(module, layout, view.global_params, update, block)
                if found is not None:
                    layers.append(found[0])
                    names.append(found[1])
            if not layers:
                results[cid] = DagerResult(FAILED, "no attention-layer update is observed", 0, 0)
                continue
            inputs = projection_inputs(module, names, view.global_params)
            results[cid] = dager_recover(
                layers, inputs, vocab, length, self.threshold, self.rank_tolerance
            )
        note = ""
        if view.updates is None:
            note = (
                "secure aggregation: only the sum of the round's updates is visible; what it "
                f"holds is the union of {len(view.client_ids)} clients' sequences, unattributed"
            )
        return DagerOutput(results, tuple(view.client_ids), view.updates is None, note)

    def originals(self, output: DagerOutput, cid: int, truth: Truth) -> list[tuple[int, ...]]:
        ids = output.client_ids if cid == AGGREGATE else (cid,)
        rows: list[tuple[int, ...]] = []
        for i in ids:
            rows.extend(tuple(r) for r in truth.private_batches[i][0].long().tolist())
        return rows

    def metrics(self, output: DagerOutput, truth: Truth) -> dict[str, float]:
        totals: dict[str, list[float]] = {}
        notes = []
        for cid, result in output.results.items():
            originals = self.originals(output, cid, truth)
            values = {"failed": float(result.status == FAILED), "rank": float(result.rank)}
            values["dimension"] = float(result.dimension)
            values["tokens_read"] = float(sum(len(o) for o in originals))
            if result.status == FAILED:
                values.update(token_recovery=0.0, sequence_recovery=0.0, rouge1=0.0, rouge2=0.0)
                notes.append(result.reason)
            elif result.status == TOKENS_ONLY:
                values["token_recovery"] = position_token_recall(
                    result.tokens_by_position, originals
                )
                values.update(sequence_recovery=0.0, rouge1=math.nan, rouge2=math.nan)
                notes.append(result.reason)
            else:
                values.update(
                    sequence_scores(
                        result.sequences,
                        originals,
                        [decode(s) for s in result.sequences],
                        [decode(o) for o in originals],
                    )
                )
            for k, v in values.items():
                totals.setdefault(k, []).append(v)
        out: dict[str, Any] = {  # plus one text note (the summary keeps text values)
            k: sum(v) / len(v) for k, v in totals.items() if all(math.isfinite(x) for x in v)
        }
        out["from_aggregate"] = float(output.from_aggregate)
        out["examples"] = json.dumps(self.examples(output, truth)[:3])  # text, for the report
        if output.note or notes:
            out["note"] = "; ".join(n for n in dict.fromkeys([output.note, *notes]) if n)
        return out

    def examples(self, output: DagerOutput, truth: Truth) -> list[dict[str, str]]:
        """Reconstructed windows next to the originals they were matched to."""
        out = []
        for cid, result in output.results.items():
            originals = self.originals(output, cid, truth)
            for i, j in match_sequences(result.sequences, originals):
                out.append(
                    {
                        "original": decode(originals[j]),
                        "recovered": decode(result.sequences[i]),
                        "secret": "",
                        "detail": "from the secure-aggregation sum"
                        if cid == AGGREGATE
                        else f"client {cid}",
                    }
                )
        return out

    def artifacts(self, output: Any, truth: Truth, directory: Path) -> dict[str, str]:
        if not isinstance(output, DagerOutput):
            return {}
        examples = self.examples(output, truth)[:10]
        name = f"{self.registry_name or 'dager'}_leaks.json"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(
            json.dumps({"attack": self.registry_name, "examples": examples})
        )
        return {f"{self.registry_name}: leaked text": name}


__all__ = ["AGGREGATE", "Dager", "DagerOutput", "observed_layer"]
