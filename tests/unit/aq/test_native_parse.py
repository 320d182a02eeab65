"""The C parser of clean delimited chunks (`_parse.c`) against the general Polars path.

The C parser may refuse any chunk (the caller then uses the Polars path); whatever it accepts
must give exactly the values the Polars path gives: same rows, same types, same float bits.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ess.aq import batches, native, reader
from ess.aq.colspec import ColSpec
from ess.aq.rules import InputAttrs

BIN = Path(sys.executable).parent
TYPES = ["S", "I", "IS", "L", "LS", "F", "X"]


CFLAGS = {"simd": "", "sse2": "-DESS_NO_AVX2 -DESS_NO_FMA", "portable": "-DESS_NO_SIMD"}


@pytest.fixture(autouse=True, params=list(CFLAGS))
def _helper(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test runs on the default build (AVX2 and FMA code where the CPU has them), on the
    SSE2 code only (float division, no FMA) and on the portable code (what ARM hosts compile)."""
    if os.environ.get("ESS_NATIVE") == "0":  # pragma: no cover - the project installs cc
        pytest.fail("these tests need the C helper (ESS_NATIVE=0 is set)")
    if CFLAGS[request.param]:
        monkeypatch.setenv("ESS_NATIVE_CFLAGS", CFLAGS[request.param])
    native.native_library.cache_clear()
    assert native.native_library() is not None
    yield
    native.native_library.cache_clear()


def _reference(
    chunk: batches.Chunk, attrs: InputAttrs, specs: list[ColSpec], names: list[str]
) -> tuple[pl.DataFrame, pl.Series]:
    raw = reader.parse_chunk(chunk, attrs, list(specs))
    return reader.typed_frame(raw, list(specs), names)


def _bits(frame: pl.DataFrame) -> pl.DataFrame:
    """Floats as their bit patterns, so -0.0, NaN payloads and last-bit differences count."""
    return frame.with_columns(pl.col(pl.Float64).reinterpret(signed=False))


def _native(
    data: bytes, types: list[str], check: frozenset[str] = frozenset(), **attrs: object
) -> tuple[pl.DataFrame | None, batches.Chunk, list[ColSpec]]:
    specs = [ColSpec(t, "" if t == "X" else f"c{i}") for i, t in enumerate(types)]
    names = [s.name for s in specs]
    chunk = batches.Chunk(data, "test", 1)
    return reader.native_typed(chunk, InputAttrs(**attrs), specs, names, check), chunk, specs


def _agrees(
    data: bytes, types: list[str], check: frozenset[str] = frozenset(), **attrs: object
) -> bool:
    """Whether the C parser accepted the chunk; asserts it agrees with the Polars path."""
    got, chunk, specs = _native(data, types, check, **attrs)
    if got is None:
        return False
    names = [s.name for s in specs]
    want, bad = _reference(chunk, InputAttrs(**attrs), specs, names)  # type: ignore[arg-type]
    assert not bad.any(), f"C accepted a chunk the general path rejects: {data!r}"
    kept = [n for n in want.columns if n not in check]
    if not kept:
        assert got.height == want.height
        return True
    assert got.columns == kept
    assert got.schema == want.select(kept).schema
    assert _bits(got).equals(_bits(want.select(kept))), data
    return True


INT_TEXT = st.one_of(
    st.integers(-(10**18) + 1, 10**18 - 1).map(str),
    st.integers(0, 10**6).map(lambda v: f"{v:08d}"),  # leading zeros
    st.sampled_from(["0", "-0", "9" * 18, "1" * 17, "-" + "9" * 18]),
)
UINT_TEXT = st.integers(0, 10**18 - 1).map(str)
FLOAT_TEXT = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda v: f"{v:.3f}"),
    st.from_regex(r"\A-?[0-9]{1,12}(\.[0-9]{1,12})?([eE][+-]?[0-9]{1,3})?\Z"),
    st.from_regex(r"\A-?[0-9]{1,9}\.[0-9]{1,9}\Z"),
    st.sampled_from(
        [
            "0",
            "-0.0",
            "1.5e+308",
            "1e-400",
            "3.14159265358979323846264338",
            "9007199254740993",
            "0.1e1",
            "12345678.12345678",
        ]
    ),
)
STR_TEXT = st.text(
    alphabet=st.characters(blacklist_characters=',\n\r"\x00', blacklist_categories=["Cs"]),
    max_size=12,
)
WEIRD = st.sampled_from(["", "-", "+5", " 5", "5 ", "1e3", "0x1F", "12a", "--1", "9" * 19,
                         ".5", "5.", "1e", "inf", "nan", "1,5", 'a"b', "x\ry", "\x00"])  # fmt: skip


