"""Compiled (numba) kernels of the CSE-CIC-IDS2018 ingestion: the CSV row parser, the train
min/max reduction and the scaling of raw rows into ``X``.

The parser (:func:`parse_rows`) reads the CICFlowMeter CSV bytes of a block in one pass and
writes the *kept* rows straight into a row-major (rows, 78) float32 array, with class index and
timestamp, counting dropped rows by reason and NaN/inf/negative values per column on the way.
It gives exactly the values of the pyarrow path (:func:`tasks.data.cicids2018._parse_view`):

* numbers are converted to the nearest float64 (Clinger's exact fast path, else the
  Eisel-Lemire algorithm with 128-bit powers of five - both correctly rounded, like the
  ``fast_float`` code pyarrow uses), then rounded to float32 as numpy's ``astype`` does;
* ``Timestamp`` ``dd/mm/YYYY HH:MM:SS`` (valid dates only) becomes seconds since 1970, an empty
  one is missing; ``Label`` must be one of the class names;
* empty and ``NaN`` numbers are NaN (pyarrow null values), ``Infinity``/``-Infinity`` are inf.

Anything else - another number syntax (``+1``, ``1e``, ``.``), more than 18 digits, an
undecided Eisel-Lemire case, another null spelling, a bad timestamp or label, a wrong field
count - is not interpreted here: the row is handed back as a *fallback* row (slot, byte range)
that the caller parses with pyarrow, which also produces the one-line error naming row and
column. A lone carriage return, or more fallback rows or slots than the caller's buffers hold,
returns :data:`STATUS_FALLBACK` and the caller parses the whole block with pyarrow.

Fields are located 8 bytes at a time (SWAR: unaligned 64-bit loads, byte-wise compares,
count-trailing-zeros), and up to 8 digits are converted with three multiplications. The buffer
must be readable 16 bytes past ``n`` and ``buf[n]`` must be a newline (:func:`pad`).
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

#: Column roles in ``roles``: >= 0 is the raw feature index the value goes to.
SKIP, TIMESTAMP, LABEL = -1, -2, -3
STATUS_OK, STATUS_FALLBACK = 0, 1
#: ``counts`` indices (the reasons of :data:`tasks.data.cicids2018.REASONS`).
KEPT, INFINITE, NAN, MISSING_TS = 0, 1, 2, 3
#: Bytes past ``n`` that the kernel may read (unaligned 8-byte loads).
PAD = 16

_COMMA, _NL, _CR, _MINUS, _PLUS, _DOT = 44, 10, 13, 45, 43, 46


def pad(buf: Any, n: int) -> None:
    """Make ``buf`` (a writable uint8 array of at least ``n + PAD`` bytes) parseable: newlines
    after the ``n`` data bytes."""
    buf[n : n + PAD] = _NL


# ----------------------------------------------------------------- low-level helpers
@intrinsic
def _load_u64(typingctx, arr, idx):  # type: ignore[no-untyped-def]
    """The 8 bytes of uint8 array ``arr`` from ``idx``, unaligned, as a little-endian uint64."""
    sig = types.uint64(arr, idx)

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]])
        return builder.load(builder.bitcast(ptr, ir.IntType(64).as_pointer()), align=1)

    return sig, codegen


def _bit_intrinsic(op: str):  # type: ignore[no-untyped-def]
    """An intrinsic applying LLVM's ``op`` (cttz, ctlz, ctpop) to an integer as uint64."""

    def impl(typingctx, x):  # type: ignore[no-untyped-def]
        if not isinstance(x, types.Integer):
            return None
        sig = types.uint64(x)

        def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
            v = context.cast(builder, args[0], sig.args[0], types.uint64)
            if op == "ctpop":
                return builder.ctpop(v)
            return getattr(builder, op)(v, ir.Constant(ir.IntType(1), 0))

        return sig, codegen

    impl.__name__ = f"_{op}"
    return intrinsic(impl)


_cttz = _bit_intrinsic("cttz")  # count trailing zeros (64 for 0)
_ctlz = _bit_intrinsic("ctlz")  # count leading zeros
_ctpop = _bit_intrinsic("ctpop")  # count set bits


