"""C `printf("%.Pg")` for Float64 columns, vectorised in Polars.

Polars prints the shortest round-trip form (`99.91`); Essentia prints `%.17g`
(`99.909999999999997`). For 1e-6 <= |x| < 1e17 the P significant digits are
N = round(x * 10**q): 10**q is exact in float64 there (q <= 22), and Dekker's exact product
splits x * 10**q into hi + lo, so N = hi + lo is computed exactly in Int64 and rounded half to
even like glibc. Other magnitudes (rare in log data) are formatted per value in Python.
"""

from __future__ import annotations

import ctypes
import math
from typing import TYPE_CHECKING

import polars as pl

from ess.aq.native import native_library

if TYPE_CHECKING:
    import pyarrow as pa

_SPLIT = 134217729.0  # 2**27 + 1, Dekker's splitter for float64
_P10 = pl.Series("p10", [10.0**k for k in range(23)], dtype=pl.Float64)


def format_float(x: pl.Expr, precision: int = 17) -> pl.Expr:
    """String expression equal to C's `%.{precision}g` of each Float64 value."""
    return x.cast(pl.Float64).map_batches(
        lambda s: format_series(s, precision), return_dtype=pl.String
    )


def _digits(df: pl.DataFrame, p: int) -> pl.DataFrame:
    """Columns t (truncated) and n (rounded) = x*10**q as Int64, from columns a and q."""
    df = df.with_columns(b=pl.lit(_P10).gather(pl.col("q").clip(0, 22)))
    a, b = pl.col("a"), pl.col("b")
    df = df.with_columns(ca=a * _SPLIT, cb=b * _SPLIT, hi=a * b)
    df = df.with_columns(ah=pl.col("ca") - (pl.col("ca") - a), bh=pl.col("cb") - (pl.col("cb") - b))
    df = df.with_columns(al=a - pl.col("ah"), bl=b - pl.col("bh"))
    ah, al, bh, bl, hi = (pl.col(c) for c in ("ah", "al", "bh", "bl", "hi"))
    df = df.with_columns(lo=((ah * bh - hi) + ah * bl + al * bh) + al * bl)
    df = df.with_columns(fh=pl.col("hi").floor())
    df = (
        df.with_columns(
            base=pl.col("fh").cast(pl.Int64, strict=False),
            r=(pl.col("hi") - pl.col("fh")) + pl.col("lo"),
        )
        .with_columns(fl=pl.col("r").floor())
        .with_columns(frac=pl.col("r") - pl.col("fl"))
    )
    t = pl.col("base") + pl.col("fl").cast(pl.Int64, strict=False)
    return df.with_columns(t=t)


def format_series(series: pl.Series, p: int = 17) -> pl.Series:
    """Format a Float64 series; low-cardinality columns (prices, ratios) format each value once."""
    series = series.cast(pl.Float64)
    native = _format_native(series, p)
    if native is not None:
        return native
    if series.len() >= 4096:
        uniq = series.unique()
        if uniq.len() * 4 <= series.len():
            # dictionary path; -0.0 and 0.0 hash alike, so zeros are fixed up afterwards
            text = series.replace_strict(uniq, _format(uniq, p), return_dtype=pl.String)
            zero = series == 0
            if zero.any():
                neg = series.cast(pl.String).str.starts_with("-")
                text = pl.select(
                    pl.when(zero)
                    .then(pl.when(neg).then(pl.lit("-0")).otherwise(pl.lit("0")))
                    .otherwise(text)
                ).to_series()
            return text.alias(series.name)
    return _format(series, p)


