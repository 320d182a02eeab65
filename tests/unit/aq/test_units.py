"""Unit tests of the aq_pp pieces: formatter, argv parser (legacy aliases), functions, reader."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ess.aq.native import count_byte, count_pair, native_library
from ess.aq.numfmt import format_series
from ess.aq.pp import compile_program
from ess.aq.reader import div_regex
from ess.aq.rules import Eval, If, Imp, MapF, Output, parse_argv

BIN = Path(sys.executable).parent


@pytest.fixture(params=["native", "polars"])
def formatter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run a formatter test with the C helper and with the pure-Polars fallback."""
    monkeypatch.setenv("ESS_NATIVE", "1" if request.param == "native" else "0")
    native_library.cache_clear()
    if request.param == "native":  # the project installs a C compiler: the helper must build
        assert native_library() is not None
    else:
        assert native_library() is None
    yield request.param
    native_library.cache_clear()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=True, width=64), min_size=1))
def test_format_matches_c_printf(formatter: str, values: list[float]) -> None:
    got = format_series(pl.Series(values, dtype=pl.Float64)).to_list()
    assert got == [f"{v:.17g}" for v in values]


def test_format_large_series(formatter: str) -> None:
    """A large series (300,000 values), magnitudes from 1e-7 to 1e18."""
    n = 300_000
    values = [((i * 2654435761) % 10**9) / 10 ** (i % 26 - 8) for i in range(n)]
    values[::7] = [-v for v in values[::7]]
    got = format_series(pl.Series(values, dtype=pl.Float64))
    assert got.to_list() == [f"{v:.17g}" for v in values]


def test_format_nan_sign_nulls_and_g6(formatter: str) -> None:
    nan = float("nan")
    values = [nan, -nan, None, 2.5, -0.0, 1e-300, 123456.5, 5e-324]
    got = format_series(pl.Series(values, dtype=pl.Float64)).to_list()
    # C prints the sign of a NaN (0.0/0.0 is -nan on x86), Python does not
    assert got == [
        "nan",
        "-nan",
        None,
        "2.5",
        "-0",
        "1e-300",
        "123456.5",
        "4.9406564584124654e-324",
    ]
    assert format_series(pl.Series([123456.5, 0.1]), 6).to_list() == ["123456", "0.1"]


def test_count_byte_matches_bytes_count(formatter: str) -> None:
    data = b'a,"b"\n' * 1000 + b"x,y"
    for byte in (b",", b"\n", b'"', b"z"):
        assert count_byte(data, byte) == data.count(byte)
        assert count_byte(data, byte, 0, 777) == data.count(byte, 0, 777)
        assert count_byte(memoryview(data)[3:], byte) == data[3:].count(byte)
    for size in (0, 1, 254, 255, 256, 511, 6003):  # around the 255-byte blocks of the C loop
        part = memoryview(data)[:size]
        assert count_pair(part, b"\n", b'"') == (data[:size].count(b"\n"), data[:size].count(b'"'))


def test_format_dictionary_path_keeps_negative_zero() -> None:
    values = [1.5, -0.0, 0.0, 99.91] * 2000
    got = format_series(pl.Series(values)).to_list()
    assert got == [f"{v:.17g}" for v in values]


def test_format_g6() -> None:
    values = [99.91, 1e-5, 123456789.0, 0.5]
    assert format_series(pl.Series(values), 6).to_list() == [f"{v:g}" for v in values]


