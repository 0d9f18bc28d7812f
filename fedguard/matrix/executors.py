"""Where cells run: a local process pool (default) or Ray tasks on a cluster."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any

from fedguard.errors import UserError
from fedguard.matrix.cell import init_worker, run_cell

Job = tuple[str, dict[str, Any]]  # (cell key, spec data)
#: cells handed to each pool worker ahead of time (it never waits for this process to finish a
#: cell of its own before it gets the next one)
AHEAD = 3


def run_local(jobs: list[Job], workers: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (key, result) as cells finish, ``workers`` processes computing cells, this one
    included: with one, every cell runs here; with more, a pool of ``workers − 1`` processes
    takes cells from the front of the queue while this process runs cells from its back that
    no worker has started (it would otherwise sit idle, and one fewer worker is one fewer
    start-up — importing torch costs a worker about 2 CPU seconds). Cells run here with the
    workers' torch threads (``FEDGUARD_THREADS``), so a cell's result does not depend on where
    it ran.

    On Ctrl-C (a ``KeyboardInterrupt`` here, or thrown in at a ``yield`` by the consumer) the
    cells that already finished are still yielded, then the workers are stopped and the
    interrupt goes on. Workers ignore SIGINT (the parent decides) and exit on their own when
    the parent dies, SIGKILL included.
    """
    if workers <= 1:
        for key, spec in jobs:
            yield key, run_cell(spec)
        return
    pool = ProcessPoolExecutor(
        max_workers=workers - 1,
        mp_context=get_context("spawn"),
        initializer=init_local_worker,
        initargs=(os.getpid(),),
    )
    # Cells go to the pool a few at a time (AHEAD per worker), never all at once: the rest
    # stay here, for this process to take from the back. (Cancelling submitted cells instead
    # would break the pool's own error path: on a crashed worker Python 3.11 fails to mark
    # cancelled cells and the others would never finish.)
    backlog = deque(jobs)
    in_flight: dict[Future[dict[str, Any]], str] = {}
    finished = False
    try:
        while backlog:
            while backlog and len(in_flight) < AHEAD * (workers - 1):
                key, spec = backlog.popleft()  # the pool works from the front
                in_flight[pool.submit(run_cell, spec)] = key
            for fut in [f for f in in_flight if f.done()]:  # finished in the pool meanwhile
                yield in_flight.pop(fut), fut.result()
            if backlog:
                key, spec = backlog.pop()  # this process from the back
                yield key, _run_here(spec)
        while in_flight:
            fut = next(as_completed(in_flight))
            yield in_flight.pop(fut), fut.result()
        finished = True
    except KeyboardInterrupt:
        for fut in list(in_flight):  # finished in flight: hand them over before stopping
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                yield in_flight.pop(fut), fut.result()
        raise
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:
            _stop(pool)


def _run_here(spec: dict[str, Any]) -> dict[str, Any]:
    """One cell in this process, with a worker's torch threads (``init_worker``); this
    process's own setting is restored afterwards."""
    import torch

    from fedguard.threads import requested_threads

    previous = torch.get_num_threads()
    torch.set_num_threads(requested_threads())
    try:
        return run_cell(spec)
    finally:
        torch.set_num_threads(previous)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel queued cells and end the workers now (running cells are re-run on resume)."""
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)


def init_local_worker(parent_pid: int) -> None:
    """A local worker: one torch thread, Ctrl-C left to the parent, and death with the parent."""
    init_worker()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent(parent_pid)


def exit_with_parent(parent_pid: int, poll_seconds: float = 0.5) -> None:
    """End this process when ``parent_pid`` dies: PR_SET_PDEATHSIG on Linux, and a polling
    thread everywhere (it also covers a parent that died before this ran)."""
    with contextlib.suppress(Exception):  # Linux only; the poll below covers the rest
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_seconds)
        os._exit(1)

    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


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
