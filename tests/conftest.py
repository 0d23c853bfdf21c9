"""Test-suite set-up: a private Prefect home and result storage, one Prefect API per session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_TMP = Path(tempfile.mkdtemp(prefix="actscan-tests-"))
os.environ["ACTSCAN_HOME"] = str(_TMP / "home")
os.environ["PREFECT_HOME"] = str(_TMP / "home" / "prefect")
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(_TMP / "home" / "prefect" / "storage")
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("ACTSCAN_DATA_ROOT", None)

from actscan.settings import configure_prefect  # noqa: E402

configure_prefect()

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def prefect_api():
    """A real Prefect API (temporary SQLite-backed server) for the whole session."""
    from prefect import flow
    from prefect.testing.utilities import prefect_test_harness

    @flow(name="warm-up")
    def warm_up() -> int:
        return 1

    with prefect_test_harness(server_startup_timeout=300):  # generous: a loaded CI box
        # Prefect's console log handler binds to the sys.stderr it first sees. Run one flow now,
        # so it binds to pytest's stream and not to a CliRunner stream closed after one invoke.
        assert warm_up() == 1
        yield


@pytest.fixture
def data_root(tmp_path: Path) -> str:
    """A fresh data root directory for one test."""
    root = tmp_path / "data"
    root.mkdir()
    return str(root)
