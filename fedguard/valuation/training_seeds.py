"""Contribution values over training seeds: the run retrained with other training seeds.

A valuation of one run carries the sampling error of its estimator but not the randomness of
training itself (initialisation, client sampling, batch order, noise): with another training seed
the same clients on the same data can be valued differently. ``contrib --training-seeds K``
retrains the run ``K − 1`` times with ``training_seed = base + k`` (same data split, partition and
client roles; :attr:`fedguard.config.RunSpec.training_seed`), values each run with the same method
and estimator seed, and reports the mean over the ``K`` runs with the Student-t interval over them
(``SE = sd/√K``, ``K − 1`` degrees of freedom). Each estimate already contains its sampling error,
so the spread over seeds covers both sources. The retrained runs are kept under
``RUN/training_seeds/`` and reused by later calls (an interrupted one is resumed).

References
----------
.. [1] A. Ghorbani, J. Zou. "Data Shapley: Equitable Valuation of Data for Machine Learning."
   ICML 2019 (values as expectations over the randomness of training).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from scipy import stats

from fedguard.storage.run_dir import RunDirectory
from fedguard.valuation.base import Scores
from fedguard.valuation.utilities import LoadedRun, load_run

#: Where the retrained runs live inside the valued run's directory.
SEEDS_DIR = "training_seeds"
MAX_TRAINING_SEEDS = 100


def seed_runs(
    path: Path, run: LoadedRun, n_seeds: int, progress: Callable[[int, int], None] | None = None
) -> list[LoadedRun]:
    """The run itself plus ``n_seeds − 1`` retrained with the next training seeds (made or
    resumed as needed, with saved updates)."""
    from fedguard.launch import execute

    base = run.spec.seed if run.spec.training_seed is None else run.spec.training_seed
    runs = [run]
    for k in range(1, n_seeds):
        spec = run.spec.model_copy(update={"training_seed": base + k, "save_updates": True})
        out = path / SEEDS_DIR / f"training_seed_{base + k}"
        directory = RunDirectory(out)
        if progress is not None:
            progress(k, n_seeds - 1)
        if not directory.complete:
            execute(spec, out, resume=directory.exists())
        runs.append(load_run(out))
    return runs


def combine_over_seeds(per_seed: Sequence[Scores], training_seeds: Sequence[int]) -> Scores:
    """One :class:`Scores` from the valuations of ``K ≥ 2`` runs: mean, ``sd/√K`` and the
    ``t_{K−1}`` interval; the per-seed values and standard errors go to ``info``."""
    values = torch.stack([s.values for s in per_seed])  # (K, n)
    k = values.shape[0]
    mean = values.mean(dim=0)
    se = values.std(dim=0, correction=1) / math.sqrt(k)
    first = per_seed[0]
    t = float(stats.t.ppf(0.5 + first.confidence / 2.0, df=k - 1))
    return Scores(
        method=first.method,
        values=mean,
        std_errors=se,
        lower=mean - t * se,
        upper=mean + t * se,
        n_evaluations=sum(s.n_evaluations for s in per_seed),
        n_queries=sum(s.n_queries for s in per_seed),
        target=first.target,
        confidence=first.confidence,
        evaluation_unit=first.evaluation_unit,
        info={
            "interval": f"over {k} training seeds",
            "training_seeds": list(training_seeds),
            "per_seed_values": values.tolist(),
            "per_seed_std_errors": torch.stack([s.std_errors for s in per_seed]).tolist(),
        },
    )