@st.composite
def chunks(draw: st.DrawFn) -> tuple[bytes, list[str], frozenset[str]]:
    """Mostly clean chunks (the C parser must accept and agree), some with an odd field or a
    ragged record (it may refuse; if it accepts, it must still agree)."""
    types = draw(st.lists(st.sampled_from(TYPES), min_size=1, max_size=5))
    text = {"S": STR_TEXT, "X": STR_TEXT, "F": FLOAT_TEXT, "L": UINT_TEXT}
    dirty = draw(st.integers(0, 3)) == 0
    rows = []
    for _ in range(draw(st.integers(1, 40))):
        fields = [
            draw(WEIRD) if dirty and draw(st.integers(0, 8)) == 0 else draw(text.get(t, INT_TEXT))
            for t in types
        ]
        if dirty and draw(st.integers(0, 10)) == 0:  # a ragged record
            fields = fields[:-1] if len(fields) > 1 and draw(st.booleans()) else [*fields, "1"]
        rows.append(",".join(fields))
    data = "\n".join(rows) + draw(st.sampled_from(["\n", "\n", "\n", "", "\n\n"]))
    numeric = [f"c{i}" for i, t in enumerate(types) if t not in ("S", "X")]
    check = frozenset(draw(st.lists(st.sampled_from(numeric), unique=True)) if numeric else [])
    return data.encode(), types, check


@settings(max_examples=600, deadline=None)
@given(chunks())
def test_native_parse_agrees_with_polars(case: tuple[bytes, list[str], frozenset[str]]) -> None:
    data, types, check = case
    _agrees(data, types, check)


def test_clean_chunk_is_taken_by_the_c_parser() -> None:
    """The common shapes must not silently fall back (that would only cost speed, but a
    parser that refuses everything would pass the differential test)."""
    rows = [f"u{i:07d},{1400000000 + i},{i % 5000},{(i % 9950) / 100 + 0.5}" for i in range(3000)]
    data = ("\n".join(rows) + "\n").encode()
    assert _agrees(data, ["S", "I", "I", "F"])
    assert _agrees(data, ["X", "I", "I", "F"], frozenset({"c1", "c2"}))
    assert _agrees(data[:-1], ["S", "IS", "LS", "F"])  # no final newline
    assert _agrees("a,é,-3,1e-5\nb,日本,7,-0.0\n".encode(), ["S", "S", "LS", "F"])


@pytest.mark.parametrize("sep", [",", "\t", "|"])
def test_unquoted_clean_chunk_is_taken_by_the_c_parser(sep: str) -> None:
    """Without csv quoting (`noq`, `tab`, `sep=`) too: the SIMD masks once flagged every
    newline of such a chunk as a byte to refuse, so only the portable build took them."""
    rows = [sep.join([f"u{i}", '"q"', str(i), str(i / 4)]) for i in range(3000)]
    data = ("\n".join(rows) + "\n").encode()
    assert _agrees(data, ["S", "S", "I", "F"], quoted=False, sep=sep)


@pytest.mark.parametrize(
    ("data", "types"),
    [
        (b'"a",1\n', ["S", "I"]),  # quotes: the general path unquotes
        (b"a,1\r\n", ["S", "I"]),  # CRLF
        (b"a,1\n\nb,2\n", ["S", "I"]),  # blank line
        (b"a,1\nb\n", ["S", "I"]),  # short record
        (b"a,1,2\n", ["S", "I"]),  # long record
        (b",\n", ["S", "I"]),  # all read fields empty: the general path drops the record
        (b"a,-1\n", ["S", "L"]),  # unsigned with a sign
        (b"a\xff,1\n", ["S", "I"]),  # bad UTF-8 in a kept string
        (b"a\x00,1\n", ["S", "I"]),  # NUL
        (b"a,1 \n", ["S", "I"]),  # trailing blank
        (b"a,12345678901234567890\n", ["S", "I"]),  # 20 digits
        (b"a,b\n", ["S", "S"]),  # nothing numeric to check the layout with
    ],
)
def test_unsure_chunks_go_to_the_general_path(data: bytes, types: list[str]) -> None:
    got, _, _ = _native(data, types)
    assert got is None


