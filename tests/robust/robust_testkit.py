"""Shared helpers of the robustness tests (imported by module name from this folder)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from fedguard.api import AttackContext
from fedguard.types import AggregationContext


def reference_mean(updates: Tensor, weights: Tensor | None = None) -> Tensor:
    """Local stand-in for the core ``mean`` rule: the (weighted) average of the rows."""
    if weights is None:
        return updates.mean(dim=0)
    w = weights.to(updates.dtype)
    return (w / w.sum()) @ updates


def make_ctx(
    d: int,
    n_byzantine: int = 0,
    seed: int = 0,
    state: dict[str, Any] | None = None,
    reference: Tensor | None = None,
    round_index: int = 1,
) -> AggregationContext:
    return AggregationContext(
        round=round_index,
        n_byzantine=n_byzantine,
        generator=torch.Generator().manual_seed(seed),
        global_params=torch.zeros(d),
        state=state or {},
        reference_update=reference,
    )


def make_attack_ctx(
    honest: Tensor,
    n_malicious: int,
    seed: int = 0,
    own: Tensor | None = None,
    aggregator: Any = None,
    n_byzantine: int = 0,
) -> AttackContext:
    d = honest.shape[1]
    return AttackContext(
        round=1,
        n_malicious=n_malicious,
        n_clients=honest.shape[0] + n_malicious,
        generator=torch.Generator().manual_seed(seed),
        global_params=torch.zeros(d),
        own_updates=own if own is not None else honest[:n_malicious].clone(),
        n_byzantine=n_byzantine,
        aggregator=aggregator,
    )


@dataclass(frozen=True)
class RuleCase:
    """What a rule promises, for the conformance suite."""

    name: str
    path: str  # module:Class, as in pyproject's entry-point table
    params: dict[str, Any] = field(default_factory=dict)
    uses_f: bool = False  # has an n_byzantine bound
    mean_at_f0: bool = False  # recovers the plain mean when f = 0 (and nothing is clipped)
    identical: str = "input"  # "input" | "zero": what identical inputs aggregate to

    def build(self, **overrides: Any) -> Any:
        module, cls = self.path.split(":")
        return getattr(importlib.import_module(module), cls)(**{**self.params, **overrides})


RULES = [
    RuleCase("median", "fedguard.defenses.robust.median:Median"),
    RuleCase(
        "trimmed_mean",
        "fedguard.defenses.robust.trimmed_mean:TrimmedMean",
        uses_f=True,
        mean_at_f0=True,
    ),
    RuleCase("geometric_median", "fedguard.defenses.robust.geometric_median:GeometricMedian"),
    RuleCase("krum", "fedguard.defenses.robust.krum:Krum", uses_f=True),
    RuleCase(
        "multi_krum", "fedguard.defenses.robust.multi_krum:MultiKrum", uses_f=True, mean_at_f0=True
    ),
    RuleCase("bulyan", "fedguard.defenses.robust.bulyan:Bulyan", uses_f=True, mean_at_f0=True),
    RuleCase(
        "centered_clipping",
        "fedguard.defenses.robust.centered_clipping:CenteredClipping",
        params={"clip_radius": 1e3, "n_iterations": 1},
        mean_at_f0=True,
    ),
    RuleCase("meamed", "fedguard.defenses.robust.meamed:Meamed", uses_f=True, mean_at_f0=True),
    RuleCase("mda", "fedguard.defenses.robust.mda:MDA", uses_f=True, mean_at_f0=True),
    RuleCase("cge", "fedguard.defenses.robust.cge:CGE", uses_f=True, mean_at_f0=True),
    RuleCase("dnc", "fedguard.defenses.robust.dnc:DnC", uses_f=True, mean_at_f0=True),
    RuleCase("signguard", "fedguard.defenses.robust.signguard:SignGuard"),
    RuleCase("fltrust", "fedguard.defenses.robust.fltrust:FLTrust"),
    RuleCase("foolsgold", "fedguard.defenses.robust.foolsgold:FoolsGold", identical="zero"),
    RuleCase(
        "norm_bound",
        "fedguard.defenses.robust.norm_bound:NormBound",
        params={"clip_norm": 1e3},
        mean_at_f0=True,
    ),
    RuleCase(
        "sign_majority", "fedguard.defenses.robust.sign_majority:SignMajority", identical="sign"
    ),
]
RULE_IDS = [r.name for r in RULES]


def honest_updates(n: int, d: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> Tensor:
    """Generic (tie-free) honest-looking updates: a shared direction plus noise."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(d, generator=g, dtype=torch.float64)
    return (base[None, :] + 0.5 * torch.randn((n, d), generator=g, dtype=torch.float64)).to(dtype)
