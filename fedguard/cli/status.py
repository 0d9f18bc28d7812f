"""Status lines for steps that take more than a few seconds (report, canary audit)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console


@contextmanager
def step(what: str) -> Iterator[None]:
    """A live spinner with ``what`` while the step runs (on a terminal), then one line saying
    it finished and how long it took (everywhere, logs included). On stderr: ``--json`` output
    on stdout stays parseable."""
    console = Console(stderr=True)
    started = time.perf_counter()
    with console.status(f"{what} …"):
        yield
    console.print(
        f"{what}: done in {time.perf_counter() - started:.1f} s", highlight=False, soft_wrap=True
    )
