"""The `-f,tab` format: rows of an HTML table, and where the reader may cut a batch of them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ess.aq.htmltab import ROW_END, parse_rows, record_end

Row = list[str | None]
BIN = Path(sys.executable).parent


def rows(data: bytes, width: int) -> list[Row]:
    """The parsed rows as lists (None for a missing cell), after checking the frame's shape."""
    frame = parse_rows(data, width)
    assert frame.schema == pl.Schema({f"f{i}": pl.String for i in range(width)})
    return [list(row) for row in frame.iter_rows()]


def test_header_row_and_data_rows() -> None:
    data = (
        b"<html><body><table>\n<tr><th>name</th><th>n</th></tr>\n"
        b"<tr><td>ann</td><td>1</td></tr>\n<tr><td>bob</td><td>2</td></tr>\n</table></body></html>\n"
    )
    assert rows(data, 2) == [["ann", "1"], ["bob", "2"]]


def test_attributes_and_upper_case_tags() -> None:
    data = b'<TABLE><TR><TD CLASS="x">a</TD><td\nalign=right>b</td ></TR ><Tr><tD>c</Td></tR>'
    assert rows(data, 2) == [["a", "b"], ["c", None]]


def test_cells_spanning_lines_keep_blanks_entities_and_nested_tags() -> None:
    data = b"<tr><td> two\nlines </td><td>&amp; <b>bold</b> &#38;</td></tr>"
    assert rows(data, 2) == [[" two\nlines ", "&amp; <b>bold</b> &#38;"]]


def test_crlf_inside_a_cell_reads_as_lf() -> None:
    data = b"<tr>\r\n<td>a\r\nb</td><td>lone\rcr</td>\r\n</tr>\r\n"
    assert rows(data, 2) == [["a\nb", "lone\rcr"]]


def test_more_cells_than_width_keeps_the_first() -> None:
    assert rows(b"<tr><td>1</td><td>2</td><td>3</td></tr>", 2) == [["1", "2"]]


def test_fewer_cells_than_width_are_null() -> None:
    assert rows(b"<tr><td>1</td></tr><tr><td></td><td>x</td></tr>", 3) == [
        ["1", None, None],
        ["", "x", None],
    ]


def test_text_between_rows_and_cells_is_ignored() -> None:
    data = b"caption<tr>before<td>a</td>between<td>b</td>after</tr> junk \n<tr><td>c</td></tr>"
    assert rows(data, 2) == [["a", "b"], ["c", None]]


def test_a_row_starts_at_the_first_td_even_without_tr() -> None:
    assert rows(b"<table><td>a</td><td>b</td></tr><td>c</td></tr>", 2) == [["a", "b"], ["c", None]]


def test_unclosed_cells_end_at_the_next_cell_or_the_row_end() -> None:
    assert rows(b"<tr><td>a<td/>b<td>c</tr>", 3) == [["a", "b", "c"]]


def test_look_alike_tags_are_text() -> None:
    data = b"<tr><td>a<tdx>b</tdx></trace></td><td>c</tr>"
    assert rows(data, 2) == [["a<tdx>b</tdx></trace>", "c"]]


def test_trailing_row_without_tr_end() -> None:
    assert rows(b"<tr><td>a</td></tr>\n<tr><td>b</td>", 1) == [["a"], ["b"]]
    assert rows(b"<tr><td>a</td></tr>\n<tr>", 1) == [["a"]]


@pytest.mark.parametrize("data", [b"", b"<table><tr><th>h</th></tr></table>", b"no table\n"])
def test_no_rows_gives_an_empty_frame_of_strings(data: bytes) -> None:
    assert rows(data, 3) == []


def test_invalid_utf8_and_control_characters() -> None:
    data = b"\x00\x01\x02<tr><td>\xff\x00\x03</td><td>\xc3\xa9</td></tr>"
    assert rows(data, 2) == [["\ufffd\x00\x03", "é"]]


def test_record_end_without_tr() -> None:
    assert record_end(b"") == -1
    assert record_end(b"<tr><td>a</td><td>b") == -1
    assert record_end(b"<tr><td>a</td></track></tr") == -1


def test_record_end_with_blanks_and_upper_case() -> None:
    data = b"<tr><td>a</td></TR >\n<tr><td>b</td></tr\n\t><tr><td>c"
    end = record_end(data)
    assert data[: end + 1].endswith(b"</tr\n\t>")
    assert record_end(data[: data.index(b"</tr\n") + 5]) == data.index(b"</TR >") + 5


def test_record_end_far_from_the_end() -> None:
    data = b"<tr><td>a</td></tr>" + b"<tr><td>" + b"x</td><td>" * 100_000
    assert record_end(data) == 18


