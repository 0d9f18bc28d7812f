"""What clients' checks of the received model caught, from a run's round records.

A server-side broadcast component marks a round whose broadcast it changed with
``info["modified"] = True`` (recorded as ``broadcast_modified``); the client checks record the
clients that refused the model (``broadcast_alarms``) out of the ``clients`` sampled. The
detection rate is the fraction of sampled clients that refused a modified broadcast, the false
alarm rate the fraction that refused an unmodified one; an aborted round (secure aggregation's
``RoundAborted``, e.g. clients holding different models) is counted apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def ended_unseen(record: Mapping[str, Any]) -> bool:
    """The round ended before the server saw any update: aborted, or every sampled client
    refused the model."""
    alarms = record.get("broadcast_alarms")
    refused_all = alarms is not None and len(alarms) >= int(record.get("clients", 0)) > 0
    return "aborted" in record or refused_all


def broadcast_check_metrics(records: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """``client_alarm_rate`` (modified rounds), ``client_false_alarm_rate`` (the others) where
    clients checked the model, ``modified_rounds``, ``blocked_modified_rounds`` (modified rounds
    that ended before the server saw anything) and ``aborted_rounds``; nothing for a run
    without a modified broadcast, client checks or an aborted round (other matrices keep their
    columns)."""
    alarmed = {True: 0, False: 0}
    sampled = {True: 0, False: 0}
    modified_rounds = aborted = blocked = 0
    checked = False
    for r in records:
        modified = bool(r.get("broadcast_modified", False))
        modified_rounds += modified
        aborted += "aborted" in r
        blocked += modified and ended_unseen(r)
        if "broadcast_alarms" in r:
            checked = True
            alarmed[modified] += len(r["broadcast_alarms"])
            sampled[modified] += int(r.get("clients", 0))
    if not (checked or modified_rounds or aborted):
        return {}
    out: dict[str, float] = {
        "aborted_rounds": float(aborted),
        "modified_rounds": float(modified_rounds),
        "blocked_modified_rounds": float(blocked),
    }
    if checked:
        if sampled[True]:
            out["client_alarm_rate"] = alarmed[True] / sampled[True]
        if sampled[False]:
            out["client_false_alarm_rate"] = alarmed[False] / sampled[False]
    return out


__all__ = ["broadcast_check_metrics", "ended_unseen"]
