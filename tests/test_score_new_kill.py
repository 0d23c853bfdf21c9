"""The ``score-new-data`` flow SIGKILLed mid-scoring, then run again: the same tables.

The flow runs in a child process (``python -c`` calling ``flows.score_new.score_new_data_flow``
against the session's Prefect API) over a watch folder of several CSE-CIC-IDS2018 day files
(tests/fixtures/synthetic_data.py) plus one that fails validation; the scorer is the one the
``ids_env`` fixture of tests/test_score_new.py fits. Two data roots hold copies of that scorer:

* ``straight``: the flow runs to completion, undisturbed;
* ``killed``: the flow is SIGKILLed once a first score part is complete and the next file's
  part is being written (its hidden temporary exists), then run again to completion.

Then, and again after one file changed and its rescoring was killed the same way: the
``ids_scores`` and ``ids_alerts`` tables are equal value for value (write time and checkout
commit aside), each (day, source file) has exactly one part named by its content hash, the
ledger holds each file once with the same outcome, and no temporary file is left anywhere
under the data root.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from storage.partitions import Ledger, list_parts, read_partitioned
from tests.fixtures.synthetic_data import day_file_name, write_cicids2018_day
from tests.test_score_new import ids_env  # noqa: F401  (module fixture: ingested day + fitted scorer)

REPO = Path(__file__).resolve().parents[1]
DAYS = {"Thursday-15-02-2018": 6000, "Friday-16-02-2018": 6000, "Thursday-22-02-2018": 6000,
        "Friday-02-03-2018": 6000}
CHANGED = "Friday-16-02-2018"
TOP_K = 3
CHUNK_ROWS = 512  # small chunks and blocks: a file takes seconds, so the kill lands mid-file
BLOCKSIZE_MB = 1

_FLOW = textwrap.dedent("""
    import json, sys
    from actscan.settings import configure_prefect
    configure_prefect()
    from flows.score_new import score_new_data_flow
    out = score_new_data_flow(watch=sys.argv[1], data_root=sys.argv[2], scorer="ids",
                              top_k=int(sys.argv[3]), chunk_rows=int(sys.argv[4]),
                              blocksize_mb=int(sys.argv[5]))
    print("RESULT " + json.dumps(out))
""")


def _env() -> dict[str, str]:
    """The child's environment: the session's Prefect API (no server of its own), one thread."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "the prefect_api fixture exports no API URL"
    return {**os.environ, "PREFECT_API_URL": url, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}


def _start(watch: str, root: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _FLOW, watch, root, str(TOP_K), str(CHUNK_ROWS), str(BLOCKSIZE_MB)],
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _run(watch: str, root: str) -> dict:
    """Run the flow in a child process to completion; its summary."""
    proc = _start(watch, root)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    line = [x for x in out.splitlines() if x.startswith("RESULT ")]
    assert line, out[-4000:]
    return json.loads(line[-1].removeprefix("RESULT "))


def _temporaries(root: str) -> list[str]:
    """Every temporary of an atomic write left anywhere under the data root."""
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files
                  if ".tmp-" in f or f.endswith(".part"))


def _kill_mid_scoring(watch: str, root: str, first_parts: int) -> dict:
    """Start the flow; SIGKILL it once ``first_parts`` score parts are complete and the next
    part is half-written. What the data root held at the kill."""
    proc = _start(watch, root)
    scores = Path(root, "tables", "ids_scores")
    t0 = time.time()
    try:
        while time.time() - t0 < 600 and proc.poll() is None:
            complete = list_parts(root, "ids_scores")
            writing = [p for p in scores.rglob(".part-*.tmp-*")] if scores.exists() else []
            if len(complete) >= first_parts and writing:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the flow finished before it could be killed:\n" + \
            (proc.stdout.read() if proc.stdout else "")[-4000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(60)
    finally:
        if proc.poll() is None:  # only the child this test started
            proc.kill()
            proc.wait(60)
        if proc.stdout:
            proc.stdout.close()
    return {"parts": list_parts(root, "ids_scores"), "temporaries": _temporaries(root),
            "ledger": Ledger(root).latest()}