_CELLS = st.tuples(
    st.none() | st.text(alphabet='ab",\n\t|é', max_size=6),
    st.none() | st.integers(-(2**63), 2**63 - 1),
    st.none() | st.integers(0, 2**64 - 1),
    st.none() | st.floats(width=64),
)


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(_CELLS, min_size=1, max_size=25),
    quoted=st.booleans(),
    fmt_g=st.booleans(),
    sep=st.sampled_from([",", "\t", "|"]),
)
def test_native_csv_rows_match_polars_rows(
    rows: list[tuple[object, ...]], quoted: bool, fmt_g: bool, sep: str
) -> None:
    """The C row renderer writes exactly the bytes of the Polars expressions it replaces."""
    from ess.aq import writer
    from ess.aq.rules import OutputAttrs

    schema = {"s": pl.String, "i": pl.Int64, "u": pl.UInt64, "f": pl.Float64}
    df = pl.DataFrame(rows, schema=schema, orient="row").with_columns(ip=pl.col("s"))
    cols = [writer.OutCol(n, n, t) for n, t in [("s", "S"), ("i", "I"), ("u", "L"),
                                                 ("f", "F"), ("ip", "IP")]]  # fmt: skip
    attrs = OutputAttrs(sep=sep, fmt_g=fmt_g, quoted=quoted)
    native = writer._render_native(df, cols, attrs)
    assert native is not None
    assert bytes(native) == writer._render_polars(df, cols, attrs)
    with_ends = writer.render_rows_with_ends(df, cols, attrs)
    assert with_ends is not None and with_ends[1] is not None
    # each row's end, even where a string field holds a newline
    lengths = [len(writer._render_polars(df.slice(i, 1), cols, attrs)) for i in range(df.height)]
    assert with_ends[1].to_list() == list(itertools.accumulate(lengths))


def test_legacy_aliases() -> None:
    argv = ["-f", "a", "-f", "b", "-d", "s:x", "-evlc", "s:y", "x", "-mapfrx", "x", "(.*)"]
    argv += ["-o", "out", "-notitle", "-ddef", "-udb", "-spec", "u.spec", "-imp", "db:t"]
    prog = parse_argv([*argv, "-rownum", "5"])
    assert prog.main.files == ["a", "b"]
    evl, mapf, out, imp = prog.chain
    assert isinstance(evl, Eval) and isinstance(mapf, MapF) and "rx" in mapf.attrs
    assert isinstance(out, Output) and out.attrs.notitle
    assert isinstance(imp, Imp) and imp.attrs == ["spec=u.spec"] and prog.ddef
    assert prog.rownum_start == 5


def test_if_structure_and_c_attachment() -> None:
    prog = parse_argv(["-d", "i:a", "-if", "-filt", "a>1", "-eval", "a", "1", "-elif", "-true",
                       "-else", "-o", "-", "-endif", "-o", "f", "-c", "a"])  # fmt: skip
    block, out = prog.chain
    assert isinstance(block, If) and len(block.branches) == 2 and len(block.orelse or []) == 1
    assert isinstance(out, Output) and out.columns == ["a"]


def run(args: list[str], data: bytes) -> bytes:
    env = dict(os.environ, TZ="UTC", LC_ALL="C")
    proc = subprocess.run([str(BIN / "aq_pp"), *args], input=data, capture_output=True,
                          env=env, timeout=60, check=True)  # fmt: skip
    return proc.stdout


def _djb2(text: str) -> int:
    h = 5381
    for b in text.lower().encode():
        h = (h * 33 + b) & 0xFFFFFFFF
    return h


def test_shash_is_djb2_of_lower_case() -> None:
    words = ["Philippines", "a", "MiXeD case words", "x" * 70]
    data = "".join(f'"{w}"\n' for w in words).encode()
    out = run(["-f", "-", "-d", "s:w", "-eval", "l:h", "SHash(w)", "-c", "h"], data)
    assert out.decode().split()[1:] == [str(_djb2(w)) for w in words]


def test_numcmp() -> None:
    out = run(["-f", "-", "-d", "f:a", "f:b", "-eval", "i:r", "NumCmp(a, b, 0.5)", "-c", "r"],
              b"1.0,1.4\n1.0,1.6\n2,1.5\n")  # fmt: skip
    assert out == b'"r"\n1\n0\n1\n'


def test_integer_semantics_and_truncation() -> None:
    out = run(["-f", "-", "-d", "is:a", "-eval", "is:q", "a / 2", "-eval", "is:r", "a % 3",
               "-eval", "is:t", "a * 1.5", "-eval", "i:u", "0 - 1", "-c", "q", "r", "t", "u"],
              b"-7\n7\n")  # fmt: skip
    assert out == b'"q","r","t","u"\n-3,-1,-10,4294967295\n3,1,10,4294967295\n'


