"""Dask cluster access: a local cluster by default, any scheduler address to scale out.

Prefect stays out of the workers: stages submit plain functions (``tasks.*``) to Dask, so a
worker never needs a Prefect API (STACK.md: otherwise each worker boots its own server).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Iterator

log = logging.getLogger("actscan")


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
    scratch = tempfile.mkdtemp(prefix="actscan-dask-")
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                           processes=True, memory_limit=memory_limit, dashboard_address=":0",
                           local_directory=scratch, silence_logs=logging.ERROR)
    client = Client(cluster)
    log.info("started a local Dask cluster: %d worker processes", n_workers)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
        shutil.rmtree(scratch, ignore_errors=True)  # no actscan-dask-* folder left behind