def _values(df: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """A table without what says when and from which checkout it was written (the commit moves
    when someone commits between two runs), in a fixed row order."""
    df = df.drop(columns=[c for c in df.columns
                          if c.startswith("prov_created") or c == "prov_git_commit"])
    return df.sort_values(order, kind="stable").reset_index(drop=True)


def _relative(root: str, v: object) -> object:
    return str(v).removeprefix(root) if isinstance(v, str) else v


def _ledger_values(root: str) -> pd.DataFrame:
    led = Ledger(root).read()
    led = led.drop(columns=["processed_utc", "seconds"])
    for c in ("partition", "alerts_partition"):
        led[c] = [_relative(root, v) for v in led[c]]
    return led.sort_values("path").reset_index(drop=True)


def _check_same(straight: str, killed: str, files: list[str]) -> None:
    """Tables equal, one part per (day, source, content hash), each file once in the ledger,
    no temporaries."""
    from tasks.ids_scoring import SCORES_TABLE, load_scorer, part_key

    for table, order in (("ids_scores", ["source", "row"]), ("ids_alerts", ["source", "rank"])):
        a, b = read_partitioned(straight, table), read_partitioned(killed, table)
        assert len(a) > 0 and list(a.columns) == list(b.columns)
        pd.testing.assert_frame_equal(_values(a, order), _values(b, order))
        assert [p.removeprefix(straight) for p in list_parts(straight, table)] == \
            [p.removeprefix(killed) for p in list_parts(killed, table)]
    led = Ledger(killed).read()
    assert sorted(led["path"]) == sorted(files) and led["path"].is_unique  # each file once
    pd.testing.assert_frame_equal(_ledger_values(straight), _ledger_values(killed))
    scorer = load_scorer(killed, "ids")
    for table in (SCORES_TABLE, "ids_alerts"):
        parts = list_parts(killed, table)
        keys = [(Path(p).parent.parent.name, Path(p).parent.name) for p in parts]
        assert len(keys) == len(set(keys)), f"{table}: two parts for one (day, source): {parts}"
        scored = led[led["status"] == "scored"]
        assert len(parts) == len(scored)
        for r in scored.to_dict(orient="records"):  # the part's name is its content hash
            key = part_key(r["sha256"], scorer.key, scorer.threshold(), TOP_K)
            assert r["part_key"] == key
            col = "partition" if table == SCORES_TABLE else "alerts_partition"
            assert r[col] in parts and Path(r[col]).name == f"part-{key}.parquet"
    assert _temporaries(killed) == [] and _temporaries(straight) == []


@pytest.fixture(scope="module")
def kill_env(ids_env, tmp_path_factory):  # noqa: F811
    """A watch folder (four good day files, one that fails validation) and two data roots
    holding copies of the fitted scorer."""
    base = tmp_path_factory.mktemp("kill")
    watch = base / "watch"
    for k, (day, n) in enumerate(DAYS.items()):
        write_cicids2018_day(watch / day_file_name(day), n, day, seed=20 + k)
    bad = day_file_name("Friday-23-02-2018")  # text in a numeric column: quarantined
    shutil.copy(Path(ids_env["watch"]) / bad, watch / bad)
    roots = {}
    for name in ("straight", "killed"):
        roots[name] = str(base / name)
        shutil.copytree(Path(ids_env["root"]) / "scoring" / "ids",
                        Path(roots[name]) / "scoring" / "ids")
    return {"watch": str(watch), **roots,
            "files": sorted(str(p) for p in watch.iterdir() if p.suffix == ".csv")}


def test_sigkill_mid_scoring_then_rerun_gives_identical_tables(kill_env, prefect_api) -> None:
    watch, straight, killed, files = (kill_env[k] for k in ("watch", "straight", "killed", "files"))

    # -- new files: the killed run against an uninterrupted one
    out = _run(watch, straight)
    assert len(out["scored"]) == len(DAYS) and len(out["quarantined"]) == 1
    at_kill = _kill_mid_scoring(watch, killed, first_parts=1)
    assert 1 <= len(at_kill["parts"]) < len(DAYS)
    assert at_kill["temporaries"], "the kill did not land while a part was being written"
    again = _run(watch, killed)
    assert sorted(again["scored"] + again["skipped"] + again["quarantined"]) == files
    assert len(again["scored"]) >= len(DAYS) - len(at_kill["ledger"])  # nothing lost
    _check_same(straight, killed, files)

    # -- one file changed: its rescoring killed mid-part, the old part still there
    changed = os.path.join(watch, day_file_name(CHANGED))
    old_part = Ledger(killed).latest()[changed]["partition"]
    write_cicids2018_day(changed, 7000, CHANGED, seed=99)
    out = _run(watch, straight)
    assert out["scored"] == [changed]
    at_kill = _kill_mid_scoring(watch, killed, first_parts=len(DAYS))
    assert old_part in at_kill["parts"], "the old part went before the new one was complete"
    assert at_kill["temporaries"]
    again = _run(watch, killed)
    assert again["scored"] == [changed] and not os.path.exists(old_part)
    _check_same(straight, killed, files)