def test_left_to_right_without_precedence() -> None:
    out = run(["-f", "-", "-d", "i:a", "-eval", "i:r", "1 + 2 * 3", "-c", "r"], b"0\n")
    assert out == b'"r"\n9\n'


def test_div_regex_first_occurrence() -> None:
    from ess.aq.colspec import ColSpec
    from ess.aq.rules import Sep

    regex = div_regex([ColSpec("S", "a"), Sep(" "), ColSpec("S", "b"), Sep('"')])
    frame = pl.DataFrame({"l": ['x y z"tail']}).select(pl.col("l").str.extract_groups(regex))
    assert frame.unnest("l").row(0) == ("x", "y z")


def test_rt_mapping_and_mapc() -> None:
    out = run(["-f", "-", "-d", "s:v", "-mapf", "v", "%%k:@n%%-%%rest%%", "-mapc", "s:o",
               "%%rest%%/%%k%%", "-c", "o"], b"12-ab\n7-q\n")  # fmt: skip
    assert out == b'"o"\n"ab/12"\n"q/7"\n'


def test_cmb_ncas_and_req(tmp_path: Path) -> None:
    look = tmp_path / "l.csv"
    look.write_text("ALICE,1\nbob,2\n")
    out = run(["-f", "-", "-d", "s:name", "-cmb,ncas,req", str(look), "s:name", "i:n"],
              b"alice\ncarol\nBob\n")  # fmt: skip
    assert out == b'"name","n"\n"alice",1\n"Bob",2\n'


def test_rownum_and_random_and_ovar() -> None:
    out = run(["-f", "-", "-d", "i:a", "-rownum", "10", "-var", "i:n", "0", "-eval", "n",
               "n + 1", "-eval", "i:r", "$RowNum", "-eval", "i:p", "$Random > 0",
               "-o", "-", "-c", "r", "p", "-ovar", "-"], b"5\n6\n")  # fmt: skip
    assert out == b'"r","p"\n10,1\n11,1\n"n"\n2\n'


def test_stdin_batches_bounded_memory(tmp_path: Path) -> None:
    """~150 MB through stdin with 8 MB chunks: peak RSS stays far below the input size."""
    gen = ("import sys\nline=b'u12345,1400000000,42,12.5\\n'*100000\n"
           "[sys.stdout.buffer.write(line) for _ in range(60)]")  # fmt: skip
    # aq_pp runs under a small Python parent that reports its children's peak RSS: a child
    # forked straight from this (large) pytest process would report pytest's peak instead
    meter = ("import resource,subprocess,sys\n"
             "code = subprocess.run(sys.argv[1:]).returncode\n"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
             "sys.exit(code)")  # fmt: skip
    env = dict(os.environ, ESS_AQ_CHUNK_MB="8")
    producer = subprocess.Popen([sys.executable, "-c", gen], stdout=subprocess.PIPE)
    consumer = subprocess.run(
        [sys.executable, "-c", meter, str(BIN / "aq_pp"), "-f", "-", "-d", "s:k", "i:t", "i:a",
         "f:p", "-filt", "p > 1.0", "-o,notitle", os.devnull],
        stdin=producer.stdout, env=env, capture_output=True,
    )  # fmt: skip
    assert producer.stdout is not None
    producer.stdout.close()
    producer.wait()
    assert consumer.returncode == 0, consumer.stderr
    peak_mb = int(consumer.stdout) / 1024
    assert peak_mb < 400, f"peak RSS {peak_mb:.0f} MB"


