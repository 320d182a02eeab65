"""`-f,jsn` / `-f,xml`: key specs, the streaming row model, and where a JSON batch may be cut."""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ess.aq.keyed import json_record_end, json_rows, parse_keyspec, xml_rows
from ess.errors import AqDataError, AqSyntaxError

GOLDEN = Path(__file__).parents[4] / "shared/acceptance/golden"  # beside the project
Row = list[str | None]
BIN = Path(sys.executable).parent


def rows(frame: pl.DataFrame, width: int) -> list[Row]:
    assert frame.schema == pl.Schema({f"f{i}": pl.String for i in range(width)})
    return [list(row) for row in frame.iter_rows()]


def jrows(data: bytes, *specs: str, base: str = "") -> list[Row]:
    return rows(json_rows(data, [parse_keyspec(s, base) for s in specs]), len(specs))


def xrows(data: bytes, *specs: str) -> list[Row]:
    return rows(xml_rows(data, [parse_keyspec(s) for s in specs]), len(specs))


# --- golden cases ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        "input_jsn_01_array_star",
        "input_jsn_02_base",
        "input_jsn_03_stream_limit",
        "input_jsn_04_two_arrays",
        "input_xml_01_array_star",
    ],
)
def test_golden(case: str) -> None:
    folder = GOLDEN / case
    if not folder.is_dir():
        pytest.skip(f"{folder} not available")
    line = next(ln for ln in (folder / "cmd.sh").read_text().splitlines() if ln.startswith("aq_pp"))
    args = shlex.split(line)
    fmt = args[1].split(",")
    base = next((a[5:] for a in fmt if a.startswith("base=")), "")
    data = (folder / args[2]).read_bytes()
    specs = args[args.index("-d") + 1 :]
    types = [s.split(":")[0].split(",")[0] for s in specs]
    paths = [parse_keyspec(s.split(":", 2)[2], base) for s in specs]
    parse = xml_rows if fmt[1] == "xml" else json_rows
    got = rows(parse(data, paths), len(specs))
    # the caller turns null into 0 (numeric types) or blank (strings)
    got = [
        [("" if t == "S" else "0") if v is None else v for t, v in zip(types, row, strict=True)]
        for row in got
    ]
    expected = list(csv.reader(io.StringIO((folder / "expected.txt").read_text())))[1:]
    assert got == expected


# --- the streaming model --------------------------------------------------------------------


def test_array_star_rows_with_earlier_scalar() -> None:
    data = b'{"Key1": "Val1", "Key2": {"Ary": [0, 1, 2]}}'
    assert jrows(data, "key1", "key2.ary[*]") == [["Val1", "0"], ["Val1", "1"], ["Val1", "2"]]


def test_scalar_after_array_is_not_in_context() -> None:
    data = b'{"key2": {"ary": [0, 1]}, "key1": "v"}'
    assert jrows(data, "key1", "key2.ary[*]") == [[None, "0"], [None, "1"]]


def test_two_arrays() -> None:
    data = b'{"k2": {"a": [0, 1]}, "k1": "v", "k3": {"a": [10]}}'
    assert jrows(data, "k1", "k2.a[*]", "k3.a[*]") == [
        [None, "0", None],
        [None, "1", None],
        ["v", None, "10"],
    ]


def test_no_star_column_one_row_per_document() -> None:
    data = b'{"a": 1, "b": "x"}\n{"b": "y"}\n{}'
    assert jrows(data, "a", "b") == [["1", "x"], [None, "y"], [None, None]]


def test_values_reset_between_documents() -> None:
    data = b'{"a": "x", "l": [1]} {"l": [2]}'
    assert jrows(data, "a", "l[*]") == [["x", "1"], [None, "2"]]


def test_empty_or_missing_star_array_gives_no_row() -> None:
    data = b'{"a": "x", "l": []}\n{"a": "y"}\n{"a": "z", "l": [5]}\n{"a": "w", "l": 3}'
    assert jrows(data, "a", "l[*]") == [["z", "5"]]


def test_star_over_objects_one_row_per_element() -> None:
    data = b'{"items": [{"a": 1, "b": "x"}, {"b": "y"}, {"a": 3}], "after": 1}'
    assert jrows(data, "items[*].a", "items[*].b", "after") == [
        ["1", "x", None],
        [None, "y", None],
        ["3", None, None],
    ]


def test_nested_arrays_rows_per_innermost() -> None:
    data = b'{"o": [{"id": "p", "in": [1, 2]}, {"id": "q", "in": []}, {"in": [3], "id": "r"}]}'
    assert jrows(data, "o[*].id", "o[*].in[*]") == [["p", "1"], ["p", "2"], [None, "3"]]