_HIGHS = np.uint64(0x8080808080808080)
_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_NIBBLES = np.uint64(0xF0F0F0F0F0F0F0F0)
_ZEROS = np.uint64(0x3030303030303030)
_SIXES = np.uint64(0x0606060606060606)
_COMMAS = np.uint64(0x2C2C2C2C2C2C2C2C)
_NLS = np.uint64(0x0A0A0A0A0A0A0A0A)
_CRS = np.uint64(0x0D0D0D0D0D0D0D0D)
_U1, _U3, _U8, _U32 = np.uint64(1), np.uint64(3), np.uint64(8), np.uint64(32)
_POW10_INT = np.array([10**i for i in range(19)], dtype=np.int64)
_POW10_FLOAT = np.array([10.0**i for i in range(23)], dtype=np.float64)  # exact up to 1e22


def _pow5_table() -> tuple[np.ndarray, np.ndarray]:
    """128-bit approximations of 5^q, q in [-342, 308], normalised to the top bit (high and
    low 64-bit words): truncated for q >= 0, rounded up for q < 0 (Lemire 2021, section 5)."""
    vals = []
    for q in range(-342, 0):
        p5 = 5**-q
        z = (p5 - 1).bit_length()  # 2^z >= 5^-q
        c = (1 << (z + 127)) // p5 + 1 if q >= -27 else (1 << (2 * z + 128)) // p5 + 1
        while c >= 1 << 128:
            c >>= 1
        vals.append(c)
    for q in range(309):
        p5 = 5**q
        while p5 < 1 << 127:
            p5 <<= 1
        while p5 >= 1 << 128:
            p5 >>= 1
        vals.append(p5)
    hi = np.array([v >> 64 for v in vals], dtype=np.uint64)
    lo = np.array([v & ((1 << 64) - 1) for v in vals], dtype=np.uint64)
    return hi, lo


_POW5_HI, _POW5_LO = _pow5_table()


@nb.njit(inline="always")
def _nonzero_bytes(v):  # type: ignore[no-untyped-def]
    """0x80 in every byte of ``v`` that is not zero (exact: no carry between bytes)."""
    return (((v & _LOW7) + _LOW7) | v) & _HIGHS


@nb.njit(inline="always")
def _leading_digits(x):  # type: ignore[no-untyped-def]
    """How many of the 8 bytes of ``x`` (in memory order) are ASCII digits before another byte."""
    v = ((x & _NIBBLES) ^ _ZEROS) | (((x + _SIXES) & _NIBBLES) ^ _ZEROS)
    m = _nonzero_bytes(v)
    if m == 0:
        return 8
    return np.int64(_cttz(m) >> _U3)


@nb.njit(inline="always")
def _digits_value(x, k):  # type: ignore[no-untyped-def]
    """Integer value of the first ``k`` (1..8) bytes of ``x``, all ASCII digits."""
    v = (x - _ZEROS) << np.uint64(8 * (8 - k))
    v = v * np.uint64(10) + (v >> _U8)
    v = ((v & np.uint64(0x000000FF000000FF)) * np.uint64(100 + (1000000 << 32))
         + ((v >> np.uint64(16)) & np.uint64(0x000000FF000000FF))
         * np.uint64(1 + (10000 << 32))) >> _U32
    return np.int64(v)


@nb.njit(inline="always")
def _scan_digits(buf, pos, w, nd):  # type: ignore[no-untyped-def]
    """Digits from ``pos`` appended to ``w`` (while ``nd`` stays <= 18): (end, w, nd)."""
    while True:
        x = _load_u64(buf, pos)
        k = _leading_digits(x)
        if k == 0:
            return pos, w, nd
        if nd + k <= 18:
            w = w * _POW10_INT[k] + _digits_value(x, k)
        nd += k
        pos += k
        if k < 8:
            return pos, w, nd


@nb.njit(inline="always")
def _field_end(buf, pos):  # type: ignore[no-untyped-def]
    """Position of the first ',', '\\n' or '\\r' at or after ``pos``."""
    while True:
        x = _load_u64(buf, pos)
        m = (_nonzero_bytes(x ^ _COMMAS) & _nonzero_bytes(x ^ _NLS)
             & _nonzero_bytes(x ^ _CRS)) ^ _HIGHS
        if m != 0:
            return pos + np.int64(_cttz(m) >> _U3)
        pos += 8


