"""Fixture generators writing files in the real formats (for tests and benchmarks).

* :func:`write_idx_set` - the four MNIST-style IDX files (gz or raw; EMNIST-letters naming,
  transposed images and 1..26 labels with ``letters=True``); :func:`write_emnist_zip` wraps
  them like the publisher's ``gzip.zip``.
* :func:`write_nsl_kdd` - headerless 43-field KDDTrain+.txt / KDDTest+.txt (the test file
  holds attack names and a service unseen in training, like the real KDDTest+).
* :func:`write_creditcard` - creditcard.csv with its header and quoted Class.
* :func:`write_cicids2018` - any number of rows in the real CSE-CIC-IDS2018 schema, split over
  per-day files named like the real ones, with the real quirks: the 84-column
  Tuesday-20-02-2018 file, header lines repeated inside files, ``Infinity``/``NaN`` in
  Flow Byts/s and Flow Pkts/s, negative counters and day-first timestamps. Rows are written
  in chunks (bounded memory) with pyarrow's CSV writer.

All generators are deterministic given their seed.
"""

from __future__ import annotations

import concurrent.futures as cf
import gzip
import io
import itertools
import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from tasks.data.cicids2018 import COLUMNS as IDS_COLUMNS
from tasks.data.cicids2018 import DAYS, FILE_SUFFIX, ID_COLUMNS
from tasks.data.creditcard import COLUMNS as CC_COLUMNS
from tasks.data.idx import write_idx
from tasks.data.labels import NSL_KDD_FAMILIES
from tasks.data.mnist import EMNIST_STEMS, STEMS


# ------------------------------------------------------------------------------------ IDX
def write_idx_set(
    folder: str | os.PathLike[str],
    n_train: int = 600,
    n_test: int = 100,
    *,
    compress: bool = True,
    letters: bool = False,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Write train/test images (N, 28, 28) uint8 + labels; return the arrays as written.

    Images carry a class-dependent bright square so a classifier can learn them. With
    ``letters`` the EMNIST names are used, labels are 1..26 and images are stored transposed.
    """
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stems = EMNIST_STEMS if letters else STEMS
    n_classes = 26 if letters else 10
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = (np.arange(n) % n_classes).astype(np.uint8)
        rng.shuffle(labels)
        images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
        for i, lab in enumerate(labels):
            r, c = 2 + (lab % 5) * 5, 2 + (lab // 5) * 4
            images[i, r : r + 4, c : c + 3] = 255
        stored = images.transpose(0, 2, 1) if letters else images
        stored_labels = labels + 1 if letters else labels
        suffix = ".gz" if compress else ""
        write_idx(folder / f"{stems[split][0]}{suffix}", np.ascontiguousarray(stored))
        write_idx(folder / f"{stems[split][1]}{suffix}", stored_labels)
        out[f"{split}_images"], out[f"{split}_labels"] = images, labels
    return out


def write_emnist_zip(folder: str | os.PathLike[str], n_train: int = 260, n_test: int = 52,
                     seed: int = 0, evil_member: str | None = None) -> Path:
    """Write ``gzip.zip`` laid out like the publisher's (``gzip/emnist-letters-*.gz`` plus
    other EMNIST splits); ``evil_member`` adds an entry with that (unsafe) name."""
    folder = Path(folder)
    stage = folder / "_stage"
    write_idx_set(stage, n_train, n_test, letters=True, seed=seed)
    zpath = folder / "gzip.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_STORED) as z:
        for f in sorted(stage.iterdir()):
            z.write(f, f"gzip/{f.name}")
        z.writestr("gzip/emnist-digits-mapping.txt", "0 48\n")
        if evil_member:
            z.writestr(evil_member, "gotcha")
    for f in stage.iterdir():
        f.unlink()
    stage.rmdir()
    return zpath


# -------------------------------------------------------------------------------- NSL-KDD
_SERVICES = ["http", "private", "domain_u", "smtp", "ftp_data", "eco_i", "other", "telnet",
             "ecr_i", "ftp", "finger", "auth"]  # fmt: skip
_FLAGS = ["SF", "S0", "REJ", "RSTR", "SH", "RSTO", "S1", "RSTOS0", "S3", "S2", "OTH"]
_TRAIN_ATTACKS = ["neptune", "smurf", "back", "satan", "ipsweep", "portsweep", "nmap",
                  "guess_passwd", "warezclient", "buffer_overflow", "rootkit"]  # fmt: skip
_TEST_ONLY_ATTACKS = ["mscan", "apache2", "processtable", "snmpguess", "httptunnel", "xterm"]


def nsl_kdd_lines(n: int, rng: np.random.Generator, *, test: bool = False) -> list[str]:
    """``n`` NSL-KDD lines (43 comma-separated fields)."""
    attacks = _TRAIN_ATTACKS + (_TEST_ONLY_ATTACKS if test else [])
    services = _SERVICES + (["tftp_u"] if test else [])  # a service never seen in training
    lines = []
    for i in range(n):
        attack = "normal" if rng.random() < 0.5 else attacks[int(rng.integers(len(attacks)))]
        if i < len(attacks) + 1:  # every label at least once
            attack = (["normal", *attacks])[i]
        service = services[int(rng.integers(len(services)))]
        if test and i == 0:
            service = "tftp_u"
        num = [int(rng.integers(0, 5000)) if k in (0, 1, 2) else round(float(rng.random()), 2)
               if k >= 20 else int(rng.integers(0, 3)) for k in range(38)]  # fmt: skip
        proto = ["tcp", "udp", "icmp"][int(rng.integers(3))]
        flag = _FLAGS[int(rng.integers(len(_FLAGS)))]
        fields = [num[0], proto, service, flag, *num[1:], attack, int(rng.integers(0, 22))]
        lines.append(",".join(str(f) for f in fields))
    return lines


def write_nsl_kdd(folder: str | os.PathLike[str], n_train: int = 400, n_test: int = 150,
                  seed: int = 0) -> tuple[Path, Path]:
    """Write KDDTrain+.txt and KDDTest+.txt (no header, LF endings)."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tr, te = folder / "KDDTrain+.txt", folder / "KDDTest+.txt"
    tr.write_text("\n".join(nsl_kdd_lines(n_train, rng)) + "\n")
    te.write_text("\n".join(nsl_kdd_lines(n_test, rng, test=True)) + "\n")
    known = {a for names in NSL_KDD_FAMILIES.values() for a in names}
    assert known.issuperset(_TRAIN_ATTACKS + _TEST_ONLY_ATTACKS)
    return tr, te