def test_index_steps() -> None:
    data = b'{"a": [10, 20, [30, 40]], "o": {"x": 1}}'
    assert jrows(data, "a[1]", "a[2].[1]", "a[7]", "o[0]", "[0]") == [
        ["20", "40", None, None, None]
    ]
    assert jrows(b"[[1, 2], [3]]", "[1].[0]", "[0].[*]") == [[None, "1"], [None, "2"]]
    assert jrows(b"[[3], [1, 2]]", "[0].[0]", "[1].[*]") == [["3", "1"], ["3", "2"]]


def test_path_hitting_container_is_blank() -> None:
    data = b'{"a": {"b": 1}, "l": [1, 2], "n": null}'
    assert jrows(data, "a", "l", "n", "a.b") == [[None, None, None, "1"]]


def test_scalar_text() -> None:
    data = b'{"i": 12, "f": 1.50, "e": 1E3, "t": true, "B": false, "s": "a\\"b\\u00e9", "z": -0}'
    assert jrows(data, "i", "f", "e", "t", "b", "s", "z") == [
        ["12", "1.50", "1E3", "true", "false", 'a"b\u00e9', "-0"]
    ]


def test_keys_case_insensitive() -> None:
    assert jrows(b'{"KeY": {"SUB": "v"}}', "kEy.Sub") == [["v"]]


def test_base_with_empty_spec() -> None:
    data = b'{"k1": {"k2": "v"}}'
    assert jrows(data, "", base="k1.k2") == [["v"]]
    assert jrows(data, "k2", base="K1") == [["v"]]


def test_pretty_printed_and_concatenated_documents() -> None:
    data = b'{\n  "a": 1\n}\n\n{"a":2}{"a":3}  \n[1]\n"s"\n'
    assert jrows(data, "a") == [["1"], ["2"], ["3"], [None], [None]]


def test_empty_input_and_no_columns() -> None:
    assert jrows(b" \n ", "a") == []
    assert json_rows(b"{} {}", []).shape == (0, 0)


def test_json_syntax_error_names_line() -> None:
    with pytest.raises(AqDataError, match="line 3"):
        json_rows(b'{"a": 1}\n{"a": 2}\n{"a": }\n', [["a"]])
    with pytest.raises(AqDataError, match="line 2"):
        json_rows(b'{"a": 1}\n{"a": 2', [["a"]])


# --- XML ------------------------------------------------------------------------------------


def test_xml_array_star_and_case() -> None:
    data = b"<Root><Key1>Val1</Key1><key2><ARY>0</ARY><Ary>1</Ary></key2></Root>"
    assert xrows(data, "root.key1", "root.key2.ary[*]") == [["Val1", "0"], ["Val1", "1"]]


def test_xml_streaming_and_objects() -> None:
    data = b"""<?xml version="1.0"?>
<r xmlns="urn:x">
  <it a="ignored"><a> 1 </a><b>x</b></it>
  <other/>
  <it><b>y</b></it>
  <s>late</s>
</r>"""
    assert xrows(data, "r.it[*].a", "r.it[*].b", "r.s", "r.other", "r.it[1].b", "r.[1]") == [
        ["1", "x", None, None, None, None],
        [None, "y", None, None, "y", None],
    ]


def test_xml_index_and_container() -> None:
    data = b"<r><v>1</v><v>2</v><c><d>3</d></c></r>"
    assert xrows(data, "r.v[1]", "r.v", "r.c", "r.c[0].d", "[0].[2].d") == [
        ["2", "2", None, "3", "3"]
    ]
    # `r.[0]` is `r[0]` (the first <r>): an index right after a key counts that key's siblings
    assert xrows(data, "r.[0].v[0]", "r.[1].v") == [["1", None]]


def test_xml_no_star_one_row_and_empty_array() -> None:
    assert xrows(b"<r><a>x</a></r>", "r.a", "r.l[*]") == []
    assert xrows(b"<r><a>x</a></r>", "r.a", "r.b") == [["x", None]]


def test_xml_errors() -> None:
    with pytest.raises(AqDataError, match="line 2"):
        xml_rows(b"<r>\n<a></b></r>", [["r"]])
    with pytest.raises(AqDataError):
        xml_rows(b"  ", [["r"]])


# --- parse_keyspec --------------------------------------------------------------------------


def test_parse_keyspec() -> None:
    assert parse_keyspec("Key1") == ["key1"]
    assert parse_keyspec("a.B[3].[*].c[*].[0]") == ["a", "b", 3, None, "c", None, 0]
    assert parse_keyspec("k4", "K1.k2") == ["k1", "k2", "k4"]
    assert parse_keyspec("", "k1") == ["k1"]
    assert parse_keyspec("[2]", "") == [2]