@nb.njit(inline="always")
def _is_end(c):  # type: ignore[no-untyped-def]
    return c == _COMMA or c == _NL or c == _CR


@nb.njit(inline="always")
def _mul128(a, b):  # type: ignore[no-untyped-def]
    """(high, low) 64-bit words of the 128-bit product of uint64 ``a`` and ``b``."""
    a_lo, a_hi = a & np.uint64(0xFFFFFFFF), a >> _U32
    b_lo, b_hi = b & np.uint64(0xFFFFFFFF), b >> _U32
    p0, p1, p2, p3 = a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi
    mid = (p0 >> _U32) + (p1 & np.uint64(0xFFFFFFFF)) + (p2 & np.uint64(0xFFFFFFFF))
    return p3 + (p1 >> _U32) + (p2 >> _U32) + (mid >> _U32), (mid << _U32) | (p0 & np.uint64(0xFFFFFFFF))


@nb.njit(error_model="numpy")
def _eisel_lemire(w, q):  # type: ignore[no-untyped-def]
    """The float64 nearest to ``w * 10**q`` (0 < w < 2**64, -342 <= q <= 308), or NaN when
    128 bits do not decide the rounding, or for subnormal or infinite results (the caller then
    falls back). Lemire, "Number Parsing at a Gigabyte per Second" (2021), sections 5-6."""
    lz = np.int64(_ctlz(w))
    w = w << np.uint64(lz)
    hi, lo = _mul128(w, _POW5_HI[q + 342])
    if (hi & np.uint64(0x1FF)) == np.uint64(0x1FF):  # 55 bits of precision wanted
        hi2, _ = _mul128(w, _POW5_LO[q + 342])
        lo = lo + hi2
        if hi2 > lo:
            hi = hi + _U1
    if lo == np.uint64(0xFFFFFFFFFFFFFFFF) and not -27 <= q <= 55:
        return np.nan
    upper = np.int64(hi >> np.uint64(63))
    mantissa = hi >> np.uint64(upper + 9)
    power2 = (((q * (152170 + 65536)) >> 16) + 63) + upper - lz + 1023
    if power2 <= 0:
        return np.nan
    if (lo <= _U1 and -4 <= q <= 23 and (mantissa & _U3) == _U1
            and (mantissa << np.uint64(upper + 9)) == hi):
        mantissa = mantissa & ~_U1  # exactly halfway: round to even
    mantissa = (mantissa + (mantissa & _U1)) >> _U1
    if mantissa >= np.uint64(1 << 53):
        mantissa = np.uint64(1 << 52)
        power2 += 1
    if power2 >= 0x7FF:
        return np.nan
    return np.ldexp(np.float64(mantissa), power2 - 1075)


@nb.njit(inline="always")
def _to_double(w, q):  # type: ignore[no-untyped-def]
    """The float64 nearest to ``w * 10**q`` (w >= 0 with at most 18 digits), NaN if undecided."""
    if w == 0:
        return 0.0
    if w <= 9007199254740992:  # 2^53: Clinger's fast path, one correctly rounded operation
        if q == 0:
            return np.float64(w)
        if -22 <= q < 0:
            return np.float64(w) / _POW10_FLOAT[-q]
        if 0 < q <= 22:
            return np.float64(w) * _POW10_FLOAT[q]
    if q < -342 or q > 308:
        return np.nan
    return _eisel_lemire(np.uint64(w), q)


@nb.njit(inline="always")
def _days_from_civil(y, m, d):  # type: ignore[no-untyped-def]
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * ((m + 9) % 12) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


@nb.njit(inline="always")
def _digit(buf, i):  # type: ignore[no-untyped-def]
    """The digit at ``buf[i]``, or 99 for any other byte."""
    d = np.int64(buf[i]) - 48
    return d if 0 <= d <= 9 else 99


