"""The local Dask cluster's scratch folder: private, removed on exit, swept after a SIGKILL."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tasks.cluster import SCRATCH_PREFIX, dask_client, sweep_stale_scratch


@pytest.fixture
def tmp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_local_cluster_works_in_its_own_folder_and_removes_it(tmp_root: Path) -> None:
    with dask_client(None, n_workers=1, memory_limit="1GiB") as client:
        assert client.submit(sum, [1, 2, 3]).result() == 6
        inside = sorted(p.name for p in tmp_root.glob(f"{SCRATCH_PREFIX}*"))
        assert len(inside) == 1 and inside[0].startswith(f"{SCRATCH_PREFIX}{os.getpid()}-")
    assert list(tmp_root.glob(f"{SCRATCH_PREFIX}*")) == []


def test_folders_of_killed_processes_are_swept_and_live_ones_kept(tmp_root: Path) -> None:
    dead = tmp_root / f"{SCRATCH_PREFIX}{_dead_pid()}-abc"
    (dead / "worker-1").mkdir(parents=True)
    (dead / "worker-1" / "spill.bin").write_bytes(b"x" * 10)
    live = tmp_root / f"{SCRATCH_PREFIX}{os.getpid()}-def"
    live.mkdir()
    other = tmp_root / f"{SCRATCH_PREFIX}notapid"  # not ours to judge: kept
    other.mkdir()
    assert sweep_stale_scratch() == 1
    assert not dead.exists() and live.exists() and other.exists()
    with dask_client(None, n_workers=1, memory_limit="1GiB"):
        pass  # a new cluster sweeps too
    assert live.exists() and not dead.exists()