@pytest.mark.parametrize(
    "spec", ["a[x]", "a..b", ".a", "a.", "a[", "a]", "a[1]b", "a[1][2]", "a[-1]", "[]", "a b[*"]
)
def test_parse_keyspec_errors(spec: str) -> None:
    with pytest.raises(AqSyntaxError, match="bad key spec"):
        parse_keyspec(spec)


def test_parse_keyspec_empty() -> None:
    with pytest.raises(AqSyntaxError, match="empty"):
        parse_keyspec("", "")


# --- json_record_end ------------------------------------------------------------------------


def test_record_end_strings_with_braces_and_escapes() -> None:
    data = b'{"a": "}{\\"]"} {"b": "\\\\"}\n{"c": "{'
    assert json_record_end(data) == data.index(b"}\n")
    assert json_record_end(b'{"a": "x\\"}') == -1
    assert json_record_end(b"") == -1
    assert json_record_end(b'  {"a": [1, {"b": 2}]}') == 21
    assert json_record_end(b'[1] "s\\"}" {') == 9
    assert json_record_end(b"1 2 3") == 2
    assert json_record_end(b"1 2 3\n") == 4
    assert json_record_end(b'{"a": 1}\n12') == 7


_KEYS = st.sampled_from(["a", "A", "b", "c", "l", "}", '"', "\\"])
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.text(alphabet='ab{}[]"\\ \n\u00e9', max_size=6),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_KEYS, inner, max_size=4)),
    max_leaves=12,
)
_DOCS = st.lists(
    st.tuples(
        st.one_of(st.dictionaries(_KEYS, _VALUES, max_size=5), _VALUES),
        st.sampled_from(["", " ", "\n", "\r\n", "  \n\t"]),
        st.booleans(),
    ),
    max_size=6,
)


def _encode(docs: list[tuple[Any, str, bool]]) -> bytes:
    parts = []
    for doc, sep, pretty in docs:
        text = json.dumps(doc, indent=2 if pretty else None, ensure_ascii=False)
        # bare scalars need whitespace to end them
        parts.append(text + (sep or " " if not isinstance(doc, (dict, list, str)) else sep))
    return "".join(parts).encode()


@settings(max_examples=300, deadline=None)
@given(_DOCS, st.integers(0, 10_000))
def test_cut_at_record_end_gives_same_rows(docs: list[tuple[Any, str, bool]], cut: int) -> None:
    data = _encode(docs)
    paths: list[list[str | int | None]] = [["a"], ["l", None], ["b", "c"], [0], ["a", None, "b"]]
    whole = rows(json_rows(data, paths), len(paths))
    head = data[: min(cut, len(data))]
    end = json_record_end(head)
    first = rows(json_rows(data[: end + 1], paths), len(paths))
    second = rows(json_rows(data[end + 1 :], paths), len(paths))
    assert first + second == whole
    # the cut is after a complete document: everything before parses alone
    if end >= 0:
        assert data[end : end + 1].strip()


def _aq_pp(args: list[str], data: bytes, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(BIN / "aq_pp"), *args], input=data, capture_output=True,
                          env=dict(os.environ, **env), timeout=120)  # fmt: skip


def test_aq_pp_reads_json_documents_across_batches() -> None:
    """2.5 MB of documents (compact and pretty-printed) in 1 MB batches: no document is split."""
    docs = [
        json.dumps({"ID": i, "tags": {"list": [f"t{i}", "x"]}, "note": "a}\"b{"},
                   indent=2 if i % 3 == 0 else None)
        for i in range(20_000)
    ]  # fmt: skip
    data = "\n".join(docs).encode()
    args = ["-f,jsn", "-", "-d", "i:id:id", "s:tag:tags.list[*]", "s:note:note", "-o,notitle", "-"]
    out = _aq_pp(args, data, ESS_AQ_CHUNK_MB="1")
    assert out.returncode == 0, out.stderr
    want = b"".join(b'%d,"t%d",\n%d,"x",\n' % (i, i, i) for i in range(20_000))
    assert out.stdout == want  # note comes after the array: not in context (blank)


@pytest.mark.parametrize(("args", "code", "message"), [
    (["-f,jsn", "-", "-d", "s:a"], 7, b"needs a key path"),
    (["-f,jsn", "-", "-d", "s:a:b..c"], 7, b"bad key spec"),
    (["-f,jsn,esc", "-", "-d", "s:a:a"], 10, b"not supported yet"),
    (["-f,jsn", "-", "-d", "s:a:a"], 8, b"stdin, line 2"),
])  # fmt: skip
def test_aq_pp_json_errors(args: list[str], code: int, message: bytes) -> None:
    out = _aq_pp(args, b'{"a": 1}\n{"a": }\n')
    assert out.returncode == code and message in out.stderr, out.stderr