def _format(series: pl.Series, p: int) -> pl.Series:
    x = pl.col("x")
    df = pl.DataFrame({"x": series.cast(pl.Float64)}).with_columns(a=x.abs())
    a = pl.col("a")
    lo_lim = 10.0 ** (p - 23)
    df = df.with_columns(
        fast=(a >= max(1e-6, lo_lim)) & (a < 10.0 ** min(p, 17)) & a.is_finite(),
        e10=a.log10().floor().cast(pl.Int64, strict=False).fill_null(0).clip(-30, 30),
    ).with_columns(q=(p - 1) - pl.col("e10"))
    # exact floor(log10|x|): correct the float estimate with the truncated digit count
    df = _digits(df, p)
    df = df.with_columns(
        e10=pl.col("e10")
        + (pl.col("t") >= 10**p).cast(pl.Int64)
        - (pl.col("t") < 10 ** (p - 1)).cast(pl.Int64)
    ).with_columns(q=(p - 1) - pl.col("e10"))
    df = _digits(df, p)
    t, frac = pl.col("t"), pl.col("frac")
    up = (frac > 0.5) | ((frac == 0.5) & (t % 2 == 1))
    df = df.with_columns(n=t + up.cast(pl.Int64))
    carry = pl.col("n") >= 10**p
    df = df.with_columns(
        n=pl.when(carry).then(pl.col("n") // 10).otherwise(pl.col("n")),
        x10=pl.col("e10") + carry.cast(pl.Int64),
    )
    df = df.with_columns(
        fast=pl.col("fast") & (pl.col("x10") >= -4) & (pl.col("x10") < p),
        sig=pl.col("n").cast(pl.String).str.strip_chars_end("0"),
    )
    sig, x10 = pl.col("sig"), pl.col("x10")
    int_len = x10 + 1
    slen = sig.str.len_bytes()
    zeros = "0" * 24
    body = (
        pl.when(x10 < 0)
        .then(pl.concat_str([pl.lit("0."), pl.lit(zeros).str.slice(0, -x10 - 1), sig]))
        .when(slen <= int_len)
        .then(pl.concat_str([sig, pl.lit(zeros).str.slice(0, int_len - slen)]))
        .otherwise(pl.concat_str([sig.str.slice(0, int_len), pl.lit("."), sig.str.slice(int_len)]))
    )
    out = df.select(
        pl.when(pl.col("fast"))
        .then(pl.concat_str([pl.when(x < 0).then(pl.lit("-")).otherwise(pl.lit("")), body]))
        .otherwise(pl.lit(None, dtype=pl.String))
        .alias(series.name)
    ).to_series()
    missing = out.is_null() & series.is_not_null()
    if missing.any():  # zero, nan, inf, huge/tiny magnitudes: format just these in Python
        idx = missing.arg_true()
        values = [_c_format(v, p) for v in series.cast(pl.Float64).gather(idx).to_list()]
        out = out.scatter(idx, pl.Series(values, dtype=pl.String))
    return out


def _c_format(value: float, p: int) -> str:
    """Python's `%g` except for NaN, which C prints with its sign (`-nan` from 0.0/0.0 on x86)."""
    if math.isnan(value):
        return "-nan" if math.copysign(1.0, value) < 0 else "nan"
    return f"%.{p}g" % value


def _format_native(series: pl.Series, p: int) -> pl.Series | None:
    """The C helper's rendering (same text as `_format`), or None when it is unavailable."""
    lib = native_library()
    if lib is None or series.len() == 0:
        return None
    import pyarrow as pa  # only when rendering: it costs 40 ms of start-up

    arr = series.rechunk().to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    # one call: output batches go through ess.aq.writer's row renderer, so this column-at-a-time
    # path (ToS(float), the UDB's line renderer) is not hot enough to split over threads
    out = pl.from_arrow(_format_piece(lib, arr, p))
    assert isinstance(out, pl.Series)
    out = out.cast(pl.String).alias(series.name)
    if series.null_count():
        out = pl.select(pl.when(series.is_null()).then(None).otherwise(out)).to_series()
    return out.alias(series.name)


def _format_piece(lib: ctypes.CDLL, arr: pa.Array, p: int) -> pa.Array:
    import pyarrow as pa

    n = len(arr)
    validity, data = arr.buffers()
    text = pa.allocate_buffer(32 * n + 1, resizable=True)
    offsets = pa.allocate_buffer(8 * (n + 1))
    ctypes.memset(offsets.address, 0, 8)
    valid = validity.address if validity is not None and arr.null_count else None
    used = lib.ess_format_g(
        data.address + 8 * arr.offset, valid, arr.offset, n, p, text.address, offsets.address
    )
    text.resize(used)
    return pa.Array.from_buffers(pa.large_string(), n, [None, offsets, text])
