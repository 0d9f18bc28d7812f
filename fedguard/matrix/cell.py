"""Run one matrix cell and turn its run into metrics (in a worker process or a Ray task)."""

from __future__ import annotations

import time
import traceback
import warnings
from typing import Any

from fedguard.config import RunSpec, parse_spec
from fedguard.errors import IncompatibleError, UserError
from fedguard.metrics.broadcast_checks import broadcast_check_metrics
from fedguard.metrics.detection import run_detection


def init_worker() -> None:
    """One torch thread per worker by default (N workers on N cores, not N² threads);
    ``FEDGUARD_THREADS``, inherited from the parent, changes it."""
    from fedguard.threads import configure_threads

    configure_threads()


def run_cell(spec_data: dict[str, Any]) -> dict[str, Any]:
    """Never raises: returns ``{"status": done|diverged|failed|incompatible, ...}``; a diverged
    cell keeps its metrics (of the last finite model) and says why in ``error``."""
    from fedguard.launch import execute

    started = time.perf_counter()
    try:
        spec = parse_spec(spec_data)
        with warnings.catch_warnings():
            # per-attack caveats (few non-members, ...) are in the metrics, e.g. *_reliable
            warnings.simplefilter("ignore", UserWarning)
            result = execute(spec)
        metrics = cell_metrics(spec, result)
        diverged = result.summary.get("diverged")
        return {
            "status": "diverged" if diverged else "done",
            "error": diverged,
            "metrics": metrics,
            "records": result.records,
            "seconds": time.perf_counter() - started,
        }
    except IncompatibleError as exc:
        return {"status": "incompatible", "error": str(exc), "seconds": 0.0}
    except UserError as exc:
        return {"status": "failed", "error": str(exc), "seconds": time.perf_counter() - started}
    except Exception as exc:  # a bug in one cell must not stop the matrix
        tb = traceback.format_exc(limit=6)
        return {
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}\n{tb}",
            "seconds": time.perf_counter() - started,
        }


def cell_metrics(spec: RunSpec, result: Any) -> dict[str, Any]:
    """Final accuracy/loss, backdoor success, detection rates, privacy metrics and cost."""
    records = result.records
    evaluated = [r for r in records if "test_accuracy" in r]
    last = evaluated[-1] if evaluated else {}
    out: dict[str, Any] = {
        "test_accuracy": last.get("test_accuracy"),
        "test_loss": last.get("test_loss"),
        "wall_seconds": sum(r.get("seconds", 0.0) for r in records),
        # the chance level of the verdict rule (the larger of 1/classes and the test set's most
        # frequent class's share), so matrix.csv alone implies the verdicts
        "n_classes": result.simulation.data.n_classes,
    }
    if result.summary.get("majority_share") is not None:  # None for next-token targets
        out["majority_share"] = result.summary["majority_share"]
    if "backdoor_success" in last:
        out["backdoor_success"] = last["backdoor_success"]
    bytes_per_client = [
        r["transport_bytes_per_client"] for r in records if "transport_bytes_per_client" in r
    ]
    if bytes_per_client:
        out["bytes_per_client"] = float(sum(bytes_per_client) / len(bytes_per_client))
    out.update(run_detection(records))
    checks = broadcast_check_metrics(records)
    out.update(checks)
    # A malicious-server attack whose every modified round ended before the server saw an
    # update (aborted by the model commitment, or refused by every client) recovered nothing;
    # without this its metrics would be missing and the verdict would judge accuracy instead.
    broadcaster = getattr(result.simulation, "broadcaster", None)
    name = getattr(broadcaster, "registry_name", "")
    modified = checks.get("modified_rounds", 0.0)
    if name and modified and checks.get("blocked_modified_rounds") == modified:
        out.setdefault(f"{name}.n_recovered", 0.0)
        out.setdefault(f"{name}.recovered_fraction", 0.0)
    eps = privacy_epsilon(spec, result.ledger)
    if eps is not None:
        out["epsilon"] = eps
    for attack, values in result.summary.get("privacy_attacks", {}).items():
        out.update({f"{attack}.{k}": v for k, v in values.items()})
    return out


def privacy_epsilon(spec: RunSpec, ledger: dict[str, Any]) -> float | None:
    """ε at the spec's δ from the run's ledger (None when no privacy mechanism ran)."""
    headline = privacy_headline(spec, ledger)
    return None if headline is None else headline[0]


def privacy_headline(spec: RunSpec, ledger: dict[str, Any]) -> tuple[float, str] | None:
    """(ε at the spec's δ, the privacy level it protects: "client", "user" or "record") from
    the run's ledger, parsed once; None when no privacy mechanism ran (the accountants, which
    load SciPy, are then not imported)."""
    if not any(r.get("population") or r.get("clients") for r in ledger.get("rounds", [])):
        return None
    from fedguard.privacy.budget import headline_epsilon, headline_level, run_ledgers

    ledgers = run_ledgers(ledger)
    return float(headline_epsilon(ledgers, spec.privacy.delta)), headline_level(ledgers)
