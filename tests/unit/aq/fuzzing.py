"""Test support for fuzzing aq_pp and aq_udb: hostile values, argv shapes, expressions over the
function registry, and running the command line in-process the way a user's shell would.

The in-process runner calls the CLI entry (`ess.cli.aq_pp.main(argv)`) with stdin, stdout and
stderr redirected: the same code path a command takes, minus the process start-up, so
thousands of cases fit in CI.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import re
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from ess.aq.functions import FUNCTIONS

BIN = Path(sys.executable).parent

# exit codes the docs give aq_pp/aq_udb (src/ess/errors.py): ok, usage, aq, data, udb, not yet
DOCUMENTED_EXITS = frozenset({0, 2, 7, 8, 9, 10})

# CI: derandomized, so a red run is reproducible; HYPOTHESIS_PROFILE=big explores afresh
settings.register_profile(
    "aq-fuzz",
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "aq-fuzz-big",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
BIG = os.environ.get("HYPOTHESIS_PROFILE", "") == "big"


def fuzz_settings(examples: int) -> settings:
    """`examples` in CI; 20 times as many under HYPOTHESIS_PROFILE=big."""
    base = settings.get_profile("aq-fuzz-big" if BIG else "aq-fuzz")
    return settings(base, max_examples=examples * 20 if BIG else examples)


@dataclass(frozen=True)
class Result:
    code: int
    out: bytes
    err: str


def check_result(res: Result, tool: str, argv: list[str]) -> None:
    """A documented exit code; stderr: no traceback, no internal error, each message one line
    starting with the tool's name (an expression error adds the expression and a caret under
    it, both indented)."""
    shown = f"{tool} {argv!r} -> {res.code}\n{res.err}"
    assert res.code in DOCUMENTED_EXITS, shown
    assert "Traceback" not in res.err, shown
    assert "internal error" not in res.err, shown
    assert "Warning" not in res.err, shown  # Polars warnings never reach the user
    lines = res.err.splitlines()
    for i, line in enumerate(lines):
        assert line.startswith(f"{tool}: ") or (i > 0 and line.startswith("  ")), shown
    if res.code != 0:
        assert sum(line.startswith(f"{tool}: ") for line in lines) >= 1, shown
    # the run-time safety nets (ess.aq.failures) are for bugs: a value must not reach them
    assert not SAFETY_NET.search(res.err), shown
    assert not (tool == "aq_udb" and res.code == 8), shown


#: what the run-time mapping points print (aq_pp: a step over a batch; a reader)
SAFETY_NET = re.compile(r"lines \d+-\d+: |the batch from line \d+: |reading failed: ")


@contextlib.contextmanager
def _redirected(stdin: bytes) -> Iterator[tuple[io.BytesIO, io.BytesIO]]:
    out, err = io.BytesIO(), io.BytesIO()
    saved = sys.stdin, sys.stdout, sys.stderr
    streams = (
        io.TextIOWrapper(io.BytesIO(stdin)),
        io.TextIOWrapper(out, write_through=True),
        io.TextIOWrapper(err, write_through=True),
    )
    sys.stdin, sys.stdout, sys.stderr = streams
    try:
        yield out, err
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
        for stream in streams:  # keep the buffers open for reading
            with contextlib.suppress(ValueError):
                stream.flush()
                stream.detach()


@contextlib.contextmanager
def _fd2_captured() -> Iterator[io.BytesIO]:
    """What native code (a Rust panic message) writes to file descriptor 2 directly."""
    captured = io.BytesIO()
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured.write(tmp.read())


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:  # fmt: skip
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def run_inprocess(main: Callable[[list[str]], object], argv: list[str], stdin: bytes) -> Result:
    """Run a CLI entry (`main(argv)`) as the shell would, and collect its exit code and output
    (stderr: what Python wrote, then what native code wrote to the descriptor)."""
    code = 0
    with _fd2_captured() as native, _redirected(stdin) as (out, err), warnings.catch_warnings():
        # as a command shows them (pytest would record them): printed on stderr
        warnings.simplefilter("default")
        warnings.showwarning = _show_warning
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    gc.unfreeze()  # aq_pp freezes its start-up objects once per run; many runs here
    text = (err.getvalue() + native.getvalue()).decode("utf-8", "replace")
    return Result(code, out.getvalue(), text)


def run_pp(argv: list[str], stdin: bytes = b"") -> Result:
    from ess.cli.aq_pp import main

    return run_inprocess(main, argv, stdin)


def run_subprocess(tool: str, argv: list[str], stdin: bytes, env: dict[str, str]) -> Result:
    proc = subprocess.run(
        [str(BIN / tool), *argv], input=stdin, capture_output=True, env=env, timeout=120
    )
    return Result(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


# ---------------------------------------------------------------- values
HOSTILE = [
    b"", b"0", b"-0", b"-1", b"4294967295", b"4294967296", b"-2147483649",
    b"18446744073709551615", b"18446744073709551616", b"9223372036854775807",
    b"9223372036854775808", b"-9223372036854775808", b"-9223372036854775809",
    b"99999999999999999999999999", b"1e308", b"1e309", b"-1e309", b"1e-320", b"-0.0",
    b"nan", b"NaN", b"-nan", b"inf", b"-inf", b"Infinity", b"0x1F", b"1.5", b" 7 ", b"-",
    b"2014.02.30.00.00.00", b"2014.13.45.25.61.61", b"0000.00.00.00.00.00",
    b"2014.09.01.00.00.02", b"9999.12.31.23.59.59", b"2016.02.29.23.59.60",
    b"23/Nov/2014:03:07:23 -0800", b"\xff\xfe\xfa", b"\xc3\x28", b"caf\xc3\xa9",
    b"\x00", b"a\x00b", b"\r", b"x\r", b'"', b'"quoted"', b'"un', b"\\", b"a\\", b"%%v%%",
    b"(((", b"*?", b"1.2.3.4", b"::1", b"300.1.1.1",
]  # fmt: skip


def field_values() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.sampled_from(HOSTILE),
        st.binary(max_size=12),
        st.integers(min_value=-(2**70), max_value=2**70).map(lambda i: str(i).encode()),
        st.floats().map(lambda f: repr(f).encode()),
        st.sampled_from([b"x" * 70000, b"9" * 400]),  # longer than Essentia's 64 KB records
        st.text(max_size=8).map(lambda t: t.encode("utf-8", "surrogatepass")),
    )


def records(width: int) -> st.SearchStrategy[bytes]:
    row = st.lists(field_values(), min_size=max(width - 1, 0), max_size=width + 1)
    ending = st.sampled_from([b"\n", b"\r\n", b""])
    return st.lists(st.tuples(row, ending), max_size=6).map(
        lambda rows: b"".join(b",".join(r) + e for r, e in rows)
    )


# ---------------------------------------------------------------- argv pieces
TYPES = ["S", "I", "IS", "L", "LS", "F", "IP"]
INPUT_ATTRS = ["", ",eok", ",eok,qui", ",csv", ",sep=;", ",esc", ",nox", ",+1", ",eok=1",
               ",sep=\\x09", ",sep=\\xZZ", ",sep=\\xff", ",bogus"]  # fmt: skip
OUTPUT_ATTRS = ["", ",notitle", ",fmt_g", ",esc", ",noq", ",sep=|"]

INT_LITERALS = ["0", "1", "-1", "4294967296", "9223372036854775807", "9223372036854775808",
                "18446744073709551615", "18446744073709551616",
                "99999999999999999999999"]  # fmt: skip
FLOAT_LITERALS = ["0.0", "-0.0", "1e300", "1e308", "1e309", "2.5", "1e-320"]
STRING_LITERALS = ['""', '"abc"', '"(((" ', '"ab\\\\"', '"[z-a]"', '"%Q"', '"%Y-%m-%d %"',
                   '"Y.m.d.H.M.S"', '"d.b.Y.H.M.S.z"', '"ncas"', '"pcre"', '"rx_extended"',
                   '"all"', '"*"', '"\\xff"', '"a,\\nb"', '"%%1%%"', "'x'", '"\\0"']  # fmt: skip
FUNCTION_NAMES = sorted(FUNCTIONS)


@st.composite
def expressions(draw: st.DrawFn, columns: list[str], depth: int = 2) -> str:
    """An expression over the columns: literals, operators and calls of registered functions
    with plausible and implausible arguments (most are type errors: they must fail cleanly)."""
    leaf = st.one_of(
        st.sampled_from(columns or ["x"]),
        st.sampled_from(INT_LITERALS + FLOAT_LITERALS + STRING_LITERALS),
        st.sampled_from(["$RowNum", "$Random", "$CurSec", "ncas", "BEG", "SUB"]),
    )
    if depth <= 0:
        return draw(leaf)
    kind = draw(st.integers(0, 5))
    if kind <= 1:
        return draw(leaf)
    if kind == 2:
        op = draw(st.sampled_from(["+", "-", "*", "/", "%", "&", "|", "^", "==", "<", ">=",
                                   "&&", "||", "~==", "&="]))  # fmt: skip
        return (
            f"{draw(expressions(columns, depth - 1))} {op} {draw(expressions(columns, depth - 1))}"
        )
    if kind == 3:
        return f"-{draw(expressions(columns, depth - 1))}"
    name = draw(st.sampled_from(FUNCTION_NAMES))
    args = draw(st.lists(expressions(columns, depth - 1), max_size=4))
    return f"{name}({', '.join(args)})"


# well-typed calls, so that many cases get past the compiler and run over the values
NUM_CALLS = ["Abs({n})", "Min({n}, {n})", "Max({n}, {n})", "ToI({s})", "ToF({s})", "SLeng({s})",
             "DateToTime({s}, {fmt})", "GmDateToTime({s}, {fmt})", "SHash({s})",
             "RxCmp({s}, {rx})", "RxCmp({s}, {rx}, \"pcre\")", "PatCmp({s}, {s})",
             "Contain({s}, {s})", "ContainAll({s}, {s})", "StrIndex({s}, {s})", "Sqrt({n})",
             "Pow({n}, {n})", "Log({n})", "Round({n})", "IsNaN({n})", "IsInf({n})",
             "NumCmp({n}, {n}, {n})", "BegCmp({s}, {s})", "({n} {op} {n})"]  # fmt: skip
STR_CALLS = ["ToS({n})", "SubStr({s}, {n})", "SubStr({s}, {n}, {n})", "TimeToDate({n}, {fmt})",
             "TimeToGmDate({n}, {fmt})", "RxRep({s}, {rx}, {s})", "UrlDec({s})", "UrlEnc({s})",
             "ToUpper({s})", "ClipStr({s}, {s})", "Base64Enc({s})", "Base64Dec({s})",
             "QryDec({s}, {s})", "({s} + {s})"]  # fmt: skip
REGEXES = ['"(((" ', '"ab\\\\"', '"[z-a]"', '"a.*b"', '"^x"', '"\\("', '"(a)|(b)"', '""']
FORMATS = ['"Y.m.d.H.M.S"', '"%Y-%m-%d"', '"%Q"', '"d.b.Y.H.M.S.z"', '"Y.m.d"', '"%"', '""']


@st.composite
def typed_expressions(
    draw: st.DrawFn, nums: list[str], strs: list[str], depth: int = 2, kind: str = "N"
) -> str:
    """A numeric (`kind` N) or string (S) expression whose calls have arguments of the right
    kinds."""

    def num(d: int) -> str:
        if d <= 0 or draw(st.integers(0, 2)) == 0:
            return draw(st.sampled_from(nums + INT_LITERALS + FLOAT_LITERALS))
        return fill(draw(st.sampled_from(NUM_CALLS)), d - 1)

    def text(d: int) -> str:
        if d <= 0 or draw(st.integers(0, 2)) == 0:
            return draw(st.sampled_from(strs + STRING_LITERALS))
        return fill(draw(st.sampled_from(STR_CALLS)), d - 1)

    def fill(template: str, d: int) -> str:
        out = template
        for slot, make in (("{n}", lambda: num(d)), ("{s}", lambda: text(d)),
                           ("{rx}", lambda: draw(st.sampled_from(REGEXES))),
                           ("{fmt}", lambda: draw(st.sampled_from(FORMATS))),
                           ("{op}", lambda: draw(st.sampled_from(list("+-*/%&|^"))))):  # fmt: skip
            while slot in out:
                out = out.replace(slot, make(), 1)
        return out

    return num(depth) if kind == "N" else text(depth)


@st.composite
def pp_commands(draw: st.DrawFn) -> tuple[list[str], bytes]:
    """An aq_pp command line over hostile input on stdin."""
    n = draw(st.integers(1, 4))
    types = [draw(st.sampled_from(TYPES)) for _ in range(n)]
    names = [f"c{i}" for i in range(n)]
    argv = ["-f" + draw(st.sampled_from(INPUT_ATTRS[:10] * 3 + INPUT_ATTRS)), "-", "-d"]
    argv += [f"{t}:{c}" for t, c in zip(types, names, strict=True)]
    made = list(names)
    nums = [c for c, t in zip(names, types, strict=True) if t not in ("S", "IP")]
    strs = [c for c, t in zip(names, types, strict=True) if t in ("S", "IP")]
    for i in range(draw(st.integers(0, 3))):
        rule = draw(st.sampled_from(["eval", "eval", "filt", "if", "map", "var"]))
        typed = draw(st.integers(0, 3)) > 0
        text = draw(st.booleans())
        expr = draw(typed_expressions(nums, strs, kind="S" if text else "N") if typed
                    else expressions(made))  # fmt: skip
        if rule == "eval":
            kinds = [t.lower() for t in TYPES[:6]]
            if typed:
                kinds = ["s"] if text else ["i", "is", "l", "ls", "f"]
            target = f"{draw(st.sampled_from(kinds))}:n{i}"
            argv += ["-eval", target, expr]
            made.append(f"n{i}")
        elif rule == "filt":
            argv += ["-filt", expr]
        elif rule == "if":
            argv += ["-if", "-filt", expr, "-eval", f"s:b{i}", '"y"', "-else", "-endif"]
        elif rule == "map":
            col = draw(st.sampled_from(strs or names))
            pattern = draw(st.sampled_from(["%%v%%", "(.*)", "\\(", "%%v:@n%%", "x"]))
            argv += ["-map" + draw(st.sampled_from(["", ",rx", ",rx_extended", ",pcre"])), col,
                     pattern, draw(st.sampled_from(["%%v%%", "%%1%%", "z"]))]  # fmt: skip
        else:
            initial = draw(st.sampled_from(INT_LITERALS + FLOAT_LITERALS + ['"s"', "x"]))
            argv += ["-var", f"{draw(st.sampled_from(TYPES[:6])).lower()}:v{i}", initial]
    argv += ["-o" + draw(st.sampled_from(OUTPUT_ATTRS)), "-"]
    if draw(st.booleans()):
        argv += ["-c", *draw(st.lists(st.sampled_from([*made, "*", "~c0", "nope"]), min_size=1,
                                      max_size=3))]  # fmt: skip
    return argv, draw(records(n))
