"""Empirical audit of a run whose privacy unit is the user: canary users through the run's own
user-level mechanism.

``fedguard audit RUN --empirical`` on a ULDP-AVG run lands here (the client-level canary variant
of :mod:`fedguard.audit.empirical` does not apply: the mechanism trains per user, not per
client). The audit rebuilds the run's mechanism from ``spec.yaml`` and drives its own code for
every round the ledger records:

1. m canary users, each with records in ``silos_per_canary`` random silos (1–5 records in each,
   :func:`~fedguard.audit.user_canaries.canary_layout`), each inserted with probability ½ — a
   withheld canary has no records anywhere (one-run design, Steinke et al. 2023);
2. the mechanism's :meth:`round_pairs` — contribution caps, cross-silo weights, user- or
   example-level sampling — on the canaries' records;
3. every (silo, canary) pair sends ``10·C·c_j`` (c_j the canary's fixed unit direction, far
   outside the clip ball: clipped back to the sphere, the worst case) through the mechanism's
   :meth:`release` — per-user clipping, weighting, each silo's noise share, scaling;
4. each canary is scored by the cosine of c_j with the sum of the releases over rounds.

White-box convention: only canary users are present. Honest users' updates do not depend on the
canaries, and an auditor that knows them can subtract them, so leaving them out gives a valid
lower bound for the same mechanism (a neighbouring pair of datasets made of canary users only).
The lower bound is compared with the run ledger's user-level ε (the claim). The **baseline** is
the same design with the noise switched off (each silo's weighted, clipped sum by the same
kernel, :func:`~fedguard.core.user_level.bounded_silo_sums`): what the canaries can detect at
all; a claim far above both is one the design cannot refute.

References
----------
Steinke, T., Nasr, M. and Jagielski, M. (2023). Privacy auditing with one (1) training run.
*NeurIPS 2023*.
Andrew, G. et al. (2024). One-shot empirical privacy estimation for federated learning.
*ICLR 2024* (random canary directions).
Kato et al. "Uldp-FL: Federated Learning with Across-Silo User-Level Differential Privacy."
PVLDB 17(11), 2024.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from fedguard.api import require
from fedguard.audit.empirical import write_audit_files
from fedguard.audit.user_canaries import CANARY_OVERSHOOT, canary_layout
from fedguard.core.canaries import canary_directions, canary_inclusion, canary_round_cosines
from fedguard.core.user_level import bounded_silo_sums
from fedguard.errors import ConfigError
from fedguard.launch import build_simulation
from fedguard.privacy.audit.one_run import one_run_audit
from fedguard.privacy.budget import ledger_report, run_ledgers
from fedguard.storage.run_dir import RunDirectory
from fedguard.types import RoundContext

#: What the printed bound is about, stated beside it.
CONVENTION = (
    "one-run audit (Steinke et al. 2023) of the run's own user-level mechanism with canary users "
    "only (white-box: honest users' updates, known to the auditor, left out)"
)


def user_privacy_levels(run: str | Path) -> list[str]:
    """The privacy levels (``"client"``, ``"user"``, ``"record"``) the run's ledger accounts
    (none for a run without a ledger)."""
    run_dir = RunDirectory(Path(run))
    return sorted(run_ledgers(run_dir.ledger())) if run_dir.has_ledger() else []


def describe_levels(levels: Sequence[str]) -> str:
    """``levels`` as the end of "RUN accounts …" in an error sentence."""
    if not levels:
        return "no privacy level (its ledger has no DP events)"
    return f"the {', '.join(levels)} level{'s' if len(levels) != 1 else ''}"


def _user_mechanism(components: Any) -> Any:
    for transform in components.client_transforms:
        if callable(getattr(transform, "round_pairs", None)) and callable(
            getattr(transform, "release", None)
        ):
            return transform
    return None


def user_level_empirical_audit(
    run: str | Path,
    n_canaries: int = 1000,
    confidence: float = 0.95,
    *,
    silos_per_canary: int | None = None,
    delta: float | None = None,
    canary_seed: int | None = None,
    accountants: Sequence[str] = ("rdp", "pld"),
    out: str | Path | None = None,
) -> dict[str, Any]:
    """One-run lower bound on a user-level run's ε from canary users spread over its silos.

    Parameters
    ----------
    run
        A finished run directory whose ledger has user-level events (ULDP-AVG).
    n_canaries
        m ≥ 10 canary users, each inserted with probability ½.
    confidence
        Confidence of the lower bound.
    silos_per_canary
        Silos each canary holds records in (default: min(3, number of silos)).
    delta
        δ of the audited claim (default: the run's ``privacy.delta``), at most 1/(2m).
    canary_seed
        Seed of the canary directions, layout and inclusion coins (default: the run's seed).
    accountants
        Accountants whose user-level ε of the run's ledger are reported; the upper bound is
        the smallest.
    out
        Directory for ``audit.json`` and, owner-only, ``canary_truth.json``.

    Returns
    -------
    dict
        ``epsilon_lower``, ``ceiling``, ``epsilon_upper`` / ``upper_by_accountant`` (the
        ledger's user level), ``ratio``, ``lower_exceeds_upper``, ``baseline_noise_off`` (the
        lower bound of the same canaries without noise), the design and ``convention``.
    """
    require(n_canaries >= 10, "n_canaries", "an integer ≥ 10")
    require(0.0 < confidence < 1.0, "confidence", "in (0, 1)")
    started = time.perf_counter()
    run_dir = RunDirectory(Path(run))
    spec = run_dir.spec()
    ledger = run_dir.ledger() if run_dir.has_ledger() else {"rounds": []}
    levels = sorted(run_ledgers(ledger))
    if "user" not in levels:
        raise ConfigError(
            f"user-level canaries need a run whose privacy unit is 'user' (ULDP-AVG); {run} "
            f"accounts {describe_levels(levels)}."
        )
    simulation = build_simulation(spec)  # the run's components, built and checked
    mechanism = _user_mechanism(simulation.components)
    if mechanism is None:
        raise ConfigError(
            f"{run} has user-level events but no client transform that releases per-user "
            "updates (round_pairs and release), so its mechanism cannot be replayed."
        )
    n_silos = int(spec.clients.n_clients)
    per_canary = min(3, n_silos) if silos_per_canary is None else silos_per_canary
    require(
        isinstance(per_canary, int) and 1 <= per_canary <= n_silos,
        "silos_per_canary",
        f"an integer between 1 and the run's {n_silos} silos",
    )
    audit_delta = float(spec.privacy.delta if delta is None else delta)
    require(
        0.0 < audit_delta <= 1.0 / (2.0 * n_canaries),
        "delta",
        f"in (0, 1/(2·n_canaries) = {1.0 / (2.0 * n_canaries):.3g}] for the one-run bound",
    )
    seed = spec.seed if canary_seed is None else canary_seed
    dimension = int(simulation.initial_state().params.numel())
    n_rounds = len(ledger.get("rounds", []))
    require(n_rounds >= 1, "run", "a run with at least one recorded round")

    directions = canary_directions(n_canaries, dimension, seed).double()  # (m, d)
    included = canary_inclusion(n_canaries, seed)  # (m,)
    table, counts = canary_layout(n_canaries, n_silos, per_canary, seed)
    table = table.where((table >= 0) & included[table.clamp_min(0)], -1)  # withheld: no records
    silos = list(range(n_silos))
    clip = float(mechanism.clip_norm)
    released = torch.zeros(dimension, dtype=torch.float64)
    noiseless = torch.zeros(dimension, dtype=torch.float64)
    for t in range(n_rounds):
        pairs, weights = mechanism.round_pairs(
            table, counts, silos, spec.seed, t, n_users=n_canaries
        )
        updates = CANARY_OVERSHOOT * clip * directions[pairs.user]  # (P, d)
        ctx = RoundContext(t, spec.seed, torch.zeros(dimension), tuple(silos), n_silos)
        sent = mechanism.release(updates, pairs.silo, weights, silos, n_silos, n_canaries, ctx)
        released += sent.values.double().sum(0)
        noiseless += bounded_silo_sums(updates, pairs.silo, weights, clip, n_silos).sum(0)

    truth = included.numpy()
    scores = canary_round_cosines(released[None], directions)[0].numpy()  # (m,)
    bound = one_run_audit(scores, truth, confidence=confidence, delta=audit_delta)
    baseline_scores = canary_round_cosines(noiseless[None], directions)[0].numpy()
    baseline = one_run_audit(baseline_scores, truth, confidence=confidence, delta=audit_delta)

    report = ledger_report(ledger, audit_delta, tuple(accountants))
    user = report["levels"]["user"]["accountants"]
    upper_by = {name: float(acc["epsilon"]) for name, acc in user.items() if "epsilon" in acc}
    best = min(upper_by, key=lambda name: upper_by[name]) if upper_by else None
    upper = upper_by[best] if best is not None else None
    lower = float(bound.epsilon)
    result: dict[str, Any] = {
        "run": str(run),
        "unit": "user",
        "convention": CONVENTION,
        "method": bound.method,
        "kind": bound.kind,
        "epsilon_lower": lower,
        "confidence": confidence,
        "delta": audit_delta,
        "ceiling": bound.details["ceiling"],
        "ceiling_all_guesses": bound.details["ceiling_single"],
        "epsilon_upper": upper,
        "upper_source": (
            f"the run ledger's user level, smallest of the accountants' bounds ({best})"
            if best is not None
            else "no accountant could account the user-level events"
        ),
        "upper_by_accountant": upper_by,
        "ratio": lower / upper
        if upper is not None and math.isfinite(upper) and upper > 0
        else None,
        "lower_exceeds_upper": lower > upper if upper is not None else None,
        "baseline_noise_off": float(baseline.epsilon),
        "n_canaries": n_canaries,
        "n_included": int(truth.sum()),
        "silos_per_canary": per_canary,
        "n_silos": n_silos,
        "rounds": n_rounds,
        "dimension": dimension,
        "canary_seed": seed,
        "mechanism": getattr(mechanism, "registry_name", "") or type(mechanism).__name__,
        "clip_norm": clip,
        "audit_seconds": time.perf_counter() - started,
    }
    if out is not None:
        write_audit_files(Path(out), seed, n_canaries, truth, scores, result)
    return result


__all__ = [
    "CONVENTION",
    "describe_levels",
    "user_level_empirical_audit",
    "user_privacy_levels",
]
