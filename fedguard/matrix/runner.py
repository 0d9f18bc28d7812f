"""Orchestrate a matrix: validate every cell before anything runs, skip finished cells, run the
rest on the chosen executor, write each result as it arrives (one writer), then the outputs."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedguard.components import build_components
from fedguard.errors import IncompatibleError
from fedguard.matrix.config import (
    Cell,
    MatrixConfig,
    check_cells_limit,
    expand_cells,
    load_matrix,
    validate_cells_count,
)
from fedguard.matrix.executors import run_local, run_ray
from fedguard.matrix.lock import matrix_lock
from fedguard.matrix.store import ResultStore, cell_key
from fedguard.matrix.summary import MatrixTables, tidy_frame, write_heatmaps
from fedguard.matrix.verdict import verdict_frame, verdicts
from fedguard.storage import atomic


@dataclass(frozen=True)
class MatrixPlan:
    config: MatrixConfig
    cells: list[Cell]
    incompatible: dict[str, str]  # cell key → reason


def plan_matrix(config_path: Path, confirmed: bool = False) -> MatrixPlan:
    """Expand and validate; unknown components fail here, before any training."""
    cfg, base = load_matrix(config_path)
    check_cells_limit(cfg, confirmed)
    cells = expand_cells(cfg, base)
    validate_cells_count(cells, cfg.max_cells, confirmed)
    incompatible: dict[str, str] = {}
    for cell in cells:
        try:
            build_components(cell.spec)
        except IncompatibleError as exc:
            incompatible[cell_key(cell.key)] = str(exc)
    return MatrixPlan(cfg, cells, incompatible)


def _cell_info(cell: Cell) -> dict[str, Any]:
    return {
        "attack": cell.attack,
        "defense": cell.defense,
        "seed": cell.seed,
        "axes": [list(a) for a in cell.axes],
        "spec": cell.spec.canonical(),
    }


def run_matrix(
    plan: MatrixPlan,
    out: Path,
    workers: int = 1,
    executor: str = "local",
    address: str | None = None,
    on_result: Callable[[Cell, dict[str, Any]], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run the plan's unfinished cells into ``out`` (locked against a second matrix there);
    ``on_start(to_run, already_finished)`` is called once before the first cell runs (a progress
    bar's known total), ``on_result`` after each. Local workers are capped at the number of cells
    to run. Ctrl-C stores every cell that had finished, stops the workers and re-raises
    ``KeyboardInterrupt``; running it again finishes only the missing cells."""
    with matrix_lock(out):
        return _run_locked(plan, out, workers, executor, address, on_result, on_start)


def _run_locked(
    plan: MatrixPlan,
    out: Path,
    workers: int,
    executor: str,
    address: str | None,
    on_result: Callable[[Cell, dict[str, Any]], None] | None,
    on_start: Callable[[int, int], None] | None,
) -> dict[str, Any]:
    store = ResultStore(out / "results.sqlite")
    try:
        keys = {cell_key(c.key): c for c in plan.cells}
        store.set_meta("name", plan.config.name)
        store.set_meta("metric", plan.config.metric)
        store.set_meta("keys", sorted(keys))
        done = store.finished_keys()
        for key, reason in plan.incompatible.items():
            if key not in done:
                store.put(key, _cell_info(keys[key]), "incompatible", error=reason)
        done |= set(plan.incompatible)
        todo = [(k, c.spec.model_dump(mode="json")) for k, c in keys.items() if k not in done]
        skipped = len(keys) - len(todo)
        if on_start is not None:
            on_start(len(todo), skipped)
        stream = (
            run_ray(todo, address, workers)
            if executor == "ray"
            else run_local(todo, min(workers, max(len(todo), 1)))
        )

        def record(key: str, result: dict[str, Any]) -> None:
            with deferred_interrupt():  # a cell is stored whole or not at all
                store.put(
                    key,
                    _cell_info(keys[key]),
                    result["status"],
                    metrics=result.get("metrics"),
                    records=result.get("records"),
                    error=result.get("error"),
                    seconds=result.get("seconds"),
                )
            if on_result is not None:
                on_result(keys[key], result)

        drain(stream, record)
        rows = store.rows(set(keys))
    finally:
        store.close()
    tidy = tidy_frame(rows)
    judged = verdicts(tidy)
    atomic.write_text(out / "matrix.csv", tidy.to_csv(index=False))
    atomic.write_text(out / "verdicts.csv", verdict_frame(judged).to_csv(index=False))
    heatmaps = write_heatmaps(tidy, out)
    # what was just computed, for the command's terminal table (not read and judged again)
    tables = MatrixTables(plan.config.name, plan.config.metric, rows, tidy, judged)
    return {
        "cells": len(keys),
        "ran": len(todo),
        "skipped": skipped,
        "heatmaps": heatmaps,
        "tables": tables,
    }


def drain(
    stream: Iterator[tuple[str, dict[str, Any]]],
    record: Callable[[str, dict[str, Any]], None],
) -> None:
    """Record every result of ``stream``. On Ctrl-C — raised in the executor or here — the
    executor is told (the interrupt is thrown in at its ``yield``), the finished cells it still
    holds are recorded, then the interrupt goes on."""
    try:
        for key, result in stream:
            record(key, result)
    except KeyboardInterrupt:
        with contextlib.suppress(KeyboardInterrupt, StopIteration):
            item = stream.throw(KeyboardInterrupt())  # type: ignore[attr-defined]
            while True:
                record(*item)
                item = next(stream)
        raise


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold a Ctrl-C until the block is done (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt
