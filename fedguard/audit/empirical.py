"""Empirical audit of a run: train its canary variant once and bound ε from the canaries.

The canary variant is the run's own config — same data partition, model initialisation, local
training streams, client transforms (clipping, noise), transport, aggregator, server transforms and
seed — with ``m`` canary clients added to the population. Canary ``j`` is inserted with probability
½ (:func:`~fedguard.core.canaries.canary_included`); an inserted canary is an ordinary
client of the population (sampled like the others) whose local training is replaced by the fixed
update ``canary_norm · c_j``, so it passes through every client transform and the aggregation
exactly like an honest update. After training, each canary (inserted or not) is scored by the
cosine of its direction with the final model delta ``θ_T − θ_0`` (``statistic="final"``) or by
its largest cosine with the rounds' global deltas (``statistic="rounds"``).

Reported: the one-run lower bound (Steinke et al. 2023) at the requested confidence, its ceiling
for this canary count, the Andrew et al. (2024) estimate (not a bound), and — when an accountant
is available — the ledger's ε upper bound and the ratio. A lower bound above the upper bound
means the mechanism or its accounting is wrong (with the stated confidence).

Conventions
-----------
* Inserted canaries are added to the population (``n_clients`` grows by their number); the
  mechanisms are told a public population of ``n_clients + m`` (every canary slot), so that no
  mechanism parameter (e.g. DP-FedAvg's denominator ``qW``) depends on which canaries were
  inserted. A fixed cohort grows with the actual population (same sampling rate); its size then
  depends on the number inserted, so prefer Poisson or full participation for audits. The client
  sampling draws differ from the audited run's; everything keyed by client (data, batches) does
  not.
* Canary clients never train, are never malicious or free-riders, and get the mean honest sample
  count as their weight under ``clients.weighting: samples``.
* ``canary_norm`` defaults to the ``clip_norm`` of the first client transform that has one (the
  canary then sits on the clipping sphere, the worst case of DP-FedAvg), else 1.0.

References
----------
Steinke, T., Nasr, M. and Jagielski, M. (2023). Privacy auditing with one (1) training run.
*NeurIPS 2023*.
Andrew, G., Kairouz, P., Oh, S., Oprea, A., McMahan, H. B. and Suriyakumar, V. (2024). One-shot
empirical privacy estimation for federated learning. *ICLR 2024*.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from fedguard.api import require
from fedguard.audit.canary_clients import install_canaries
from fedguard.components import Components
from fedguard.config import RunSpec, load_spec
from fedguard.core.canaries import (
    canary_directions,
    canary_inclusion,
    canary_max_round_cosines,
    canary_round_cosines,
)
from fedguard.errors import ConfigError
from fedguard.launch import build_simulation
from fedguard.privacy.audit.canary_estimate import canary_epsilon_estimate
from fedguard.privacy.audit.one_run import one_run_audit
from fedguard.privacy.budget import epsilon_of_ledger, has_events
from fedguard.storage import atomic
from fedguard.storage.run_dir import OWNER_ONLY_FILE, RunDirectory

Statistic = Literal["final", "rounds"]
#: ``(ledger, delta) -> ε`` of a run's privacy ledger (the runner's ledger dict form).
UpperBound = Callable[[dict[str, Any], float], float]


def _default_canary_norm(components: Components) -> float:
    for transform in components.client_transforms:
        norm = getattr(transform, "clip_norm", None)
        if isinstance(norm, int | float) and norm > 0:
            return float(norm)
    return 1.0


def _resolve(source: RunSpec | str | Path) -> tuple[RunSpec, float | None, int | None, str]:
    """The spec to audit, the audited run's wall seconds and completed rounds (if known), and a
    label."""
    if isinstance(source, RunSpec):
        return source, None, None, source.name
    path = Path(source)
    if path.is_dir():
        run = RunDirectory(path)
        spec = run.spec()
        summary = run.summary()
        seconds = summary.get("wall_seconds")
        rounds = summary.get("rounds_completed")
        return (
            spec,
            float(seconds) if isinstance(seconds, int | float) else None,
            int(rounds) if isinstance(rounds, int) and 1 <= rounds <= spec.rounds else None,
            str(path),
        )
    if path.is_file():
        return load_spec(path), None, None, str(path)
    raise ConfigError(f"run {str(source)!r} is neither a run directory nor a config file.")


def _upper(
    ledger: dict[str, Any],
    delta: float,
    upper_bound: UpperBound | None,
    accountants: Sequence[str],
) -> tuple[float | None, dict[str, float], str]:
    """``(ε upper bound, ε per accountant, source)``; the bound is the smallest of them."""
    if not has_events(ledger):
        return math.inf, {}, "no privacy events in the ledger: the run claims no DP"
    if upper_bound is not None:
        return float(upper_bound(ledger, delta)), {}, "given accountant"
    if delta <= 0.0:
        return None, {}, "accountants need delta > 0"
    per = {name: float(epsilon_of_ledger(ledger, delta, name)) for name in accountants}
    best = min(per, key=lambda name: per[name])
    return per[best], per, f"smallest of the accountants' bounds ({best})"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else "nan"
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def empirical_audit(
    source: RunSpec | str | Path,
    n_canaries: int = 1000,
    confidence: float = 0.95,
    *,
    delta: float | None = None,
    statistic: Statistic = "final",
    canary_norm: float | None = None,
    canary_seed: int | None = None,
    components: Components | None = None,
    upper_bound: UpperBound | None = None,
    accountants: Sequence[str] = ("rdp", "pld"),
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Train the canary variant of a run and return its empirical ε next to the accountant's.

    Parameters
    ----------
    source
        A run directory (its ``spec.yaml`` is audited, for as many rounds as the run completed —
        a run stopped by its privacy budget is audited as stopped), a YAML config, or a
        :class:`RunSpec`.
    n_canaries
        ``m``, canaries each inserted with probability ½ (at least 10).
    confidence
        Confidence of the lower bound (``1 − β``).
    delta
        δ of the audited claim; default: the run's ``privacy.delta``. Must be ``≤ 1/(2m)``.
    statistic
        ``"final"``: cosine with ``θ_T − θ_0``; ``"rounds"``: largest cosine over rounds.
    canary_norm
        L2 norm of a canary update; default: the run's client clip norm, else 1.0.
    canary_seed
        Seed of the canary directions and inclusion coins; default: the run's seed.
    components
        Pre-built components to run with (default: built from the spec).
    upper_bound
        ``(ledger, delta) -> ε`` replacing the accountants (for tests and custom mechanisms).
        A ledger without events means no DP claim: the upper bound is ∞.
    accountants
        Accountants (:func:`fedguard.privacy.budget.epsilon_of_ledger`) whose ε(δ) of the canary
        variant's ledger are reported; the upper bound is the smallest (every one is valid).
    out
        Directory to write ``audit.json`` and, owner-only, ``canary_truth.json`` (which canaries
        were inserted — the secret the bound is computed against).

    Returns
    -------
    dict
        ``epsilon_lower`` (one-run bound, with ``method``, ``confidence``, ``delta``),
        ``ceiling`` (largest ε this design can certify), ``epsilon_upper`` (accountant; ``inf``
        without DP; ``None`` when δ = 0), ``upper_by_accountant``, ``ratio`` (lower/upper),
        ``lower_exceeds_upper``, ``estimate`` (Andrew et al., not a bound), the canary design,
        and the cost (``audit_seconds``, ``audited_run_seconds``, ``cost_ratio``).

    References
    ----------
    Steinke, Nasr and Jagielski (2023); Andrew et al. (2024).
    """
    require(n_canaries >= 10, "n_canaries", "an integer ≥ 10")
    require(0.0 < confidence < 1.0, "confidence", "in (0, 1)")
    require(statistic in ("final", "rounds"), "statistic", "'final' or 'rounds'")
    spec, audited_seconds, audited_rounds, label = _resolve(source)
    n_rounds = spec.rounds if audited_rounds is None else audited_rounds
    audit_delta = spec.privacy.delta if delta is None else delta
    require(
        0.0 <= audit_delta <= 1.0 / (2.0 * n_canaries),
        "delta",
        f"at most 1/(2·n_canaries) = {1.0 / (2.0 * n_canaries):.3g} for the one-run bound "
        "(use fewer canaries or a smaller delta)",
    )
    seed = spec.seed if canary_seed is None else canary_seed

    started = time.perf_counter()
    sim = build_simulation(spec, components)
    norm = _default_canary_norm(sim.components) if canary_norm is None else canary_norm
    require(norm > 0.0 and math.isfinite(norm), "canary_norm", "a finite number > 0")
    state = sim.initial_state()
    dimension = int(state.params.numel())
    directions = canary_directions(n_canaries, dimension, seed)  # (m, d)
    included = canary_inclusion(n_canaries, seed)  # (m,)
    install_canaries(sim, norm * directions[included], spec.clients.n_clients + n_canaries)

    initial = state.params.detach().clone()
    ledger: dict[str, Any] = {
        "sampling": sim.sampling,
        "delta": spec.privacy.delta,
        "rounds": [],
    }
    round_deltas: list[Tensor] = []
    while state.round < n_rounds:
        before = state.params
        state, output = sim.run_round(state)
        ledger["rounds"].append({"round": state.round, **output.events.to_dict()})
        if statistic == "rounds":
            round_deltas.append((state.params - before).detach().double().cpu())
    training_seconds = time.perf_counter() - started

    if statistic == "final":
        final_delta = (state.params.detach().double().cpu() - initial.double().cpu())[None]
        scores_t = canary_round_cosines(final_delta, directions)[0]  # (m,)
    else:
        scores_t = canary_max_round_cosines(torch.stack(round_deltas), directions)  # (m,)
    scores = scores_t.numpy()
    truth = included.numpy()

    bound = one_run_audit(scores, truth, confidence=confidence, delta=audit_delta)
    estimate: dict[str, Any] | None = None
    if truth.sum() >= 2 and (~truth).sum() >= 2 and audit_delta > 0:
        # Final delta: the null is known in closed form, N(0, 1/d); the largest cosine over
        # rounds has no Gaussian null, so it is fitted on the canaries that were not inserted.
        null = {"dimension": dimension} if statistic == "final" else {"null": scores[~truth]}
        try:
            estimate = canary_epsilon_estimate(scores[truth], delta=audit_delta, **null).as_dict()
        except ConfigError as exc:  # e.g. identical statistics: no estimate, say why
            estimate = {"method": "canary_gaussian", "epsilon": None, "reason": str(exc)}
    epsilon_upper, upper_by_accountant, upper_source = _upper(
        ledger, audit_delta, upper_bound, accountants
    )
    audit_seconds = time.perf_counter() - started

    lower = bound.epsilon
    ratio = (
        lower / epsilon_upper
        if epsilon_upper is not None and math.isfinite(epsilon_upper) and epsilon_upper > 0
        else None
    )
    result: dict[str, Any] = {
        "run": label,
        "spec_hash": spec.spec_hash(),
        "method": bound.method,
        "kind": bound.kind,
        "epsilon_lower": lower,
        "confidence": confidence,
        "delta": audit_delta,
        "ceiling": bound.details["ceiling"],
        "ceiling_all_guesses": bound.details["ceiling_single"],
        "epsilon_upper": epsilon_upper,
        "upper_source": upper_source,
        "upper_by_accountant": upper_by_accountant,
        "ratio": ratio,
        "lower_exceeds_upper": (lower > epsilon_upper if epsilon_upper is not None else None),
        "estimate": estimate,
        "n_canaries": n_canaries,
        "n_included": int(truth.sum()),
        "statistic": statistic,
        "canary_norm": norm,
        "canary_seed": seed,
        "dimension": dimension,
        "rounds": state.round,
        "guesses": {
            key: bound.details[key]
            for key in ("k_plus", "k_minus", "n_guesses", "n_correct", "n_hypotheses")
        },
        "training_seconds": training_seconds,
        "audit_seconds": audit_seconds,
        "audited_run_seconds": audited_seconds,
        "cost_ratio": audit_seconds / audited_seconds if audited_seconds else None,
    }
    if out is not None:
        write_audit_files(Path(out), seed, n_canaries, truth, scores, result)
    return result


def write_audit_files(
    folder: Path,
    seed: int,
    n_canaries: int,
    truth: np.ndarray,
    scores: np.ndarray,
    result: dict[str, Any],
) -> None:
    """An audit's two files: ``canary_truth.json`` (which canaries were inserted and their
    scores; owner-only, it would let anyone re-derive the guesses) and ``audit.json``."""
    atomic.write_json(
        folder / "canary_truth.json",
        {
            "canary_seed": seed,
            "n_canaries": n_canaries,
            "included": np.flatnonzero(truth).tolist(),
            "scores": scores.tolist(),
        },
        mode=OWNER_ONLY_FILE,
    )
    atomic.write_json(folder / "audit.json", _jsonable(result))