@nb.njit(inline="always")
def _timestamp(buf, t):  # type: ignore[no-untyped-def]
    """Seconds of ``dd/mm/YYYY HH:MM:SS`` at ``buf[t:t+19]``, or -1 when not a valid one."""
    if not (buf[t + 2] == 47 and buf[t + 5] == 47 and buf[t + 10] == 32 and buf[t + 13] == 58
            and buf[t + 16] == 58):
        return np.int64(-1)
    dd = _digit(buf, t) * 10 + _digit(buf, t + 1)
    mm = _digit(buf, t + 3) * 10 + _digit(buf, t + 4)
    yy = (_digit(buf, t + 6) * 1000 + _digit(buf, t + 7) * 100 + _digit(buf, t + 8) * 10
          + _digit(buf, t + 9))
    hh = _digit(buf, t + 11) * 10 + _digit(buf, t + 12)
    mi = _digit(buf, t + 14) * 10 + _digit(buf, t + 15)
    ss = _digit(buf, t + 17) * 10 + _digit(buf, t + 18)
    if (_digit(buf, t + 1) > 9 or _digit(buf, t + 4) > 9 or _digit(buf, t + 7) > 9
            or _digit(buf, t + 8) > 9 or _digit(buf, t + 9) > 9 or _digit(buf, t + 12) > 9
            or _digit(buf, t + 15) > 9 or _digit(buf, t + 18) > 9):
        return np.int64(-1)  # (a non-digit in a leading position already breaks a range below)
    mdays = 31
    if mm == 4 or mm == 6 or mm == 9 or mm == 11:
        mdays = 30
    elif mm == 2:
        mdays = 29 if (yy % 4 == 0 and yy % 100 != 0) or yy % 400 == 0 else 28
    if not (1900 <= yy <= 2099 and 1 <= mm <= 12 and 1 <= dd <= mdays and hh < 24 and mi < 60
            and ss < 60):
        return np.int64(-1)
    return _days_from_civil(yy, mm, dd) * 86400 + hh * 3600 + mi * 60 + ss


