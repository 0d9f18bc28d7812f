"""The matrix verdict for malicious-server inversion: held only when no sample is recovered in
any seed; judged on samples recovered, not on accuracy."""

from __future__ import annotations

from fedguard.matrix.summary import tidy_frame
from fedguard.matrix.verdict import FELL, HELD, VULNERABLE, rule_text, verdicts
from tests.matrix.test_verdict import outcome, rows_of


def test_samples_recovered_decide_the_verdict() -> None:
    acc = {
        (d, a): [0.66, 0.67, 0.68]
        for d in ("mean", "secagg", "secagg+commitment")
        for a in ("none", "model_inconsistency")
    }
    recovered = {
        ("mean", "model_inconsistency"): [12, 11, 12],
        ("secagg", "model_inconsistency"): [12, 0, 0],  # one seed recovered: fell
        ("secagg+commitment", "model_inconsistency"): [0, 0, 0],
    }
    extra = {
        (d, a, seed): {"model_inconsistency.n_recovered": float(v)}
        for (d, a), values in recovered.items()
        for seed, v in enumerate(values)
    }
    tidy = tidy_frame(rows_of(acc, extra))
    vs = verdicts(tidy)
    assert outcome(vs, "mean", "model_inconsistency") == VULNERABLE
    assert outcome(vs, "secagg", "model_inconsistency") == FELL
    assert outcome(vs, "secagg+commitment", "model_inconsistency") == HELD
    (held,) = [v for v in vs if v.defense == "secagg+commitment"]
    assert held.reason.startswith("samples recovered 0.000")
    assert "training samples recovered is at most 0" in rule_text(tidy)
