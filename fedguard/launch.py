"""From a spec to a trained run: build its components (registry layer), then hand the core a
:class:`~fedguard.core.simulation.Simulation` to play (:mod:`fedguard.core.runner`).

The core never builds plugins itself (it sits below them); everything that starts a run from a
spec — the CLI, the matrix, audits, valuation, tests — comes through here.
"""

from __future__ import annotations

from pathlib import Path

from fedguard.components import Components, build_components
from fedguard.core.runner import ProgressFn, RunResult, run_simulation
from fedguard.core.simulation import Simulation
from fedguard.spec import RunSpec


def build_simulation(spec: RunSpec, components: Components | None = None) -> Simulation:
    """``spec``'s simulation, its components built and checked (or ``components`` as given)."""
    return Simulation(spec, components if components is not None else build_components(spec))


def execute(
    spec: RunSpec,
    out: Path | None = None,
    progress: ProgressFn | None = None,
    resume: bool = False,
    simulation: Simulation | None = None,
) -> RunResult:
    """Train ``spec`` (or the already built ``simulation`` of it); with ``out`` write (or
    resume) a run directory there. Components, data and device are checked before the
    directory is created, so a bad config never leaves a half-written run behind."""
    sim = simulation if simulation is not None else build_simulation(spec)
    return run_simulation(sim, out, progress, resume)
