"""``fedguard calibrate``: the smallest noise multiplier meeting a target (ε, δ)."""

from __future__ import annotations

import json
import math

from rich.console import Console

from fedguard.cli.audit_command import (
    accountant_names,
    calculator_event,
    epsilon_per_accountant,
    neighbouring_note,
)
from fedguard.errors import UserError
from fedguard.privacy.accountants.base import UnsupportedEventError


def calibrate_command(
    target_epsilon: float,
    delta: float,
    sampling_rate: float,
    steps: int,
    sampling: str,
    population: int | None,
    accountant: str,
    as_json: bool,
) -> None:
    from fedguard.privacy.calibrate import calibrate_clipped_sum_noise

    if not (math.isfinite(target_epsilon) and target_epsilon > 0):
        raise UserError(f"--target-epsilon must be a finite number > 0 (got {target_epsilon!r}).")
    if not (0 < delta < 1):
        raise UserError(f"--delta must be in (0, 1) (got {delta!r}).")
    names = accountant_names(accountant)
    calculator_event(sampling_rate, 1.0, steps, sampling, population)  # validates the flags
    scheme = "poisson" if sampling == "poisson" else "without_replacement"
    # ε falls as z grows, so the smallest z meeting the target under every accountant asked
    # for ("all") is the largest of their own smallest z; with "all", an accountant that cannot
    # account the setting (PLD/PRV and fixed cohorts) is skipped and named
    per_z: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for candidate in names:
        try:
            per_z[candidate] = calibrate_clipped_sum_noise(
                target_epsilon,
                delta,
                steps,
                sampling_rate,
                scheme,
                population,
                accountant=candidate,
            )
        except UnsupportedEventError as exc:
            if len(names) == 1:
                raise
            skipped[candidate] = str(exc)
    names = tuple(per_z)
    name = max(per_z, key=lambda n: per_z[n])
    z = per_z[name]
    event = calculator_event(sampling_rate, z, steps, sampling, population)
    per = epsilon_per_accountant(event, delta, names)
    achieved = per[name].get("epsilon")
    result = {
        "noise_multiplier": z,
        "target_epsilon": target_epsilon,
        "epsilon": achieved,
        "delta": delta,
        "accountant": name,
        "by_accountant": {
            n: {"noise_multiplier": per_z[n], "epsilon_at_chosen": per[n].get("epsilon")}
            for n in names
        },
        "skipped_accountants": skipped,
        "sampling_rate": sampling_rate,
        "steps": steps,
        "sampling": scheme,
        "population": population,
        "noise_multiplier_convention": "noise std / clip norm (as in run configs)",
        "neighbouring_relation": neighbouring_note(scheme)["relation"],
        "sensitivity": neighbouring_note(scheme)["sensitivity"],
    }
    if as_json:
        print(json.dumps(result))
        return
    note = neighbouring_note(scheme)
    Console().print(
        f"noise multiplier z = {z:.4f} (noise std ÷ clip norm, as in run configs) gives "
        f"ε = {achieved:.4g} ≤ {target_epsilon:g} at δ = {delta:g} ({name}; q = {sampling_rate:g}, "
        f"T = {steps}, {scheme} sampling; {note['relation']} neighbours, sensitivity "
        f"{note['sensitivity']})",
        highlight=False,
    )
    for skipped_name, why in skipped.items():
        Console().print(f"{skipped_name}: skipped ({why})", highlight=False)
    if len(names) > 1:
        Console().print(
            f"binding accountant: {name}; each accountant's own smallest z: "
            + ", ".join(f"{n} {per_z[n]:.4f}" for n in names)
            + "; ε at the chosen z: "
            + ", ".join(f"{n} {per[n].get('epsilon'):.4g}" for n in names),
            highlight=False,
        )
