"""Where cells run: a local process pool (default) or Ray tasks on a cluster."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any

from fedguard.errors import UserError
from fedguard.matrix.cell import init_worker, run_cell

Job = tuple[str, dict[str, Any]]  # (cell key, spec data)


def run_local(jobs: list[Job], workers: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (key, result) as cells finish. One worker runs cells in this process."""
    if workers <= 1:
        for key, spec in jobs:
            yield key, run_cell(spec)
        return
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=get_context("spawn"), initializer=init_worker
    ) as pool:
        futures = {pool.submit(run_cell, spec): key for key, spec in jobs}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()


def check_ray_address(address: str, timeout: float = 3.0) -> None:
    """Fail within seconds when a Ray head does not answer (instead of hanging in ray.init)."""
    if address == "auto":
        if os.environ.get("RAY_ADDRESS"):
            address = os.environ["RAY_ADDRESS"]
        elif os.path.exists("/tmp/ray/ray_current_cluster"):
            with open("/tmp/ray/ray_current_cluster") as fh:
                address = fh.read().strip()
        else:
            raise UserError(
                "--address auto found no running Ray cluster on this machine; start one with `ray start --head` or give HOST:PORT."
            )
    if address.startswith("ray://"):
        address = address[len("ray://") :]
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address!r} must be HOST:PORT, ray://HOST:PORT or auto.")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise UserError(
            f"the Ray cluster at {address} does not answer ({exc.strerror or exc})."
        ) from None


def run_ray(
    jobs: list[Job], address: str | None, workers: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        import ray
    except ImportError:
        raise UserError("the ray executor needs Ray: pip install 'fedguard[ray]'.") from None
    if address:
        check_ray_address(address)
    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = (
            {"address": address} if address else {"address": "local", "num_cpus": max(workers, 1)}
        )
        ray.init(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True, **kwargs)
    try:
        remote: Any = ray.remote(num_cpus=1)(_ray_cell)
        refs = {remote.remote(spec): key for key, spec in jobs}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield refs[ref], ray.get(ref)
    finally:
        if started_here:
            ray.shutdown()


def _ray_cell(spec: dict[str, Any]) -> dict[str, Any]:
    init_worker()
    return run_cell(spec)
