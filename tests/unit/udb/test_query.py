"""aq_udb argv parsing and the rule compiler, on frames (no cluster)."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ess.errors import AqSyntaxError, NotSupportedError
from ess.udb.merge import K, R
from ess.udb.query import parse_argv
from ess.udb.rules import RulePlan
from ess.udb.spec import parse_spec

SPEC = parse_spec(
    "@PKey:\n s:country\n@Table:t\n s:name\n i:n\n s:extra\n@Var:\n i:counter\n",
    name="db",
    source="test",
)


def frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "country": ["P", "P", "Q", "Q", "Q"],
            "name": ["a", "b", "c", "d", "e"],
            "n": [1, 2, 3, 4, 5],
            "extra": [""] * 5,
            K: [1, 1, 2, 2, 2],
            R: [1, 2, 3, 4, 5],
        }
    )


def plan(argv: list[str], **var: int) -> RulePlan:
    req = parse_argv(["-exp", "db:t", *argv])
    return RulePlan("t", req.pp, req.rules, req.bvars, {"counter": 0, **var})


def test_parse_shapes() -> None:
    req = parse_argv(
        [
            "-exp,spec=x.spec",
            "db:t",
            "-sort,dec",
            "n",
            "-top",
            "3",
            "-o,notitle",
            "-",
            "-c",
            "country",
            "n",
            "-lim_key",
            "2",
        ]
    )
    assert (req.action, req.target, req.spec_file) == ("-exp", "db:t", "x.spec")
    assert (req.sort, req.sort_attrs, req.top, req.lim_key) == (["n"], ["dec"], 3, 2)
    assert req.out_attrs.notitle and req.columns == ["country", "n"]
    legacy = parse_argv(["-db", "db", "-exp_usr", "t", "-lim_usr", "1"])
    assert (legacy.action, legacy.target, legacy.lim_key) == ("-exp", "db:t", 1)


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["-sort"], "missing"),
        (["-if", "-filt", "n>1"], "missing -endif"),
        (["-pp", "t", "-eval", "n", "1"], "missing -endpp"),
        (["-endif"], "without -if"),
        (["-top", "x"], "expected a number"),
        (["bogus"], "unexpected argument"),
    ],
)
def test_parse_errors(argv: list[str], error: str) -> None:
    with pytest.raises(AqSyntaxError, match=error):
        parse_argv(["-exp", "db:t", *argv])


def test_mod_not_supported() -> None:
    with pytest.raises(NotSupportedError):
        parse_argv(["-exp", "db:t", "-mod", "roi"])


def test_if_else_eval_and_filter() -> None:
    out = plan(
        [
            "-if",
            "-filt",
            "n > 2",
            "-eval",
            "extra",
            '"big"',
            "-else",
            "-eval",
            "extra",
            '"small"',
            "-endif",
            "-filt",
            "n != 4",
        ]
    ).run(frame(), SPEC, writer=None)
    assert out.select("name", "extra").rows() == [
        ("a", "small"),
        ("b", "small"),
        ("c", "big"),
        ("e", "big"),
    ]


def test_bvar_counter_per_key_and_global_var() -> None:
    per_key = plan(
        [
            "-pp",
            "t",
            "-bvar",
            "counter",
            "0",
            "-eval",
            "counter",
            "counter + 1",
            "-eval",
            "n",
            "counter * 10",
            "-endpp",
        ]
    )
    assert not per_key.global_vars()
    assert per_key.run(frame(), SPEC, writer=None).get_column("n").to_list() == [10, 20, 10, 20, 30]
    glob = plan(["-eval", "counter", "counter + n", "-eval", "n", "counter"], counter=100)
    assert glob.global_vars()
    assert glob.run(frame(), SPEC, writer=None).get_column("n").to_list() == [
        101,
        103,
        106,
        110,
        115,
    ]


def test_goto_next_key_del_row_and_rownum() -> None:
    written: dict[str, pl.DataFrame] = {}

    def keep(key: str, stored: pl.DataFrame) -> None:
        written[key] = stored

    out = plan(
        [
            "-if",
            "-filt",
            "$RowNum == 2",
            "-goto",
            "next_key",
            "-endif",
            "-if",
            "-filt",
            'name == "a"',
            "-del_row",
            "-endif",
        ]
    ).run(frame(), SPEC, writer=keep)
    assert out.get_column("name").to_list() == ["c"]
    assert written["t"].get_column("name").to_list() == ["b", "c", "d", "e"]


def test_unsupported_var_update() -> None:
    with pytest.raises(NotSupportedError):
        plan(["-eval", "counter", "counter * 2"]).run(frame(), SPEC, writer=None)


@settings(deadline=None, max_examples=40)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3)), min_size=1, max_size=40),
    st.integers(1, 10),
    st.booleans(),
)
def test_top_pushdown_equals_full_sort(rows: list[tuple[int, int]], top: int, dec: bool) -> None:
    from ess.udb.query import sort_result
    from ess.udb.server import top_candidates

    # keys numbered by first appearance; rows of a key in insertion order (export order)
    firsts = {key: i for i, (key, _) in reversed(list(enumerate(rows)))}
    full = pl.DataFrame(
        {K: [firsts[k] for k, _ in rows], "v": [v for _, v in rows], "pos": list(range(len(rows)))}
    ).sort(K, maintain_order=True)
    want = sort_result(full, ["v"], dec).head(top)
    workers = [full.filter(pl.col(K) % 2 == w) for w in (0, 1)]  # keys split over 2 workers
    merged = pl.concat([top_candidates(w, ["v"], dec, top) for w in workers])
    got = sort_result(merged.sort(K, maintain_order=True), ["v"], dec).head(top)
    assert got.get_column("pos").to_list() == want.get_column("pos").to_list()


def test_pp_on_another_table_carries_var_per_key() -> None:
    spec = parse_spec(
        "@PKey:\n s:country\n@Table:t\n s:name\n i:n\n s:extra\n@Table:o\n i:m\n"
        "@Var:\n i:counter\n",
        name="db",
        source="test",
    )
    other = pl.DataFrame({"country": ["Q", "P", "Q"], "m": [5, 6, 7], K: [2, 1, 2], R: [9, 8, 10]})
    written: dict[str, pl.DataFrame] = {}

    def keep(key: str, stored: pl.DataFrame) -> None:
        written[key] = stored

    req = parse_argv(
        [
            "-exp",
            "db:t",
            "-pp",
            "o",
            "-bvar",
            "counter",
            "0",
            "-eval",
            "counter",
            "counter + 1",
            "-eval",
            "m",
            "m * 10",
            "-endpp",
            "-filt",
            "counter >= 2",
            "-eval",
            "n",
            "counter",
        ]
    )
    plan = RulePlan("t", req.pp, req.rules, req.bvars, {"counter": 0})
    assert not plan.global_vars()
    out = plan.run(frame(), spec, writer=keep, others=lambda name: other if name == "o" else None)
    assert out.select("country", "n").rows() == [("Q", 2), ("Q", 2), ("Q", 2)]
    assert sorted(written["o"].get_column("m").to_list()) == [50, 60, 70]


def test_unknown_option_and_unterminated_string() -> None:
    """The option table aq_udb shares with aq_pp names an unknown option; a value that only
    looks like an option (a negative number) is still a value."""
    with pytest.raises(AqSyntaxError, match=r"^unknown option -bogus$"):
        parse_argv(["-exp", "db:t", "-bogus"])
    with pytest.raises(AqSyntaxError, match=r"^unknown option -bogus$"):
        parse_argv(["-exp", "db:t", "-c", "name", "-bogus"])
    req = parse_argv(["-exp", "db:t", "-var", "counter", "-1", "-o,sep=,", "-"])
    assert req.var_sets == [("counter", "-1")] and req.out_attrs.sep == ","
    with pytest.raises(AqSyntaxError, match="unterminated string at position 7"):
        plan(["-eval", "extra", '"x" + "y']).run(frame(), SPEC, writer=None)


# ---------------------------------------------------------------- fuzz (docs/reliability.md)
HOSTILE_SPEC = parse_spec(
    "@PKey:\n s:k\n@Table:t\n s:s\n i:i\n is:si\n l:l\n ls:sl\n f:f\n ip:ip\n"
    "@Var:\n i:cnt\n f:fv\n",
    name="db",
    source="test",
)
_INTS = [0, 1, 4294967295, 2**31, 7]
_LONGS = [2**64 - 1, 2**63, 0, 1, 18446744073709551615]
_SIGNED = [-(2**63), 2**63 - 1, -1, 0, 5]
_FLOATS = [float("nan"), float("inf"), -0.0, 1e308, -1e-320]
_TEXTS = ["", "\x00", "caf\ufffd", "2014.02.30.00.00.00", "x" * 70000]


def hostile_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "k": ["a", "a", "b", "b", "c"],
            "s": _TEXTS,
            "i": pl.Series(_INTS, dtype=pl.UInt32),
            "si": pl.Series([-(2**31), 2**31 - 1, -1, 0, 3], dtype=pl.Int32),
            "l": pl.Series(_LONGS, dtype=pl.UInt64),
            "sl": pl.Series(_SIGNED, dtype=pl.Int64),
            "f": _FLOATS,
            "ip": ["1.2.3.4", "", "::1", "300.1.1.1", "x"],
            K: [1, 1, 2, 2, 3],
            R: [1, 2, 3, 4, 5],
        }
    )


def _udb_rules() -> st.SearchStrategy[list[str]]:
    from tests.unit.aq.fuzzing import expressions, typed_expressions

    cols = ["s", "i", "si", "l", "sl", "f", "ip", "cnt", "fv", "$RowNum"]
    expr = st.one_of(
        typed_expressions(["i", "si", "l", "sl", "f", "cnt", "fv"], ["s", "ip"]), expressions(cols)
    )
    target = st.sampled_from(["s", "i", "si", "l", "sl", "f", "ip", "cnt", "fv", "k", "nope"])
    bvar_values = st.sampled_from(["0", "1e400", "nan", "x", "18446744073709551616"])
    rule = st.one_of(
        st.tuples(st.just("-eval"), target, expr),
        st.tuples(st.just("-filt"), expr),
        st.tuples(st.just("-bvar"), st.sampled_from(["cnt", "fv", "s"]), bvar_values),
        st.tuples(st.just("-if"), st.just("-filt"), expr, st.just("-del_row"), st.just("-endif")),
        st.tuples(st.just("-goto"), st.sampled_from(["next_key", "next_row", "bogus"])),
    )
    return st.lists(rule, max_size=3).map(lambda rules: [w for r in rules for w in r])


@settings(deadline=None, max_examples=600, derandomize=True, database=None)
@given(_udb_rules())
def test_fuzz_rules_fail_only_with_ess_errors(words: list[str]) -> None:
    """The rules aq_udb runs on the workers, over hostile stored values: a frame out, or an
    EssError (one line with its exit code), never another exception."""
    from ess.errors import EssError

    try:
        req = parse_argv(["-exp", "db:t", *words])
        plan = RulePlan("t", req.pp, req.rules, req.bvars, {"cnt": 0, "fv": 0.0})
        plan.run(hostile_frame(), HOSTILE_SPEC, writer=None)
    except EssError as exc:
        assert "\n" not in str(exc).split("\n  ")[0], str(exc)  # the caret lines are indented


def test_huge_limits_mean_no_limit() -> None:
    """`-top 99999999999999999999` used to end in OverflowError when the frame was cut."""
    req = parse_argv(["-exp", "db:t", "-top", "99999999999999999999", "-lim_rec", "1" + "0" * 30])
    assert req.top == req.lim_rec == 2**63 - 1
    assert frame().head(req.top).height == 5
