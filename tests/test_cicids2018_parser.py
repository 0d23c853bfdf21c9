"""The compiled CSE-CIC-IDS2018 row parser (tasks/data/cicids2018_kernels.py) against the pyarrow
reference path: bit-identical raw features, labels, timestamps, drop counts and per-column
statistics, or the same one-line error - on generated days, on every number spelling we could
think of, on random decimals (correct rounding) and on broken lines."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from tasks.data import cicids2018 as ids
from tasks.data.errors import DataFormatError
from tests.fixtures.synthetic_data import day_file_name, write_cicids2018_day

DAY = "Wednesday-14-02-2018"
HEADER = ",".join(ids.COLUMNS)


def _reference(day: ids.DayFile, start: int, end: int, source: int = 0) -> ids.KeptRows:
    b = ids.parse_block(day, start, end)
    raw, y, ts, dropped = ids.kept_rows(b)
    return ids.KeptRows(raw, y, ts, ids._block_stats(b, dropped, source))


def _same(a: ids.KeptRows, b: ids.KeptRows) -> None:
    assert a.raw.dtype == b.raw.dtype == np.float32 and a.raw.flags.c_contiguous
    np.testing.assert_array_equal(a.raw.view(np.uint32), b.raw.view(np.uint32))  # bits
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.ts, b.ts)
    assert a.stats == b.stats


def _outcome(day: ids.DayFile, start: int, end: int, fn):
    try:
        return fn(day, start, end)
    except DataFormatError as e:
        return (e.file, e.row, e.column, str(e))


def _check_file(path: Path, blocksizes=(1 << 30,)) -> list:
    """parse_kept == reference on every block of the file; returns the outcomes."""
    day = ids.list_day_files(str(path))[0]
    out = []
    for bs in blocksizes:
        for spec in ids.block_specs([day], bs):
            a = _outcome(day, spec[1], spec[2], ids.parse_kept)
            b = _outcome(day, spec[1], spec[2], _reference)
            if isinstance(b, tuple):
                assert a == b
            else:
                assert not isinstance(a, tuple), a
                _same(a, b)
            out.append(b)
    return out


def _row(values: dict[str, str] | None = None, cols: list[str] | None = None) -> str:
    """A valid data line (all numeric fields 1) with ``values`` replaced."""
    cols = cols or ids.COLUMNS
    base = {c: "1" for c in cols}
    base.update({"Timestamp": "14/02/2018 08:31:01", "Label": "Benign", "Protocol": "6"})
    for c in ids.ID_COLUMNS:
        base[c] = "x"
    base.update(values or {})
    return ",".join(base[c] for c in cols)


def _write(tmp_path: Path, lines: list[str], *, header: str = HEADER, end: str = "\n",
           name: str = DAY) -> Path:
    folder = tmp_path / f"csv{random.randrange(1 << 30)}"
    folder.mkdir()
    path = folder / day_file_name(name)
    path.write_bytes((end.join([header, *lines]) + end).encode())
    return path


@pytest.mark.parametrize("day", ["Wednesday-14-02-2018", "Friday-16-02-2018", "Tuesday-20-02-2018"])
def test_generated_days_identical_for_any_block_size(tmp_path, day):
    path = write_cicids2018_day(tmp_path / day_file_name(day), 6000, day, seed=7)
    res = _check_file(path, blocksizes=(1 << 30, 100_003, 7_777))
    assert all(not isinstance(r, tuple) for r in res)
    assert sum(r.stats["rows_in"] for r in res[:1]) == 6000


NUMBERS = [
    "0", "-0", "00", "007", "1", "-1", "12345678", "123456789", "9007199254740993",
    "123456789012345678", "1234567890123456789", "99999999999999999999", "0.5", "-0.5", ".5",
    "5.", "-.5", "0.000001", "0.30000000000000004", "1145.8015267175572", "1e5", "1E5", "1e+5",
    "1e-5", "-2.5e-3", "1.7976931348623157e308", "1e309", "4.9e-324", "1e-400", "3.4028236e38",
    "3.4028235e38", "1.401298464324817e-45", "1e-46", "1e", "e5", "1e+", "--1", "+1", "1.2.3",
    "0x10", "1_000", " 1", "1 ", "Infinity", "-Infinity", "infinity", "inf", "-inf", "+inf",
    "NaN", "nan", "-NaN", "NA", "N/A", "null", "NULL", "", "\"1\"", "1,5",
    "2.2250738585072011e-308", "2.2250738585072014e-308", "9007199254740992.5",
    "0.1000000000000000055511151231257827", "123456.7890123456789",
]  # fmt: skip


@pytest.mark.parametrize("token", NUMBERS)
def test_number_spellings_like_pyarrow(tmp_path, token):
    """Each spelling in a numeric column (among normal rows): same value, drop or error."""
    lines = [_row() for _ in range(5)]
    lines.insert(2, _row({"Flow Byts/s": token}))
    lines.append(_row({"Dst Port": token, "Idle Min": token}))
    _check_file(_write(tmp_path, lines))


def test_random_decimals_correctly_rounded(tmp_path):
    """Random decimals (up to 18 digits, with and without exponents): the float32 of the
    correctly rounded float64, like pyarrow and Python's float()."""
    rng = random.Random(5)
    feats = [c for c in ids.RAW_FEATURES if c != "Protocol"]
    lines, expected = [], []
    for _ in range(3000):
        vals = {}
        for c in feats:
            kind = rng.random()
            digits = str(rng.randrange(1, 10 ** rng.randint(1, 18)))
            if kind < 0.4:
                cut = rng.randint(0, len(digits))
                s = digits[:cut] + "." + digits[cut:] if cut < len(digits) else digits
            elif kind < 0.7:
                s = f"{digits}e{rng.randint(-40, 40)}"
            elif kind < 0.9:  # halfway between two doubles, written exactly
                m, e = rng.randrange(1 << 52, 1 << 53), rng.randint(-10, 5)
                s = str((2 * m + 1) * 5 ** -(e - 1)) + f"e{e - 1}" if e < 1 else str((2 * m + 1) << (e - 1))
            else:
                s = f"{rng.uniform(-1e6, 1e6)!r}"
            vals[c] = s
        lines.append(_row(vals))
        expected.append([np.float32(float(vals[c])) if c in vals else np.float32(6)
                         for c in ids.RAW_FEATURES])
    path = _write(tmp_path, lines)
    res = _check_file(path, blocksizes=(1 << 30, 200_000))
    got = np.concatenate([r.raw for r in res[:1]])
    exp = np.asarray(expected, np.float32)
    finite = np.isfinite(exp).all(axis=1)
    np.testing.assert_array_equal(got.view(np.uint32), exp[finite].view(np.uint32))