def test_empty_and_dash_numbers_read_as_zero() -> None:
    """Essentia's field rules, and the common case of an optional numeric column."""
    data = b"2014-09-13T00:00:08,5414,40,3.66,\n2014-09-13T00:03:49,-,,-,\n"
    assert _agrees(data, ["S", "I", "I", "F", "I"])
    got, _, _ = _native(data, ["S", "I", "I", "F", "I"])
    assert got is not None
    assert got.row(1) == ("2014-09-13T00:03:49", 0, 0, 0.0, 0)
    assert _agrees(b",1\nx,\n", ["S", "F"])  # one empty field beside a non-empty one
    assert _agrees(b"1,\n2,\n", ["X", "F"]) is False  # only read field empty: left to Polars


def test_more_records_than_the_buffers_hold_is_refused() -> None:
    data = b"1\n2\n3\n"
    assert native.parse_delimited(data, b",", True, [native.P_INT], 3) is not None
    assert native.parse_delimited(data, b",", True, [native.P_INT], 2) is None


def test_only_checked_columns_still_count_rows() -> None:
    got, _, _ = _native(b"1,2.5\n3,4\n5,6\n", ["I", "F"], frozenset({"c0", "c1"}))
    assert got is not None and got.height == 3


def test_bad_number_in_a_checked_column_is_still_caught() -> None:
    got, _, _ = _native(b"1,2.5\n3,x\n", ["I", "F"], frozenset({"c1"}))
    assert got is None  # the general path then drops the record (eok) or stops


def test_sum_f64_adds_in_row_order() -> None:
    import pyarrow as pa

    values = [1e16] + [1.0] * 1000 + [-1e16, 0.1, 0.2]
    expect = 5.0
    for v in values:
        expect += v
    assert native.sum_f64(pa.array(values, pa.float64()), 5.0) == expect
    assert expect != 5.0 + sum(values)  # the order matters for these values
    assert native.sum_f64(pa.array([1.0, None]), 0.0) is None
    assert native.sum_f64(pa.array(values, pa.float64()).slice(1001), 0.0) == -1e16 + 0.1 + 0.2


def test_aq_pp_same_bytes_with_and_without_c_parser(tmp_path: Path) -> None:
    """Whole runs over 1 MB chunks, some clean and some not (a quoted field, a bad number that
    eok drops): the output and the dropped-record report are identical."""
    lines = [f"k{i % 977},{i},{(i * 7919) % 100000 / 100}" for i in range(120_000)]
    lines[50_000] = '"quoted, key",1,2.5'
    lines[90_000] = "k,oops,2.5"
    src = tmp_path / "in.csv"
    src.write_text("\n".join(lines) + "\n")
    argv = [str(BIN / "aq_pp"), "-f,eok", str(src), "-d", "s:k", "i:t", "f:p",
            "-var", "f:s", "0.0", "-filt", "t % 3 != 0", "-eval", "s", "s + p",
            "-eval", "f:q", "p / 7", "-o", "-", "-c", "k", "q", "-ovar", "-"]  # fmt: skip
    outs = []
    for flag in ("1", "0"):
        env = dict(os.environ, ESS_NATIVE=flag, ESS_AQ_CHUNK_MB="1")
        done = subprocess.run(argv, env=env, capture_output=True, check=True)
        outs.append((done.stdout, done.stderr))
    assert outs[0] == outs[1]
    assert b"1 record(s) skipped" in outs[0][1]
    assert outs[0][0].count(b"\n") > 70_000


