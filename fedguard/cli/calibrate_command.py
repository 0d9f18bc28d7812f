"""``fedguard calibrate``: the smallest noise multiplier meeting a target (ε, δ)."""

from __future__ import annotations

import json
import math

from rich.console import Console

from fedguard.cli.audit_command import accountant_names, calculator_event, epsilon_per_accountant
from fedguard.errors import UserError


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
    from fedguard.privacy.calibrate import calibrate_noise_multiplier

    if not (math.isfinite(target_epsilon) and target_epsilon > 0):
        raise UserError(f"--target-epsilon must be a finite number > 0 (got {target_epsilon!r}).")
    if not (0 < delta < 1):
        raise UserError(f"--delta must be in (0, 1) (got {delta!r}).")
    (name,) = accountant_names(accountant) if accountant != "all" else ("rdp",)
    calculator_event(sampling_rate, 1.0, steps, sampling, population)  # validates the flags
    scheme = "poisson" if sampling == "poisson" else "without_replacement"
    z = calibrate_noise_multiplier(
        target_epsilon, delta, steps, sampling_rate, scheme, population, accountant=name
    )
    event = calculator_event(sampling_rate, z, steps, sampling, population)
    per = epsilon_per_accountant(event, delta, (name,))
    achieved = per[name].get("epsilon")
    result = {
        "noise_multiplier": z,
        "target_epsilon": target_epsilon,
        "epsilon": achieved,
        "delta": delta,
        "accountant": name,
        "sampling_rate": sampling_rate,
        "steps": steps,
        "sampling": scheme,
        "population": population,
    }
    if as_json:
        print(json.dumps(result))
        return
    Console().print(
        f"noise multiplier z = {z:.4f} gives ε = {achieved:.4g} ≤ {target_epsilon:g} at "
        f"δ = {delta:g} ({name}; q = {sampling_rate:g}, T = {steps}, {scheme} sampling)"
    )