@pytest.mark.parametrize(
    ("ts", "label"),
    [("14/02/2018 08:31:01", "Benign"), ("", "Benign"), ("29/02/2016 23:59:59", "Bot"),
     ("29/02/2018 10:00:00", "Benign"), ("31/04/2018 10:00:00", "Benign"),
     ("1/2/2018 08:00:00", "Benign"), ("14/02/2018 24:00:00", "Benign"),
     ("14/02/2018 08:31:60", "Benign"), ("2018-02-14 08:31:01", "Benign"),
     ("14/02/1850 08:31:01", "Benign"), ("NA", "Benign"), ("14/02/2018 08:31:01", "benign"),
     ("14/02/2018 08:31:01", ""), ("14/02/2018 08:31:01", "NaN"),
     ("14/02/2018 08:31:01", "DDoS attacks-LOIC-HTTP")],
)
def test_timestamps_and_labels_like_pyarrow(tmp_path, ts, label):
    lines = [_row(), _row({"Timestamp": ts, "Label": label}), _row()]
    _check_file(_write(tmp_path, lines))


@pytest.mark.parametrize("case", ["crlf", "empty_lines", "no_final_newline", "repeated_header",
                                  "repeated_header_crlf", "header_prefix", "lone_cr", "short_row",
                                  "long_row", "trailing_comma", "only_header", "blank_block",
                                  "columns_shuffled", "wide_day"])
def test_line_structure_like_pyarrow(tmp_path, case):
    lines = [_row({"Flow Duration": str(i)}) for i in range(40)]
    header, end, cols = HEADER, "\n", None
    if case == "crlf":
        end = "\r\n"
    elif case == "empty_lines":
        lines[3:3] = ["", "", "\r"]
    elif case == "no_final_newline":
        path = _write(tmp_path, lines)
        path.write_bytes(path.read_bytes().rstrip(b"\n"))
        _check_file(path, blocksizes=(1 << 30, 3000))
        return
    elif case == "repeated_header":
        lines[10:10] = [HEADER]
        lines[25:25] = [HEADER, HEADER]
    elif case == "repeated_header_crlf":
        end = "\r\n"
        lines[10:10] = [HEADER]
    elif case == "header_prefix":
        lines[10:10] = [HEADER + ",extra"]
    elif case == "lone_cr":
        lines[7] = lines[7].replace(",", "\r", 1)
    elif case == "short_row":
        lines[20] = lines[20].rsplit(",", 1)[0]
    elif case == "long_row":
        lines[20] += ",1"
    elif case == "trailing_comma":
        lines[20] += ","
    elif case == "only_header":
        lines = [HEADER, HEADER]
    elif case == "blank_block":
        lines = ["   ", " "]
    elif case == "columns_shuffled":
        cols = list(ids.COLUMNS)
        random.Random(3).shuffle(cols)
        header = ",".join(cols)
        lines = [_row({"Flow Duration": str(i), "Flow Byts/s": "Infinity" if i % 7 == 0 else "2.5"},
                      cols) for i in range(40)]
    elif case == "wide_day":
        cols = ids.COLUMNS_84
        header = ",".join(cols)
        lines = [_row({"Flow ID": f"1.2.3.4-5.6.7.8-{i}-80-6", "Src IP": "1.2.3.4",
                       "Src Port": "", "Dst IP": "NaN"}, cols) for i in range(40)]
    path = _write(tmp_path, lines, header=header, end=end)
    _check_file(path, blocksizes=(1 << 30, 3000, 997))