# Generated tables: the model below knows each row's cells, so the parse is checked against it.
TEXT = st.lists(
    st.sampled_from(["a", "Z", " ", "\n", "\r\n", "<b>", "</b>", "&amp;", "é", "/", ">", "<"]),
    max_size=5,
).map("".join)  # no `t`: contents never form a tag of their own
OPEN = st.sampled_from(["<td>", "<TD>", '<td class="x">', "<td\nalign=left>", "<td/>"])
CLOSE = st.sampled_from(["</td>", "</TD >", "</td\n>", ""])
ROW_START = st.sampled_from(["<tr>", "<TR>", "\n<tr class=a>", "", "<tr><th>h</th>"])
ROW_STOP = st.sampled_from(["</tr>", "</TR>", "</tr >", "</tr\r\n>"])
CELL_JUNK = st.sampled_from(["", "\n", " x ", "<th>head</th>", "&lt;"])
JUNK = st.one_of(CELL_JUNK, st.sampled_from(["<tr><th>head</th></tr>", "</table><table>"]))


@st.composite
def cells(draw: st.DrawFn) -> tuple[str, str]:
    """A cell's HTML and its expected contents (an unclosed cell gets no text after it)."""
    text, close = draw(TEXT), draw(CLOSE)
    html = draw(OPEN) + text + close + (draw(CELL_JUNK) if close else "")
    return html, text.replace("\r\n", "\n")


@st.composite
def tables(draw: st.DrawFn) -> tuple[bytes, list[list[str]]]:
    """An HTML table and the cells of its rows (a row without cells yields none)."""
    html, expected = [draw(JUNK)], []
    for _ in range(draw(st.integers(0, 6))):
        row = draw(st.lists(cells(), max_size=4))
        html += [draw(ROW_START), *(h for h, _ in row), draw(ROW_STOP), draw(JUNK)]
        if row:
            expected.append([text for _, text in row])
    if draw(st.booleans()):  # a last row without `</tr>`
        row = draw(st.lists(cells(), min_size=1, max_size=3))
        html += [draw(ROW_START), *(h for h, _ in row)]
        expected.append([text for _, text in row])
    return "".join(html).encode(), expected


def padded(cells: list[list[str]], width: int) -> list[Row]:
    """Rows cut or padded with None to `width` cells."""
    return [[*row[:width], *[None] * (width - len(row))] for row in cells]


@settings(max_examples=300, deadline=None)
@given(tables(), st.integers(1, 5))
def test_generated_tables(table: tuple[bytes, list[list[str]]], width: int) -> None:
    data, expected = table
    assert rows(data, width) == padded(expected, width)


@settings(max_examples=300, deadline=None)
@given(tables(), st.integers(1, 5))
def test_cutting_at_record_end_splits_no_row(
    table: tuple[bytes, list[list[str]]], width: int
) -> None:
    data, _ = table
    end = record_end(data)
    if end < 0:
        assert ROW_END.search(data) is None
        return
    assert data[end : end + 1] == b">"
    assert ROW_END.search(data, end + 1) is None  # no later row end
    assert rows(data[: end + 1], width) + rows(data[end + 1 :], width) == rows(data, width)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["<td", "<TD x>", "</td>", "</tr", "</TR", ">", " ", "\n", "a"])))
def test_cutting_broken_html_at_record_end_splits_no_row(pieces: list[str]) -> None:
    data = "".join(pieces).encode()
    end = record_end(data)
    assert end == max((m.end() - 1 for m in ROW_END.finditer(data)), default=-1)
    assert rows(data[: end + 1], 2) + rows(data[end + 1 :], 2) == rows(data, 2)


def _aq_pp(args: list[str], data: bytes, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(BIN / "aq_pp"), *args], input=data, capture_output=True,
                          env=dict(os.environ, **env), timeout=120)  # fmt: skip


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_aq_pp_reads_an_html_table_across_batches(tmp_path: Path, source: str) -> None:
    """3 MB of rows in 1 MB batches: every batch ends at a `</tr>`, rows spanning lines too."""
    body = b"".join(
        b'<tr><td class="k">k%d</td>\n<TD>%d</TD></tr>\r\n' % (i, i) for i in range(90_000)
    )
    data = b"<table><tr><th>key</th><th>n</th></tr>\n" + body + b"<tr><td>short</td></tr></table>"
    path = tmp_path / "t.html"
    path.write_bytes(data)
    args = ["-f,tab", str(path) if source == "file" else "-", "-d", "s:key", "i:n",
            "-o,notitle", "-"]  # fmt: skip
    out = _aq_pp(args, data if source == "stdin" else b"", ESS_AQ_CHUNK_MB="1")
    assert out.returncode == 0, out.stderr
    want = b"".join(b'"k%d",%d\n' % (i, i) for i in range(90_000)) + b'"short",0\n'
    assert out.stdout == want


def test_aq_pp_html_cell_that_is_not_a_number() -> None:
    out = _aq_pp(["-f,tab", "-", "-d", "s:a", "i:b"], b"<tr><td>x</td><td>y</td></tr>")
    assert out.returncode == 8
    assert b"cannot convert 'y' to integer" in out.stderr
