"""Bad input gets a clear error (library exception and CLI exit code)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ess.aq.pp import compile_program
from ess.aq.rules import parse_argv
from ess.errors import AqDataError, AqSyntaxError, EssError, NotSupportedError

BIN = Path(sys.executable).parent
SPEC = ["-d", "i:a", "s:b", "f:c"]


def compile_args(*args: str) -> None:
    compile_program(parse_argv(["-f", "x.csv", *SPEC, *args]))


def test_syntax_error_points_at_token() -> None:
    with pytest.raises(AqSyntaxError) as err:
        compile_args("-eval", "i:y", "a + * 2")
    msg = str(err.value)
    assert "position 5" in msg and "'*'" in msg and "\n      ^" in msg


def test_unknown_column_named() -> None:
    with pytest.raises(AqSyntaxError, match=r"unknown column 'nope' at position 5"):
        compile_args("-filt", "a > nope")


def test_type_mismatch() -> None:
    with pytest.raises(AqSyntaxError, match="type mismatch"):
        compile_args("-eval", "s:y", "b + a")
    with pytest.raises(AqSyntaxError, match="cannot store I in a string column"):
        compile_args("-eval", "b", "a")


def test_unterminated_if() -> None:
    with pytest.raises(AqSyntaxError, match="unterminated -if"):
        compile_args("-if", "-filt", "a > 1", "-eval", "a", "1")


def test_else_without_if_and_unknown_option() -> None:
    with pytest.raises(AqSyntaxError, match="-else without a matching -if"):
        compile_args("-else")
    with pytest.raises(AqSyntaxError, match="unexpected argument 'bogus'"):
        compile_args("-filt", "a > 1", "bogus")


def test_unknown_function_and_unsupported() -> None:
    with pytest.raises(AqSyntaxError, match=r"unknown function Frob\(\)"):
        compile_args("-eval", "i:y", "Frob(a)")
    with pytest.raises(NotSupportedError, match="IpToCountry"):
        compile_args("-eval", "s:y", "IpToCountry(b)")


def test_imp_without_database_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # -imp is handed to the UDB import step (ess.udb.imp, the UDB issue); legacy syntax parses
    import ess.udb.imp  # noqa: F401  registers the UDB import sink, as aq_pp's entry point does

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ESS_WORK_DIR", str(tmp_path / ".conf"))
    src = tmp_path / "in.csv"
    src.write_text("1,x,2.5\n")
    with pytest.raises(EssError, match="'db'"):
        compile_program(parse_argv(["-f", str(src), *SPEC, "-ddef", "-udb", "-imp", "db:t"])).run()


def test_bad_row_without_eok_names_input_line_and_column(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("a,b,c\n1,x,2.5\nTBD,y,1\n")
    job = compile_program(parse_argv(["-f,+1", str(src), *SPEC, "-o", str(tmp_path / "o")]))
    with pytest.raises(AqDataError) as err:
        job.run()
    assert f"{src}, line 3, field 1 (a, type I): cannot convert 'TBD'" in str(err.value)


def run_cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, TZ="UTC", LC_ALL="C")
    return subprocess.run([str(BIN / "aq_pp"), *args], input=stdin, capture_output=True,
                          env=env, timeout=60)  # fmt: skip


def test_cli_exit_codes(tmp_path: Path) -> None:
    bad = run_cli("-f", "-", *SPEC, stdin=b"1,x,2\nzz,y,3\n")
    assert bad.returncode == AqDataError.exit_code
    assert b"stdin, line 2" in bad.stderr
    ok = run_cli("-f,eok", "-", *SPEC, stdin=b"1,x,2\nzz,y,3\n")
    assert ok.returncode == 0
    assert ok.stdout == b'"a","b","c"\n1,"x",2\n'
    assert b"1 record(s) skipped" in ok.stderr
    quiet = run_cli("-f,eok,qui", "-", *SPEC, stdin=b"zz,y,3\n")
    assert quiet.returncode == 0 and quiet.stderr == b""
    missing = run_cli("-f", str(tmp_path / "none.csv"), *SPEC)
    assert missing.returncode != 0 and b"cannot open input file" in missing.stderr
    syntax = run_cli("-f", "-", *SPEC, "-filt", "a >")
    assert syntax.returncode == AqSyntaxError.exit_code
    assert b"unexpected end of expression" in syntax.stderr


def test_help_has_example() -> None:
    out = run_cli("-h")
    assert out.returncode == 0 and b"example:" in out.stdout


def test_unwritable_output_and_div_mismatch(tmp_path: Path) -> None:
    out = run_cli("-f", "-", *SPEC, "-o", str(tmp_path / "no" / "such" / "dir.csv"),
                  stdin=b"1,x,2\n")  # fmt: skip
    assert out.returncode == 7 and b"cannot open output file" in out.stderr
    div = ["-f,div", "-", "-d", "s:a", "sep: [", "s:b", "sep:]"]  # as the shell passes sep:' ['
    bad = run_cli(*div, stdin=b"x [y]\nno brackets here\n")
    assert bad.returncode == AqDataError.exit_code
    assert b"stdin, line 2: record does not match the column spec" in bad.stderr
    ok = run_cli("-f,div,eok,qui", "-", *div[2:], stdin=b"x [y]\nno brackets here\n")
    assert ok.returncode == 0 and ok.stdout == b'"a","b"\n"x","y"\n'


def test_records_with_too_many_fields() -> None:
    """Extra trailing fields are ignored (Essentia's default); with `nox` a longer record is an
    error naming its line, and eok skips it."""
    data = b"a,b\n1,2\n3,4,5\n6,7\n"
    default = subprocess.run(
        [str(BIN / "aq_pp"), "-f,+1", "-", "-d", "i:a", "i:b"], input=data, capture_output=True
    )
    assert default.returncode == 0 and default.stderr == b""
    assert default.stdout == b'"a","b"\n1,2\n3,4\n6,7\n'
    strict = subprocess.run(
        [str(BIN / "aq_pp"), "-f,+1,nox", "-", "-d", "i:a", "i:b"], input=data, capture_output=True
    )
    assert strict.returncode == AqDataError.exit_code
    assert b"stdin, line 3: more fields than the 2 columns of -d" in strict.stderr
    lenient = subprocess.run(
        [str(BIN / "aq_pp"), "-f,+1,nox,eok,qui", "-", "-d", "i:a", "i:b"],
        input=data,
        capture_output=True,
    )
    assert lenient.returncode == 0 and lenient.stderr == b""
    assert lenient.stdout == b'"a","b"\n1,2\n6,7\n'


@pytest.mark.parametrize(
    ("spec", "data", "kept"),
    [
        # a long record beside a short one: the separator total matches a clean file
        (["i:a", "i:b"], b"a,b\n1,2\n3,4,5\n6\n", b'"a","b"\n1,2\n3,4\n6,0\n'),
        (["i:a", "s:b"], b"a,b\n1,x\n3,y,z\n6\n", b'"a","b"\n1,"x"\n3,"y"\n6,\n'),
        (["s:a", "f:b"], b'a,b\n"q",1.5\n"r",2,3\n"s"\n', b'"a","b"\n"q",1.5\n"r",2\n"s",0\n'),
    ],
)
def test_long_record_is_found_whatever_its_neighbours(
    spec: list[str], data: bytes, kept: bytes
) -> None:
    out = subprocess.run(
        [str(BIN / "aq_pp"), "-f,+1,nox", "-", "-d", *spec], input=data, capture_output=True
    )
    assert out.returncode == AqDataError.exit_code
    assert b"stdin, line 3: more fields than the 2 columns of -d" in out.stderr
    # without nox the extra field is ignored, and the short record's missing field is empty
    out = subprocess.run(
        [str(BIN / "aq_pp"), "-f,+1", "-", "-d", *spec], input=data, capture_output=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == kept


@pytest.mark.parametrize("data", [b"1\n2,3\n", b"1\n", b"1\n2\n"])
def test_short_first_record_reads_missing_fields_as_empty(data: bytes) -> None:
    """A chunk whose first (or every) record is short once crashed the CSV reader."""
    out = subprocess.run(
        [str(BIN / "aq_pp"), "-f", "-", "-d", "i:a", "s:b", "-o,notitle", "-"],
        input=data,
        capture_output=True,
    )
    assert out.returncode == 0, out.stderr
    want = b"".join(
        b"%s,%s\n" % (r.split(b",")[0], b'"%s"' % r.split(b",")[1] if b"," in r else b"")
        for r in data.splitlines()
    )
    assert out.stdout == want


@pytest.mark.parametrize(("attrs", "code", "stdout", "stderr"), [
    ("-f,+1,eok=1", 0, b'"a"\n1\n2\n', b"1 record(s) skipped"),
    ("-f,+1,eok=1,qui=0", 0, b'"a"\n1\n2\n', b""),
    ("-f,+1,eok,qui=3", 0, b'"a"\n1\n2\n', b"1 record(s) skipped"),
    ("-f,+1,eok=0", 8, b'"a"\n', b"stdin: more than 0 input errors (eok=0)"),
    ("-f,+1,eok=1/100", 10, b"", b"eok=Num/Rows (an error rate): not supported yet"),
    ("-f,+1,eok=z", 7, b"", b"bad attribute 'eok=z'"),
])  # fmt: skip
def test_error_limits(attrs: str, code: int, stdout: bytes, stderr: bytes) -> None:
    out = subprocess.run([str(BIN / "aq_pp"), attrs, "-", "-d", "i:a"],
                         input=b"a\nx\n1\n2\n", capture_output=True)  # fmt: skip
    assert out.returncode == code, out.stderr
    assert out.stdout == stdout
    assert stderr in out.stderr if stderr else out.stderr == b""


@pytest.mark.parametrize("attrs", ["-f", "-f,sep=,", "-f,esc", "-f,nox", "-f,nox,eok"])
def test_error_line_counts_blank_lines_and_skipped_records(attrs: str) -> None:
    """Blank lines (skipped) and records dropped by nox,eok still count for the line number."""
    data = b"1,2\n\n\n5,6,7\n\n2,x\n"
    out = subprocess.run([str(BIN / "aq_pp"), attrs, "-", "-d", "s:a", "i:b"], input=data,
                         capture_output=True)  # fmt: skip
    if "eok" in attrs:
        assert out.returncode == 0 and b"1 record(s) skipped (input errors)" in out.stderr
    elif "nox" in attrs:
        assert b"stdin, line 4: more fields" in out.stderr
    else:
        assert b"stdin, line 6, field 2 (b, type I): cannot convert 'x'" in out.stderr, out.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["-bogus"],
        ["-f", "-", "-d", "i:a", "-bogus"],  # was taken as a column spec ("unknown column type")
        ["-f", "-", "-bogus", "-d", "i:a"],  # was taken as an input file name
        ["-f", "-", "-d", "i:a", "-filt", "a > 0", "-bogus,x", "y"],
    ],
)
def test_unknown_option_is_named(args: list[str]) -> None:
    out = run_cli(*args, stdin=b"1\n")
    assert out.returncode == AqSyntaxError.exit_code
    assert out.stderr == b"aq_pp: unknown option -bogus\n" and out.stdout == b""


def test_dash_words_that_are_values_still_parse() -> None:
    """A fixed argument may start with `-` (a negative number, `-` for stdout or discard)."""
    out = run_cli("-f", "-", "-d", "i:a", "-eval", "is:b", "-a", "-eval", "-", "a", "-o", "-",
                  stdin=b"3\n")  # fmt: skip
    assert out.returncode == 0 and out.stdout == b'"a","b"\n3,-3\n'


@pytest.mark.parametrize(
    ("expr", "column"),
    [('"abc', 1), ("b + 'abc", 5), ('b + "x\\"', 5), ('"ab" + "x" + "', 14)],
)
def test_unterminated_string_names_its_column(expr: str, column: int) -> None:
    with pytest.raises(AqSyntaxError) as err:
        compile_args("-eval", "s:y", expr)
    msg = str(err.value)
    assert msg.startswith(f"-eval: unterminated string at position {column} of the expression")
    assert msg.endswith("\n  " + " " * (column - 1) + "^")
    out = run_cli("-f", "-", *SPEC, "-eval", "s:y", expr)
    assert out.returncode == AqSyntaxError.exit_code
    assert out.stderr.startswith(f"aq_pp: -eval: unterminated string at position {column}".encode())


def test_ovar_of_a_column_that_is_no_variable() -> None:
    out = run_cli("-f", "-", *SPEC, "-ovar", "-", "-c", "a", stdin=b"1,x,2\n")
    assert out.returncode == AqSyntaxError.exit_code
    assert out.stderr == b"aq_pp: -ovar: column 'a' is not a -var variable\n"


def test_help_has_a_line_for_every_option() -> None:
    """`aq_pp --help` lists every option of the parser's table, each at the start of a line,
    and points nowhere into a source tree."""
    from ess.aq.rules import OPTIONS

    out = run_cli("--help")
    assert out.returncode == 0
    starts = {line.split()[0].split(",")[0].split("[")[0] for line in
              out.stdout.decode().splitlines() if line.startswith("  -")}  # fmt: skip
    names = {n for spec in OPTIONS.specs for n in (spec.name, *spec.aliases)} - {"-help", "--help"}
    assert names - starts == set()
    assert b"docs/" not in out.stdout and b".md" not in out.stdout