# ------------------------------------------------------------------------------ the parser
@nb.njit(nogil=True, cache=True, error_model="numpy")
def parse_rows(buf, n, header, roles, labels, label_ends, raw, y, ts, fallback, counts,
               nan_by_col, inf_by_col, neg_by_col):  # type: ignore[no-untyped-def]
    """Parse the CSV lines in ``buf[:n]`` (:func:`pad` applied); lines equal to ``header``
    (the file's header line, uint8) are skipped and counted.

    ``roles[i]``: what field ``i`` of a line is (raw feature index, :data:`TIMESTAMP`,
    :data:`LABEL` or :data:`SKIP`); ``labels``/``label_ends``: the class names' bytes
    concatenated and their end offsets. Kept rows go to consecutive slots of ``raw`` (rows,
    n_features) float32, ``y`` int8 and ``ts`` int64; a row left to the caller takes a slot too
    and is listed in ``fallback`` (slot, line start, line end). ``counts`` (kept, infinite, nan,
    missing timestamp) and the per-column NaN / inf counts (dropped rows) and negative counts
    (kept rows) are added to; fallback rows are not counted.

    Returns (status, slots used, data lines seen, fallback rows, header lines skipped).
    """
    n_feat = raw.shape[1]
    n_cols = roles.shape[0]
    cap = raw.shape[0]
    fb_cap = fallback.shape[0]
    n_labels = label_ends.shape[0]
    row_nan = np.empty(n_feat + 1, np.int64)
    row_inf = np.empty(n_feat + 1, np.int64)
    row_neg = np.empty(n_feat + 1, np.int64)
    n_header = header.shape[0]
    pos = 0
    k = 0
    lines = 0
    n_fb = 0
    headers = 0
    while pos < n:
        c = buf[pos]
        if c == _NL:  # empty line (pyarrow skips them)
            pos += 1
            continue
        if c == _CR and buf[pos + 1] == _NL:
            pos += 2
            continue
        if n_header and c == header[0] and pos + n_header <= n:  # a repeated header line?
            same = True
            for i in range(1, n_header):
                if buf[pos + i] != header[i]:
                    same = False
                    break
            if same:
                e = pos + n_header
                if e == n or buf[e] == _NL:
                    pos = e + 1
                    headers += 1
                    continue
                if buf[e] == _CR and buf[e + 1] == _NL:
                    pos = e + 2
                    headers += 1
                    continue
        if k >= cap:
            return STATUS_FALLBACK, k, lines, n_fb, headers
        line_start = pos
        lines += 1
        ok = True
        field = 0
        n_nan = 0
        n_inf = 0
        n_neg = 0
        ts_missing = False
        label = -1
        seconds = np.int64(0)
        while True:
            role = SKIP
            if field < n_cols:
                role = roles[field]
            else:
                ok = False
            start = pos
            if role >= 0:  # a number
                x = _load_u64(buf, pos)
                d0 = np.int64(x & np.uint64(0xFF)) - 48
                if (x & np.uint64(0xFF00)) == np.uint64(0x2C00) and 0 <= d0 <= 9:
                    raw[k, role] = np.float32(d0)  # fastest path: one digit and a comma
                    pos += 2
                    field += 1
                    continue
                neg = buf[pos] == _MINUS
                if neg:
                    pos += 1
                    x = _load_u64(buf, pos)
                kd = _leading_digits(x)
                if 0 < kd < 8:  # fast path: an integer of up to 7 digits (most fields)
                    nxt = np.int64((x >> np.uint64(8 * kd)) & np.uint64(0xFF))
                    if nxt == _COMMA or nxt == _NL or nxt == _CR:
                        pos += kd
                        f = np.float32(np.float64(_digits_value(x, kd)))
                        if neg:
                            f = -f
                            if f < 0:
                                row_neg[n_neg] = role
                                n_neg += 1
                        raw[k, role] = f
                        if nxt == _COMMA:
                            pos += 1
                            field += 1
                            continue
                        if nxt == _CR and buf[pos + 1] != _NL:
                            return STATUS_FALLBACK, k, lines, n_fb, headers
                        break
                pos, w, nd = _scan_digits(buf, pos, 0, 0)
                q = 0
                if buf[pos] == _DOT:
                    pos += 1
                    frac = pos
                    pos, w, nd = _scan_digits(buf, pos, w, nd)
                    q = frac - pos
                c = buf[pos]
                v = 0.0
                good = True
                if 0 < nd <= 18 and _is_end(c):
                    v = _to_double(w, q)
                    good = not np.isnan(v)
                elif 0 < nd <= 18 and (c == 101 or c == 69):  # e / E
                    pos += 1
                    e_neg = buf[pos] == _MINUS
                    if e_neg or buf[pos] == _PLUS:
                        pos += 1
                    e_start = pos
                    e = 0
                    d = np.int64(buf[pos]) - 48
                    while 0 <= d <= 9:
                        if e < 100000:
                            e = e * 10 + d
                        pos += 1
                        d = np.int64(buf[pos]) - 48
                    if pos == e_start or not _is_end(buf[pos]):
                        good = False
                    else:
                        v = _to_double(w, q - e if e_neg else q + e)
                        good = not np.isnan(v)
                elif pos == start and _is_end(c):  # empty: a null, NaN
                    v = np.nan
                else:
                    good = False
                    p = start + 1 if neg else start
                    if (buf[p] == 73 and buf[p + 1] == 110 and buf[p + 2] == 102
                            and buf[p + 3] == 105 and buf[p + 4] == 110 and buf[p + 5] == 105
                            and buf[p + 6] == 116 and buf[p + 7] == 121
                            and _is_end(buf[p + 8])):  # Infinity
                        pos = p + 8
                        v = np.inf
                        good = True
                    elif (not neg and buf[p] == 78 and buf[p + 1] == 97 and buf[p + 2] == 78
                          and _is_end(buf[p + 3])):  # NaN (a null value)
                        pos = p + 3
                        v = np.nan
                        good = True
                if good:
                    f = np.float32(-v if neg else v)
                    raw[k, role] = f
                    if not np.isfinite(f):
                        if np.isnan(f):
                            row_nan[n_nan] = role
                            n_nan += 1
                        else:
                            row_inf[n_inf] = role
                            n_inf += 1
                    elif f < 0:
                        row_neg[n_neg] = role
                        n_neg += 1
                else:
                    ok = False
                    pos = _field_end(buf, pos)
            else:
                pos = _field_end(buf, pos)
                length = pos - start
                if role == TIMESTAMP:
                    if length == 0:
                        ts_missing = True
                    elif length == 19:
                        seconds = _timestamp(buf, start)
                        ok = ok and seconds >= 0
                    else:
                        ok = False
                elif role == LABEL:
                    a = 0
                    for li in range(n_labels):
                        b = label_ends[li]
                        if b - a == length:
                            same = True
                            for i in range(length):
                                if labels[a + i] != buf[start + i]:
                                    same = False
                                    break
                            if same:
                                label = li
                                break
                        a = b
                    ok = ok and label >= 0
            c = buf[pos]
            if c == _COMMA:
                pos += 1
                field += 1
                continue
            if c == _CR and buf[pos + 1] != _NL:  # lone CR: a line break to pyarrow
                return STATUS_FALLBACK, k, lines, n_fb, headers
            break
        line_end = pos
        if buf[pos] == _CR:
            pos += 1
        pos += 1
        if field + 1 != n_cols:
            ok = False
        if not ok:
            if n_fb >= fb_cap:
                return STATUS_FALLBACK, k, lines, n_fb, headers
            fallback[n_fb, 0] = k
            fallback[n_fb, 1] = line_start
            fallback[n_fb, 2] = line_end
            n_fb += 1
            k += 1
            continue
        if n_nan or n_inf:  # non-finite: dropped ('infinite' takes precedence)
            for i in range(n_nan):
                nan_by_col[row_nan[i]] += 1
            for i in range(n_inf):
                inf_by_col[row_inf[i]] += 1
            counts[INFINITE if n_inf else NAN] += 1
            continue
        if ts_missing:
            counts[MISSING_TS] += 1
            continue
        y[k] = label
        ts[k] = seconds
        for i in range(n_neg):
            neg_by_col[row_neg[i]] += 1
        counts[KEPT] += 1
        k += 1
    return STATUS_OK, k, lines, n_fb, headers