def test_error_names_file_row_and_column(tmp_path):
    lines = [_row() for _ in range(30)]
    lines[17] = _row({"Tot Fwd Pkts": "12x34"})
    path = _write(tmp_path, lines)
    day = ids.list_day_files(str(path))[0]
    with pytest.raises(DataFormatError) as e:
        ids.parse_kept(day, 0, day.size)
    assert e.value.row == 19 and e.value.column == "Tot Fwd Pkts" and "\n" not in str(e.value)


def test_decimal_to_float64_is_correctly_rounded():
    """The conversion itself, before the float32 rounding hides most float64 errors: exact
    ties between two doubles (round half to even), neighbours of ties, 16-18 digit mantissas,
    extreme exponents - equal to Python's correctly rounded float(), or NaN (left to pyarrow)
    only outside the normal float64 range."""
    from tasks.data.cicids2018_kernels import to_float64

    rng = random.Random(11)
    cases = []
    for _ in range(20000):
        m = rng.randrange(1 << 52, 1 << 53)
        for e in (0, 1, 2, 3, 4):  # (2m + 1) * 2^e: a tie between two doubles, 16-18 digits
            w = (2 * m + 1) << e
            if w < 10**18:
                cases += [(w, 0), (w - 1, 0), (w + 1, 0)]
        k = rng.randint(1, 8)  # (2m + 1) / 2^k = (2m + 1) * 5^k / 10^k: a tie below 1e18?
        w = (2 * m + 1) * 5**k
        if w < 10**18:
            cases += [(w, -k), (w - 1, -k), (w + 1, -k)]
        cases.append((rng.randrange(1, 10**18), rng.randint(-330, 300)))
        cases.append((rng.randrange(10**15, 10**18), rng.randint(-30, 30)))
    cases += [(1, -324), (49, -325), (1, 308), (17976931348623157, 292), (1, 309), (0, 5),
              (22250738585072014, -324), (22250738585072011, -324)]
    undecided = 0
    for w, q in cases:
        got = to_float64(w, q)
        want = float(f"{w}e{q}")
        if np.isnan(got):
            undecided += 1
            assert want == 0 or want == np.inf or abs(want) < 2.3e-308, (w, q)
        else:
            assert got == want, (w, q, got, want)
    assert undecided < len(cases) // 20


def test_reduction_and_scaling_kernels_match_numpy():
    """train_minmax / value_counts / scale_rows == the numpy code they replace (min/max of the
    train rows, np.unique counts, transform_raw's float32 subtract-then-divide and one-hot)."""
    from tasks.data import cicids2018_kernels as kernels
    from tasks.data.preprocess import MinMaxScaler, OneHotEncoder

    rng = np.random.default_rng(3)
    n = 5000
    raw = np.where(rng.random((n, 78)) < 0.4, 0, rng.lognormal(3, 3, (n, 78))).astype(np.float32)
    raw[:, 5] *= -1
    raw[:, ids.PROTOCOL_INDEX] = rng.choice(np.asarray([0, 6, 17, 2], np.float32), n)
    train = rng.random(n) < 0.8
    mn = np.full(78, np.inf, np.float32)
    mx = np.full(78, -np.inf, np.float32)
    assert kernels.train_minmax(raw, train, mn, mx) == train.sum()
    np.testing.assert_array_equal(mn, raw[train].min(axis=0))
    np.testing.assert_array_equal(mx, raw[train].max(axis=0))
    values, counts = np.empty(8, np.float32), np.empty((8, 2), np.int64)
    k = kernels.value_counts(raw[:, ids.PROTOCOL_INDEX], train, values, counts)
    for col, mask in ((0, train), (1, ~train)):
        v, c = np.unique(raw[mask, ids.PROTOCOL_INDEX], return_counts=True)
        got = {float(values[j]): int(counts[j, col]) for j in range(k) if counts[j, col]}
        assert got == dict(zip(v.tolist(), c.tolist(), strict=True))
    assert kernels.value_counts(np.arange(10, dtype=np.float32), train, values, counts) == -1
    scaler = MinMaxScaler().partial_fit(raw[train][:, ids.NUMERIC_INDEX])
    enc = OneHotEncoder(["Protocol"])
    enc.categories["Protocol"] = [0.0, 6.0, 17.0]
    want = ids.transform_raw(raw, scaler, enc, False)
    lo, scale = scaler.params32()
    got = np.empty_like(want)
    kernels.scale_rows(raw, ids.PROTOCOL_INDEX, lo, scale, np.asarray([0, 6, 17], np.float32), got)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
