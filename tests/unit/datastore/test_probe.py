from __future__ import annotations

import os

from ess.datastore.probe import analyse, column_type, detect_delimiter, looks_binary


def test_column_types() -> None:
    assert column_type(["1", "2", ""]) == "I"
    assert column_type(["1", str(2**33)]) == "L"
    assert column_type(["-1", "2"]) == "IS"
    assert column_type(["-1", str(-(2**40))]) == "LS"
    assert column_type(["1.5", "2"]) == "F"
    assert column_type(["10.0.0.1", "192.168.1.255"]) == "IP"
    assert column_type(["12", "TBD"]) == "S"
    assert column_type(["", ""]) == "S"


def test_woodworking_browse_shape() -> None:
    sample = (
        b"eventDate,userID,articleID\r\n2014-09-12T00:00:10,8917,50\r\n"
        b"2014-09-12T00:00:11,2410,TBD\r\n"
    )
    delim, spec, header, lines = analyse(sample, complete=True)
    assert (delim, spec, header) == (",", "S:eventDate I:userID S:articleID", True)
    assert lines[0] == "eventDate,userID,articleID"


def test_no_header_names_columns_c1_to_cn() -> None:
    delim, spec, header, _ = analyse(b"1|a|2.5\n2|b|3\n", complete=True)
    assert (delim, spec, header) == ("|", "I:c1 S:c2 F:c3", False)


def test_tab_and_quoted_fields() -> None:
    assert detect_delimiter(["a\tb\tc", "1\t2\t3"]) == "\t"
    delim, spec, _, _ = analyse(b'name,city\n"Doe, J","Paris"\n"Roe, R","Oslo"\n', complete=True)
    assert (delim, spec) == (",", "S:name S:city")


def test_truncated_last_line_is_ignored() -> None:
    _, spec, _, lines = analyse(b"n,v\n1,2\n3,4\n5,x", complete=False)
    assert spec == "I:n I:v" and lines[-1] == "3,4"


def test_bad_header_names_are_sanitised() -> None:
    _, spec, _, _ = analyse(b"first name,2nd\nab,1\ncd,2\n", complete=True)
    assert spec == "S:first_name I:c2nd"


def test_bare_carriage_returns_end_lines() -> None:
    delim, spec, header, lines = analyse(b"a,b\r1,2\r3,4\r", complete=True)
    assert (delim, spec, header, lines) == (",", "I:a I:b", True, ["a,b", "1,2", "3,4"])


def test_binary_data_is_told_from_text() -> None:
    assert looks_binary(os.urandom(4096))
    assert looks_binary(b"a,b\n1,\x002\n")
    assert not looks_binary("name,città\nJosé,Zürich\n".encode())
    assert not looks_binary(b"a\tb\r\n1\t2\r\n\x0c")
    assert not looks_binary(b"")