def test_newline_where_a_separator_belongs_is_refused() -> None:
    """Every record's last entry must be a newline and no other one: a newline in place of a
    separator (the record count still divides evenly) goes to the general path, in the first
    window of the index or a later one."""
    assert _native(b"1,2\n3\n4\n5,6\n", ["I", "I"])[0] is None
    assert _native(b"1\n2,3,4\n", ["I", "I"])[0] is None
    assert _native(b"1,2\n3\n4,5,6\n", ["I", "I"])[0] is None
    rows = [f"{i},{i + 1}" for i in range(5000)]
    assert _agrees(("\n".join(rows) + "\n").encode(), ["I", "I"])
    for at in (10, 4000):  # 2 entries a record: the index holds 2048 records at a time
        bad = [*rows]
        bad[at : at + 2] = [f"{at}\n{at}", f"{at},{at},{at}"]
        assert _native(("\n".join(bad) + "\n").encode(), ["I", "I"])[0] is None


def test_chunk_lengths_around_64_byte_blocks() -> None:
    """The index reads 64 bytes at a time and pads the last block: every length modulo 64,
    with and without a final newline, and fields across block boundaries."""
    for pad in range(130):
        data = f"{'x' * pad},1,2.5\nyy,-3,{pad}.25\n".encode()
        assert _agrees(data, ["S", "I", "F"]), data
        assert _agrees(data[:-1], ["S", "I", "F"]), data
        assert _agrees(data, ["X", "I", "F"], frozenset({"c1"})), data


def test_short_decimals_round_like_python() -> None:
    """The float fast path (up to 8 integer and 8 fraction digits) against Python's correctly
    rounded float(text), bit for bit: a wrong last bit would show in a few of these."""
    import random
    import struct

    rng = random.Random(20261122)
    texts = []
    for _ in range(40_000):
        a, b = rng.randint(1, 8), rng.randint(0, 8)
        text = str(rng.randrange(10**a))
        if b:
            text += "." + "".join(rng.choice("0123456789") for _ in range(b))
        texts.append(("-" if rng.random() < 0.2 else "") + text)
    for _ in range(40_000):  # 9 to 15 significant digits (the fast path's limit), split anywhere
        size = rng.randint(9, 15)
        digits = str(rng.randrange(10 ** (size - 1), 10**size))
        a = rng.randint(max(1, len(digits) - 8), min(8, len(digits)))
        text = digits[:a] + ("." + digits[a:] if a < len(digits) else "")
        if rng.random() < 0.2:
            zeros = rng.randint(0, 7)  # below 1: at most 8 significant fraction digits
            text = "0." + "0" * zeros + digits[: 8 - zeros]
        texts.append(("-" if rng.random() < 0.2 else "") + text)
    texts += ["0.1", "0.2", "0.3", "9.95", "1.005", "99999999.99999999", "0.00000001"]
    texts += ["9999999.99999999", "1234567.12345678", "4503599.62737049", "0.99999999"]
    data = ("\n".join(texts) + "\n").encode()
    got = native.parse_delimited(data, b",", True, [native.P_FLOAT], len(texts) + 1)
    assert got is not None and got[1] == len(texts)
    values = got[0].column("f0").to_pylist()
    for text, value in zip(texts, values, strict=True):
        assert struct.pack("<d", value) == struct.pack("<d", float(text)), text


CHECKED_INT_FIELDS = ["0", "-0", "7", "-7", "", "-", "1" * 16, "-" + "1" * 16, "1" * 17, "9" * 18,
                      "-" + "9" * 18, "9" * 19, "-" + "9" * 19, "12a", "a12", "+5", "1.5", ".5",
                      "5.", "--5", "5-", "-5-", "1-2", "-", "/", ":", "12:3", "1/2", "é1", "1é",
                      " 5", "5 ", "1e3", "0x1F", "\x7f1", "12345678901234-"]  # fmt: skip


