from __future__ import annotations

import pytest

from ess.datastore.patterns import compile_matcher, literal_root, outermost_roots, split_patterns
from ess.errors import CategoryError


def test_star_crosses_directories() -> None:
    match = compile_matcher(["/home/u/*tutorials/woodworking/diy_woodworking/*browse*"])
    assert match("/home/u/EssentiaPublic/tutorials/woodworking/diy_woodworking/browse_1.gz")
    assert not match("/home/u/EssentiaPublic/tutorials/woodworking/diy_woodworking/purchase_1.gz")
    assert match.roots == ("/home/u/",)


def test_multiple_quoted_patterns_are_ored() -> None:
    parts = split_patterns('filetypes/b.zip filetypes/"b test.zip"')
    assert parts == ["filetypes/b.zip", "filetypes/b test.zip"]
    match = compile_matcher(parts)
    assert match("filetypes/b test.zip") and match("filetypes/b.zip")
    assert not match("filetypes/c.zip")


def test_exclude_narrows() -> None:
    match = compile_matcher(
        ["diy_wood*"],
        ["diy_woodworking/browse_2014090[1-5]*", "diy_woodworking/purchase_2014090[6-8]*"],
    )
    assert not match("diy_woodworking/browse_20140903.gz")
    assert match("diy_woodworking/browse_20140906.gz")
    assert not match("diy_woodworking/purchase_20140907.gz")
    assert match("diy_woodworking/purchase_20140909.gz")


def test_question_mark_and_classes() -> None:
    match = compile_matcher(["/d/log_2014090[1-3]?.gz"])
    assert match("/d/log_201409011.gz") and not match("/d/log_201409041.gz")


def test_literal_root_and_nested_roots() -> None:
    assert literal_root("/a/b/c*/d") == "/a/b/"
    assert literal_root("/a/b/file.txt") == "/a/b/file.txt"
    assert literal_root("*.zip") == ""
    assert outermost_roots(["/a/b/", "/a/", "/c/"]) == ("/a/", "/c/")


def test_unbalanced_quote_is_an_error() -> None:
    with pytest.raises(CategoryError, match="pattern"):
        split_patterns('a "b')