# ------------------------------------------------------------------- reduction and scaling
@nb.njit(nogil=True, cache=True)
def train_minmax(raw, train, mn, mx):  # type: ignore[no-untyped-def]
    """Update float32 ``mn``/``mx`` (n_features,) with the rows of ``raw`` where ``train``;
    returns the number of train rows."""
    n_train = 0
    for i in range(raw.shape[0]):
        if train[i]:
            n_train += 1
            for j in range(raw.shape[1]):
                v = raw[i, j]
                if v < mn[j]:
                    mn[j] = v
                if v > mx[j]:
                    mx[j] = v
    return n_train


@nb.njit(nogil=True, cache=True)
def value_counts(col, train, values, counts):  # type: ignore[no-untyped-def]
    """Distinct values of ``col`` (float32, no NaN) in order of first appearance into
    ``values`` and their counts among train / other rows into ``counts`` (len(values), 2);
    returns how many, or -1 when there are more than ``len(values)`` (the caller then counts
    another way)."""
    n_values = 0
    for i in range(col.shape[0]):
        v = col[i]
        j = 0
        while j < n_values and values[j] != v:
            j += 1
        if j == n_values:
            if n_values == values.shape[0]:
                return -1
            values[j] = v
            counts[j, 0] = 0
            counts[j, 1] = 0
            n_values += 1
        counts[j, 0 if train[i] else 1] += 1
    return n_values


@nb.njit(nogil=True, cache=True)
def scale_rows(raw, protocol, mn, scale, categories, out):  # type: ignore[no-untyped-def]
    """``out[i] = ((raw[i, numeric] - mn) / scale, raw[i, protocol] == categories)``: the
    arithmetic of :func:`tasks.data.cicids2018.transform_raw` (float32 subtract, then divide),
    fused into one pass over the rows."""
    n_num = mn.shape[0]
    for i in range(raw.shape[0]):
        for j in range(protocol):
            out[i, j] = (raw[i, j] - mn[j]) / scale[j]
        for j in range(protocol, n_num):
            out[i, j] = (raw[i, j + 1] - mn[j]) / scale[j]
        p = raw[i, protocol]
        for c in range(categories.shape[0]):
            out[i, n_num + c] = np.float32(1.0) if p == categories[c] else np.float32(0.0)


@nb.njit(cache=True)
def to_float64(w, q):  # type: ignore[no-untyped-def]
    """The parser's decimal conversion on its own (for tests): the float64 nearest to
    ``w * 10**q`` (0 <= w < 10**18), NaN when it leaves the case to pyarrow."""
    return _to_double(w, q)