@pytest.mark.parametrize("kind", ["I", "L"])
def test_checked_int_fields_are_accepted_like_converted_ones(kind: str) -> None:
    """A checked integer column is only validated (no conversion): it must accept exactly the
    fields the converting code accepts: digits, a sign in a signed column only, up to 18 digits,
    blank or a lone '-', whether the field's 16 bytes are readable (mid chunk) or not (the last
    field of a chunk without a final newline)."""
    filler = "\n".join(f"{i},{i * 7}" for i in range(50))
    for text in CHECKED_INT_FIELDS:
        for data in (f"1,{text}\n{filler}\n", f"{filler}\n1,{text}\n2,3\n", f"{filler}\n1,{text}"):
            plain, _, _ = _native(data.encode(), ["I", kind])
            checked, _, _ = _native(data.encode(), ["I", kind], frozenset({"c1"}))
            assert (plain is None) == (checked is None), (text, data[-30:])
            if checked is not None:
                assert _agrees(data.encode(), ["I", kind], frozenset({"c1"}))
    signed_ok = ["0", "-0", "7", "-7", "", "-", "1" * 16, "-" + "1" * 16, "1" * 17, "9" * 18]
    for text in [*signed_ok, "-" + "9" * 18]:
        got, _, _ = _native(f"1,{text}\n".encode(), ["I", kind], frozenset({"c1"}))
        negative = text.startswith("-") and text != "-"
        assert (got is None) == (kind == "L" and negative), text
    for text in CHECKED_INT_FIELDS:
        if text not in signed_ok and text != "-" + "9" * 18:
            assert _native(f"1,{text}\n".encode(), ["I", kind], frozenset({"c1"}))[0] is None


def test_checked_int_column_keeps_the_empty_record_rule() -> None:
    assert _native(b"x,\n", ["X", "I"], frozenset({"c1"}))[0] is None
    assert _native(b"x,\n", ["X", "L"], frozenset({"c1"}))[0] is None
    assert _agrees(b"x,\ny,\n", ["S", "I"], frozenset({"c1"}))
    assert _agrees(b"x,-\n", ["X", "I", "I"], frozenset({"c1"})) is False  # ragged: refused


def test_strings_come_as_views_polars_takes_as_they_are() -> None:
    texts = ["", "a", "twelve bytes", "thirteen byte", "é" * 7, "x" * 300, "tail"]
    data = "".join(f"{t},{i}\n" for i, t in enumerate(texts)).encode()
    got = native.parse_delimited(data, b",", True, [native.P_STR, native.P_INT], len(texts) + 1)
    assert got is not None
    column = got[0].column("f0")
    assert str(column.type) == "string_view"  # Polars' own layout: no conversion on import
    assert column.to_pylist() == texts
    frame = pl.from_arrow(got[0])
    assert isinstance(frame, pl.DataFrame)
    assert frame.get_column("f0").to_list() == texts
    assert frame.get_column("f0").str.len_bytes().to_list() == [len(t.encode()) for t in texts]


def _wide_floats() -> list[str]:
    """17 to 19 significant digits (a float's shortest repr often has 17), and decimal integers
    that are exact midpoints between two doubles, the one case where rounding to 64 bits then
    to 53 can differ from rounding once."""
    import random

    rng = random.Random(11)
    out = ["46.230000000000004", "0.30000000000000004", "9007199254740993", "-9007199254740993"]
    for _ in range(20000):
        out.append(repr(rng.uniform(0, 1e4)))
        out.append(f"{rng.uniform(-1e6, 1e6):.19g}")
        out.append(f"0.{rng.randrange(10**18):018d}")
        ulp = 2 ** rng.randint(1, 9)  # doubles in [2^53 ulp, 2^54 ulp) are ulp apart
        out.append(str(2**53 * ulp + rng.randrange(2**52) * ulp + ulp // 2))
        out.append(str(rng.randrange(10**18, 10**19)))
    return out


def test_wide_floats_are_correctly_rounded() -> None:
    """The x87 path for 17-19 significant digits gives Python's (correctly rounded) float,
    bit for bit, midpoints included (they go to strtod)."""
    import math

    values = _wide_floats()
    parsed = native.parse_delimited(("\n".join(values) + "\n").encode(), b",", False,
                                    [native.P_FLOAT], len(values) + 1)  # fmt: skip
    assert parsed is not None
    got = parsed[0].column(0).to_pylist()
    wrong = [(v, g) for v, g in zip(values, got, strict=True)
             if g != float(v) or math.copysign(1, g) != math.copysign(1, float(v))]  # fmt: skip
    assert wrong == []
