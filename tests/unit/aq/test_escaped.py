"""Input attributes with a meaning of their own: `esc` (a backslash makes the next byte literal) and
logcnv's `tim` column attribute."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ess.aq.batches import Chunk
from ess.aq.colspec import ColSpec
from ess.aq.reader import LINE, parse_chunk
from ess.aq.rules import InputAttrs

BIN = Path(sys.executable).parent
TEXT = st.text(alphabet='ab ,|"\\x', max_size=8)


def _escape(value: str, sep: str, quoted: bool) -> str:
    """What `aq_pp -o,esc` writes for a string (and its unquoted form for `sep=` inputs)."""
    text = value.replace("\\", "\\\\").replace(sep, "\\" + sep)
    if not quoted:
        return text
    text = text.replace('"', '\\"')
    return f'"{text}"' if value else ""


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.lists(TEXT, min_size=3, max_size=3), min_size=1, max_size=6),
       sep=st.sampled_from([",", "|"]), quoted=st.booleans())  # fmt: skip
def test_escaped_fields_read_back_exactly(rows: list[list[str]], sep: str, quoted: bool) -> None:
    lines = [sep.join(_escape(v, sep, quoted) for v in row) for row in rows]
    attrs = InputAttrs(esc=True, sep=sep, quoted=quoted, fmt="csv" if quoted else "sep")
    specs = [ColSpec("S", f"c{i}") for i in range(3)]
    data = ("\n".join(lines) + "\n\\\n").encode()  # a last line with a lone backslash
    got = parse_chunk(Chunk(data, "test", 1), attrs, list(specs)).drop(LINE)
    want = [row for row in rows if any(row)] + [["\\", "", ""]]  # blank records are skipped
    assert got.rows() == [tuple(r) for r in want]


def _aq_pp(*args: str, data: bytes) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, TZ="UTC")
    return subprocess.run([str(BIN / "aq_pp"), *args], input=data, capture_output=True,
                          env=env, timeout=60)  # fmt: skip


def test_esc_input_end_to_end(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b'a\\,b,2\n"q\\"x",3\nplain,4\nback\\\\,5\n')
    out = _aq_pp("-f,esc", str(path), "-d", "s:a", "i:b", data=b"")
    assert out.returncode == 0, out.stderr
    assert out.stdout == b'"a","b"\n"a,b",2\n"q""x",3\n"plain",4\n"back\\",5\n'


def test_esc_output_reads_back_with_esc_input() -> None:
    first = _aq_pp("-f,esc", "-", "-d", "s:a", "s:b", "-o,esc", "-",
                   data=b'x\\,y,"say \\"hi\\""\n')  # fmt: skip
    assert first.returncode == 0, first.stderr
    again = _aq_pp("-f,+1,esc", "-", "-d", "s:a", "s:b", data=first.stdout)
    assert again.stdout == b'"a","b"\n"x,y","say ""hi"""\n'


def test_column_esc_applies_to_its_field_only() -> None:
    out = _aq_pp("-f,sep=|", "-", "-d", "s,esc:a", "s:b", "i:c", data=b"a\\|b|c\\|1\n")
    # field a takes `a\|b` as `a|b`; field b is read without escapes, so the record is
    # a|b, c\, 1
    assert out.returncode == 0, out.stderr
    assert out.stdout == b'"a","b","c"\n"a|b","c\\",1\n'


@pytest.mark.parametrize(("attrs", "code", "stdout"), [
    ("-f,esc,nox", 8, b'"a","b"\n'),
    ("-f,esc,nox,eok,qui", 0, b'"a","b"\n"x",3\n'),
    ("-f,esc", 0, b'"a","b"\n"a,b",2\n"x",3\n'),
])  # fmt: skip
def test_esc_with_extra_fields(attrs: str, code: int, stdout: bytes) -> None:
    out = _aq_pp(attrs, "-", "-d", "s:a", "i:b", data=b"a\\,b,2,9\nx,3\n")
    assert out.returncode == code, out.stderr
    assert out.stdout == stdout
    if code:
        assert b"stdin, line 1: more fields than the 2 columns of -d" in out.stderr


@pytest.mark.parametrize("attrs", ["-f,esc", "-f"])
def test_unterminated_quote_names_its_line(attrs: str) -> None:
    """The CSV reader refuses the chunk as a whole (it once crashed aq_pp with a traceback);
    the record-by-record split then names the line."""
    out = _aq_pp(attrs, "-", "-d", "s:a", "i:b", data=b'ok,1\n"open quote,2\n')
    assert out.returncode == 8
    assert b"stdin, line 2: record does not match the column spec" in out.stderr


@pytest.mark.parametrize("args", [
    ["-f,fix,esc", "-", "-d", "s,n=2:a"],
    ["-f,fix", "-", "-d", "s,n=2,esc:a"],
    ["-f,div", "-", "-d", "s,esc:a", "sep:' '", "s:b"],
])  # fmt: skip
def test_esc_with_fixed_or_divided_input_is_not_supported_yet(args: list[str]) -> None:
    out = _aq_pp(*args, data=b"ab\n")
    assert out.returncode == 10 and out.stdout == b""
    assert b"not supported yet" in out.stderr


def test_tim_column_attribute_reads_apache_time() -> None:
    """logcnv's `i,tim:Col`: the Apache time field read as seconds since the epoch (UTC)."""
    out = _aq_pp("-f,div,eok,qui", "-", "-d", "s:ip", "sep: [", "i,tim:t", "sep:] ", "s:r",
                 data=b"1.2.3.4 [10/Oct/2000:13:55:36 -0700] x\n5.6.7.8 [junk] y\n")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout == b'"ip","t","r"\n"1.2.3.4",971211336,"x"\n'
    csv = _aq_pp("-f", "-", "-d", "i,tim:t", "i:n", data=b"01/Jan/1970:00:01:40 +0000,1\n")
    assert csv.stdout == b'"t","n"\n100,1\n'


@pytest.mark.parametrize("spec", ["s,trm@98:c", "s,@2:c"])
def test_legacy_field_index_is_not_supported_yet(spec: str) -> None:
    out = _aq_pp("-f", "-", "-d", spec, data=b"1\n")
    assert out.returncode == 10 and b"the legacy @N field index" in out.stderr


def test_unquoted_esc_output_is_escaped_and_reads_back() -> None:
    """`-o,esc,noq` escapes separators, quotes and backslashes even without the quotes."""
    first = _aq_pp("-f,esc", "-", "-d", "s:a", "s:b", "-o,esc,noq,notitle", "-",
                   data=b'x\\,y,"q\\"\\\\"\n')  # fmt: skip
    assert first.stdout == b'x\\,y,q\\"\\\\\n'
    again = _aq_pp("-f,esc,sep=,", "-", "-d", "s:a", "s:b", data=first.stdout)
    assert again.stdout == b'"a","b"\n"x,y","q""\\"\n'
    bad = _aq_pp("-f,esc", "-", "-d", "s:a", "s:b", data=b'x,q"y\\\n')  # a bare quote mid-field
    assert bad.returncode == 8 and b"line 1: record does not match" in bad.stderr
