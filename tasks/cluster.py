"""Dask cluster access: a local cluster by default, any scheduler address to scale out.

Prefect stays out of the workers: stages submit plain functions (``tasks.*``) to Dask, so a
worker never needs a Prefect API (STACK.md: otherwise each worker boots its own server).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("actscan")
SCRATCH_PREFIX = "actscan-dask-"


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep_stale_scratch(tmp: str | None = None) -> int:
    """Remove ``<tmp>/actscan-dask-<pid>-*`` folders whose process no longer runs (left by a
    killed command: SIGKILL gives no chance to clean up). Returns how many were removed."""
    removed = 0
    for path in Path(tmp or tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*-*"):
        pid = path.name[len(SCRATCH_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and path.is_dir() and not _pid_running(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed += not path.exists()
    return removed


@contextlib.contextmanager
def scratch_dir() -> Iterator[str]:
    """A private Dask local directory ``<tmp>/actscan-dask-<pid>-XXXX`` (spill files, worker
    space) instead of ``/tmp/dask-scratch-space``, removed on exit; stale ones of killed
    processes are swept first, so no ``actscan-dask-*`` folder outlives its command."""
    sweep_stale_scratch()
    path = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def dask_client(address: str | None = None, n_workers: int = 2,
                threads_per_worker: int = 1, memory_limit: str = "4GiB") -> Iterator[object]:
    """Yield a ``distributed.Client``: to ``address`` when given, else to a new local cluster.

    The local cluster uses worker processes (so numerical work runs in parallel despite the
    GIL) and spills to a private temp dir rather than ``/tmp/dask-scratch-space``. Dask's nanny
    sets OMP/MKL threads to 1 in each worker, so ``n_workers`` processes use ``n_workers`` cores.
    """
    from distributed import Client, LocalCluster

    if address:
        client = Client(address)
        log.info("using Dask scheduler at %s (%d workers)", address,
                 len(client.scheduler_info().get("workers", {})))
        try:
            yield client
        finally:
            client.close()
        return
    with scratch_dir() as scratch:
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                               processes=True, memory_limit=memory_limit,
                               dashboard_address=":0", local_directory=scratch,
                               silence_logs=logging.ERROR)
        client = Client(cluster)
        log.info("started a local Dask cluster: %d worker processes", n_workers)
        try:
            yield client
        finally:
            client.close()
            cluster.close()