# ----------------------------------------------------------------------------- credit card
def write_creditcard(path: str | os.PathLike[str], n_rows: int = 2000, n_fraud: int = 20,
                     seed: int = 0) -> Path:
    """Write creditcard.csv: header, Time, V1..V28, Amount, quoted Class ("0"/"1")."""
    rng = np.random.default_rng(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cls = np.zeros(n_rows, np.int64)
    cls[rng.choice(n_rows, n_fraud, replace=False)] = 1
    t = np.sort(rng.integers(0, 172800, n_rows)).astype(np.float64)
    v = rng.normal(0, 1, (n_rows, 28)) + cls[:, None] * 2.0
    amount = np.round(rng.exponential(80, n_rows), 2)
    with open(path, "w") as f:
        f.write(",".join(f'"{c}"' for c in CC_COLUMNS) + "\n")
        for i in range(n_rows):
            vs = ",".join(repr(float(x)) for x in v[i])
            f.write(f'{t[i]:.1f},{vs},{amount[i]},"{cls[i]}"\n')
    return path


# ------------------------------------------------------------------------ CSE-CIC-IDS2018
REAL_DAY_ROWS: dict[str, int] = {
    "Wednesday-14-02-2018": 1_048_575, "Thursday-15-02-2018": 1_048_575,
    "Friday-16-02-2018": 1_048_575, "Tuesday-20-02-2018": 7_948_748,
    "Wednesday-21-02-2018": 1_048_575, "Thursday-22-02-2018": 1_048_575,
    "Friday-23-02-2018": 1_048_575, "Wednesday-28-02-2018": 613_104,
    "Thursday-01-03-2018": 331_125, "Friday-02-03-2018": 1_048_575,
}  # fmt: skip
DAY_LABELS: dict[str, list[str]] = {
    "Wednesday-14-02-2018": ["FTP-BruteForce", "SSH-Bruteforce"],
    "Thursday-15-02-2018": ["DoS attacks-GoldenEye", "DoS attacks-Slowloris"],
    "Friday-16-02-2018": ["DoS attacks-SlowHTTPTest", "DoS attacks-Hulk"],
    "Tuesday-20-02-2018": ["DDoS attacks-LOIC-HTTP"],
    "Wednesday-21-02-2018": ["DDOS attack-HOIC", "DDOS attack-LOIC-UDP"],
    "Thursday-22-02-2018": ["Brute Force -Web", "Brute Force -XSS", "SQL Injection"],
    "Friday-23-02-2018": ["Brute Force -Web", "Brute Force -XSS", "SQL Injection"],
    "Wednesday-28-02-2018": ["Infilteration"],
    "Thursday-01-03-2018": ["Infilteration"],
    "Friday-02-03-2018": ["Bot"],
}
REPEATED_HEADER_DAYS = ("Friday-16-02-2018", "Wednesday-28-02-2018", "Thursday-01-03-2018")
FLOAT_COLUMNS = {
    "Fwd Pkt Len Mean", "Fwd Pkt Len Std", "Bwd Pkt Len Mean", "Bwd Pkt Len Std", "Flow Byts/s",
    "Flow Pkts/s", "Flow IAT Mean", "Flow IAT Std", "Fwd IAT Mean", "Fwd IAT Std", "Bwd IAT Mean",
    "Bwd IAT Std", "Fwd Pkts/s", "Bwd Pkts/s", "Pkt Len Mean", "Pkt Len Std", "Pkt Len Var",
    "Pkt Size Avg", "Fwd Seg Size Avg", "Bwd Seg Size Avg", "Active Mean", "Active Std",
    "Idle Mean", "Idle Std",
}  # fmt: skip
_INF = re.compile(rb"(?<=,)inf(?=,)")
_NAN = re.compile(rb"(?<=,)nan(?=,)")
_PORTS = np.asarray([80, 443, 22, 21, 53, 3389, 8080, 445, 139, 0])


def day_file_name(day: str) -> str:
    """Real file name of a day, e.g. ``Wednesday-14-02-2018_TrafficForML_CICFlowMeter.csv``."""
    return f"{day}{FILE_SUFFIX}"


def _ids_table(n: int, day: str, rng: np.random.Generator, wide: bool, row0: int) -> pa.Table:
    d, m, y = day.split("-")[1:]
    base = np.datetime64(f"{y}-{m}-{d}T08:00:00", "s").astype(np.int64)
    ts = base + np.sort(rng.integers(0, 10 * 3600, n))
    attacks = DAY_LABELS[day]
    is_attack = rng.random(n) < 0.3
    label_idx = np.where(is_attack, 1 + rng.integers(0, len(attacks), n), 0).astype(np.int32)
    labels = pa.DictionaryArray.from_arrays(pa.array(label_idx), pa.array(["Benign", *attacks]))
    duration = np.where(rng.random(n) < 0.01, 0, rng.lognormal(9, 3, n).astype(np.int64) + 1)
    duration = np.where(rng.random(n) < 0.0005, -rng.integers(1, 1000, n), duration)
    fwd, bwd = rng.integers(1, 200, n), rng.integers(0, 200, n)
    cols: dict[str, pa.Array] = {}
    for c in IDS_COLUMNS:
        if c == "Dst Port":
            v = np.where(rng.random(n) < 0.7, _PORTS[rng.integers(0, len(_PORTS), n)],
                         rng.integers(1024, 65536, n))
        elif c == "Protocol":
            v = rng.choice(np.asarray([6, 17, 0]), n, p=[0.75, 0.23, 0.02])
        elif c == "Timestamp":
            cols[c] = pc.strftime(pa.array(ts.astype("datetime64[s]")), format="%d/%m/%Y %H:%M:%S")
            continue
        elif c == "Label":
            cols[c] = labels.cast(pa.string())
            continue
        elif c == "Flow Duration":
            v = duration
        elif c in ("Tot Fwd Pkts", "Subflow Fwd Pkts"):
            v = fwd
        elif c in ("Tot Bwd Pkts", "Subflow Bwd Pkts"):
            v = bwd
        elif c in ("Flow Byts/s", "Flow Pkts/s"):
            with np.errstate(divide="ignore", invalid="ignore"):
                v = np.round((fwd + bwd) * (1e6 if c == "Flow Pkts/s" else 6e7) / duration, 6)
            v = np.where(duration == 0, np.inf, v)
            v[rng.random(n) < 0.002] = np.nan
        elif c in ("Init Fwd Win Byts", "Init Bwd Win Byts"):
            v = np.where(rng.random(n) < 0.35, -1, rng.integers(0, 65536, n))
        elif c == "Flow IAT Min":
            v = np.where(rng.random(n) < 0.001, -rng.integers(1, 10**6, n), rng.integers(0, 10**6, n))
        elif c in FLOAT_COLUMNS:  # about half zeros, like the real files
            v = np.where(rng.random(n) < 0.5, 0.0, np.round(rng.lognormal(3, 2.5, n), 6))
        elif c.endswith(("Flags", "Cnt", "Count")):
            v = rng.integers(0, 2, n)
        elif c.endswith(("b Avg", "Rate Avg")):
            v = np.zeros(n, np.int64)
        else:
            v = np.where(rng.random(n) < 0.5, 0, rng.lognormal(4, 3, n).astype(np.int64))
        cols[c] = pa.array(v)
    if wide:
        def ip(prefix: str) -> pa.Array:
            a, b = (pc.cast(pa.array(rng.integers(lo, 255, n)), pa.string()) for lo in (0, 1))
            return pc.binary_join_element_wise(pa.scalar(prefix), a, b, ".")

        src_a, dst_a = ip("172.31"), ip("18.219")
        sport = rng.integers(1024, 65536, n)
        flow_id = pc.binary_join_element_wise(
            src_a, dst_a, pc.cast(cols["Dst Port"], pa.string()), pc.cast(pa.array(sport), pa.string()),
            pc.cast(cols["Protocol"], pa.string()), "-",
        )
        extra = {"Flow ID": flow_id, "Src IP": src_a, "Src Port": pa.array(sport), "Dst IP": dst_a}
        cols = {**extra, **cols}
    return pa.table(cols)


def write_cicids2018_day(
    path: str | os.PathLike[str],
    n_rows: int,
    day: str,
    *,
    seed: int = 0,
    wide: bool | None = None,
    repeated_headers: int | None = None,
    chunk_rows: int = 250_000,
) -> Path:
    """Write one per-day CSV of ``n_rows`` data rows (plus header and repeated headers).

    ``wide``: 84 columns (default: only for Tuesday-20-02-2018). ``repeated_headers``: header
    lines inserted inside the data (default: 3 for the days known to have them, else 0).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wide = (day == "Tuesday-20-02-2018") if wide is None else wide
    if repeated_headers is None:
        repeated_headers = 3 if day in REPEATED_HEADER_DAYS else 0
    rng = np.random.default_rng([seed, DAYS.index(day) if day in DAYS else 99])
    names = [*ID_COLUMNS, *IDS_COLUMNS] if wide else list(IDS_COLUMNS)
    header = (",".join(names) + "\n").encode()
    cuts = set(rng.choice(np.arange(1, max(n_rows, 2)), size=min(repeated_headers, max(n_rows - 1, 0)),
                          replace=False).tolist()) if n_rows > 1 else set()
    opts = pacsv.WriteOptions(include_header=False, quoting_style="none")
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        f.write(header)
        for a in range(0, n_rows, chunk_rows):
            b = min(a + chunk_rows, n_rows)
            table = _ids_table(b - a, day, rng, wide, a)
            bounds = [a, *sorted(c for c in cuts if a < c < b), b]
            for lo, hi in itertools.pairwise(bounds):
                if lo in cuts:
                    f.write(header)
                buf = io.BytesIO()
                pacsv.write_csv(table.slice(lo - a, hi - lo), buf, opts)
                data = _INF.sub(b"Infinity", _NAN.sub(b"NaN", buf.getvalue()))
                f.write(data)
    os.replace(tmp, path)
    return path


def write_cicids2018(
    folder: str | os.PathLike[str],
    n_rows: int,
    *,
    days: Sequence[str] | None = None,
    seed: int = 0,
    proportional: bool = True,
    workers: int = 1,
) -> list[Path]:
    """Write ``n_rows`` rows over per-day files (sizes proportional to the real days);
    ``workers`` > 1 writes days in parallel processes."""
    days = list(days or DAYS)
    weights = np.asarray([REAL_DAY_ROWS[d] if proportional else 1 for d in days], np.float64)
    counts = np.floor(weights / weights.sum() * n_rows).astype(np.int64)
    counts[: n_rows - int(counts.sum())] += 1
    jobs = [(Path(folder) / day_file_name(d), int(k), d) for d, k in zip(days, counts, strict=True)]
    if workers > 1 and n_rows >= 200_000:
        with cf.ProcessPoolExecutor(workers) as ex:
            futs = [ex.submit(write_cicids2018_day, p, k, d, seed=seed) for p, k, d in jobs]
            return [f.result() for f in futs]
    return [write_cicids2018_day(p, k, d, seed=seed) for p, k, d in jobs]


def gzip_bytes(data: bytes) -> bytes:
    """gzip ``data`` deterministically (mtime 0)."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as g:
        g.write(data)
    return buf.getvalue()