def test_mapped_file_batches_bounded_memory(tmp_path: Path) -> None:
    """~230 MB from a file, mapped 8 MB at a time: each batch's map goes with it (a leak
    of the maps alone would pass 400 MB: the process starts near 200 MB)."""
    data = tmp_path / "big.csv"
    with open(data, "wb") as out:
        for _ in range(90):
            out.write(b"u12345,1400000000,42,12.5\n" * 100000)
    meter = ("import resource,subprocess,sys\n"
             "code = subprocess.run(sys.argv[1:]).returncode\n"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
             "sys.exit(code)")  # fmt: skip
    env = dict(os.environ, ESS_AQ_CHUNK_MB="8")
    done = subprocess.run(
        [sys.executable, "-c", meter, str(BIN / "aq_pp"), "-f", str(data), "-d", "s:k", "i:t",
         "i:a", "f:p", "-filt", "p > 1.0", "-o,notitle", os.devnull],
        env=env, capture_output=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    peak_mb = int(done.stdout) / 1024
    assert peak_mb < 400, f"peak RSS {peak_mb:.0f} MB"


@pytest.mark.parametrize("bad", ["-f,bogus", "-o,bogus"])
def test_unknown_attributes(bad: str) -> None:
    from ess.errors import AqSyntaxError

    with pytest.raises(AqSyntaxError, match="unknown"):
        compile_program(parse_argv([bad, "x", "-d", "s:a"]))


def test_clipstr_elements() -> None:
    specs = ["2>/", "2->/", "!2>/", "2</", "2-</", "!2</", "3>", "2>/;1<"]
    args = ["-f", "-", "-d", "s:v"]
    for i, spec in enumerate(specs):
        args += ["-eval", f"s:c{i}", f'ClipStr(v, "{spec}")']
    out = run([*args, "-o,notitle", "-", "-c", *[f"c{i}" for i in range(len(specs))]],
              b'"/A/B/C"\n')  # fmt: skip
    assert out == b'"/A/","/A","B/C","/B/C","B/C","/A","/A/","/"\n'


def test_rxmap_and_rxreplace_write_columns() -> None:
    rxmap = 'RxMap(v, "^\\(.*\\) ABC \\(.*\\)$", o1, "%%1%%", o2, "%%2%%-%%1%%")'
    args = ["-f", "-", "-d", "s:v", "-eval", "s:o1", '""', "-eval", "s:o2", '""',
            "-eval", "i:r", rxmap, "-eval", "s:w", '""',
            "-eval", "i:n", 'RxReplace(v, "[a-z]", w, "<%%0%%>", all)']  # fmt: skip
    out = run(args, b'"x ABC y"\n"nope"\n')
    assert out == (b'"v","o1","o2","r","w","n"\n"x ABC y","x","y-x",1,"<x> ABC <y>",2\n'
                   b'"nope",,,0,"<n><o><p><e>",4\n')  # fmt: skip


def test_cmb_all_multiplies_rows(tmp_path: Path) -> None:
    look = tmp_path / "l.csv"
    look.write_text("a,1\na,2\nc,3\n")
    out = run(["-f", "-", "-d", "s:k", "-cmb,all", str(look), "s:k", "i:n"], b"a\nb\n")
    assert out == b'"k","n"\n"a",1\n"a",2\n"b",0\n'


def test_record_end_skips_newlines_inside_quotes() -> None:
    from ess.aq.batches import record_end

    assert record_end(b'a,"x\ny"\nb,"p\nq', quoted=True) == 7
    assert record_end(b'a,"x\ny"\nb,"p\nq', quoted=False) == 12
    assert record_end(b'a,"say ""hi""\nthere"\n', quoted=True) == 20


def test_quoted_newline_across_batches(tmp_path: Path) -> None:
    rows = [f'{i},"line one\nline two {i}"\n' for i in range(200000)]
    src = tmp_path / "in.csv"
    src.write_text("".join(rows))
    env = dict(os.environ, ESS_AQ_CHUNK_MB="1")
    args = [str(BIN / "aq_pp"), "-f", str(src), "-d", "i:n", "s:t", "-o,notitle", "-", "-c", "n"]
    proc = subprocess.run(args, capture_output=True, env=env, timeout=120, check=True)
    assert proc.stdout == "".join(f"{i}\n" for i in range(200000)).encode()


def test_qrydec_urldec_urlenc() -> None:
    qry = 'QryDec(v, "beg=?", c1, "k1", c2, "k1", zero, c3, "k2")'
    args = ["-f", "-", "-d", "s:v", "-eval", "s:c1", '"old"', "-eval", "s:c2", '""',
            "-eval", "s:c3", '""', "-eval", "i:n", qry,
            "-eval", "s:e", 'UrlEnc("a b/é")', "-eval", "s:d", "UrlDec(c3)"]  # fmt: skip
    args += ["-o,notitle", "-"]
    out = run(args, b'"/p?k1=a&k1=b&k2=x%2520y+z%C3%A9"\n"/q"\n').decode()
    assert out.splitlines() == [
        '"/p?k1=a&k1=b&k2=x%2520y+z%C3%A9","a","b","x%20y zé",3,"a%20b%2F%C3%A9","x y zé"',
        '"/q","old",,,0,"a%20b%2F%C3%A9",',
    ]


def test_set_assigns_by_runtime_name() -> None:
    data = b'"n",1,2.5\n"v",3,4.5\n"q",5,6.5\n"a",0,0\n'
    args = ["-f", "-", "-d", "s:which", "i:n", "f:v", "-eval", "s:a", '""']
    args += ["-eval", "i:r", "Set(which, 9.7)", "-eval", "i:s", 'Set(which, "txt")']
    out = run(args, data)
    assert out.decode().splitlines() == [
        '"which","n","v","a","r","s"',
        '"n",9,2.5,,1,0', '"v",3,9.6999999999999993,,1,0', '"q",5,6.5,,0,0', '"a",0,0,"txt",0,1',
    ]  # fmt: skip


def test_dead_columns_are_not_computed() -> None:
    base = ["-f", "x", "-d", "i:a", "-var", "i:s", "0", "-eval", "i:dead", "a / 2",
            "-eval", "i:live", "a + 1", "-eval", "s", "s + live"]  # fmt: skip
    pruned = compile_program(parse_argv([*base, "-ovar", "-"]))
    kept = compile_program(parse_argv([*base, "-o", "-"]))  # `-o` prints every column
    assert len(kept.plan.steps) == len(pruned.plan.steps) + 2  # the dead -eval and the -o
    head = base[:7]  # input spec and the -var
    call = compile_program(parse_argv([*head, "-eval", "i:t", 'ToI("x")', "-ovar", "-"]))
    plain = compile_program(parse_argv([*head, "-eval", "i:t", "a", "-ovar", "-"]))
    assert len(call.plan.steps) == len(plain.plan.steps) + 1  # a call may fail: never pruned


def test_inputs_read_only_by_dead_columns_are_not_read() -> None:
    """`b` only feeds a dead column: it is not in `used`, so the reader only validates it;
    `c` feeds a chain of columns that a live one reads, so it stays."""
    argv = ["-f", "x", "-d", "i:a", "i:b", "i:c", "-var", "i:s", "0",
            "-eval", "i:d1", "b / 2", "-eval", "i:l1", "c + 1", "-eval", "i:l2", "l1 * 2",
            "-eval", "i:t", "l2 + a", "-eval", "s", "s + t", "-ovar", "-"]  # fmt: skip
    comp = compile_program(parse_argv(argv)).plan
    assert "b" not in comp.used and "d1" not in comp.used
    assert {"a", "c", "l1", "l2", "t"} <= comp.used
    data = b"1,2,3\n4,5,6\n"
    out = subprocess.run([str(BIN / "aq_pp"), *argv[:1], "-", *argv[2:]], input=data,
                         capture_output=True, check=True).stdout  # fmt: skip
    assert out == b'"s"\n27\n'  # ((3+1)*2+1) + ((6+1)*2+4)


def test_ordered_map_keeps_order_and_raises_in_turn() -> None:
    import time

    from ess.aq.runner import ordered_map

    def slow_square(x: int) -> int:
        time.sleep(0.02 if x % 2 == 0 else 0)  # later items finish first
        if x == 5:
            raise ValueError("five")
        return x * x

    got: list[int] = []
    with pytest.raises(ValueError, match="five"):
        for value in ordered_map(slow_square, range(10), 3):
            got.append(value)
    assert got == [0, 1, 4, 9, 16]


def test_bad_record_in_a_later_chunk_names_its_line(tmp_path: Path) -> None:
    """Chunks are parsed two at a time: the error still names the right line, after the
    earlier chunks' rows were written."""
    rows = [f"{i},{i * 0.5}" for i in range(120_000)]
    rows[100_000] = "100000,oops"
    data = tmp_path / "in.csv"
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out.csv"
    env = dict(os.environ, ESS_AQ_CHUNK_MB="1")
    done = subprocess.run(
        [str(BIN / "aq_pp"), "-f", str(data), "-d", "i:a", "f:b", "-o,notitle", str(out)],
        env=env, capture_output=True,
    )  # fmt: skip
    assert done.returncode == 8
    assert f"{data}, line 100001, field 2 (b, type F): cannot convert 'oops'".encode() in (
        done.stderr
    )
    written = out.read_bytes().decode().splitlines()
    assert 0 < len(written) <= 100_000  # whole earlier chunks, in order, then the stop
    assert written == [f"{i},{i * 0.5:.17g}" for i in range(len(written))]


def test_running_variable_read_per_row_and_only_at_the_end() -> None:
    """A variable some rule reads gets per-row values; one only -ovar prints just its total."""
    head = ["-f", "-", "-d", "i:a", "-var", "i:n", "0", "-var", "i:k", "5",
            "-eval", "n", "n + 1", "-eval", "k", "k - a"]  # fmt: skip
    out = run([*head, "-eval", "i:m", "n * 10", "-o", "-", "-c", "m", "-ovar", "-"],
              b"3\n4\n2\n")  # fmt: skip
    assert out == b'"m"\n10\n20\n30\n"n","k"\n3,-4\n'
    shown = run([*head, "-o", "-", "-c", "a", "k", "-ovar", "-"], b"3\n4\n2\n")
    assert shown == b'"a","k"\n3,2\n4,-2\n2,-4\n"n","k"\n3,-4\n'


def test_unbuildable_helper_falls_back_to_the_same_output(tmp_path: Path) -> None:
    """No C helper (cache directory unusable, or ESS_NATIVE=0): same bytes, exit 0."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    argv = [str(BIN / "aq_pp"), "-f", "-", "-d", "s:a", "f:b", "is:c", "-eval", "f:d", "b / 3"]
    data = b'x,1.1,3\n"q""uote",2.5,-4\n,0.1,0\n'
    outs = []
    for extra in ({}, {"ESS_NATIVE_DIR": str(blocker / "sub")}, {"ESS_NATIVE": "0"}):
        env = dict(os.environ, **extra)
        done = subprocess.run(argv, input=data, env=env, capture_output=True, check=True)
        outs.append(done.stdout)
    assert outs[0] == outs[1] == outs[2]
    assert outs[0].splitlines()[2] == b'"q""uote",2.5,-4,0.83333333333333337'


def test_legacy_qryparmext_is_qrydec() -> None:
    """`QryParmExt(Val, "attrs&Key:Col&...")` (<= 1.2.4) gives what the QryDec form gives."""
    data = b'"/p?a=1&b=x%20y&a=2"\n"/q?c=3"\n'
    spec = ["-f", "-", "-d", "s:u", "-eval", "s:a", '"-"', "-eval", "s:b", '"-"']
    legacy = run([*spec, "-eval", "i:n", 'QryParmExt(u, "beg=?,zero&a:a&b:b")'], data)
    modern = run([*spec, "-eval", "i:n", 'QryDec(u, "beg=?,zero", a, "a", b, "b")'], data)
    assert legacy == modern == b'"u","a","b","n"\n"/p?a=1&b=x%20y&a=2","1","x y",2\n"/q?c=3",,,0\n'
    keep = run([*spec, "-eval", "i:n", 'QryParmExt(u, "b:b")'], data)  # no attributes
    assert keep.endswith(b'"/q?c=3","-","-",0\n')
