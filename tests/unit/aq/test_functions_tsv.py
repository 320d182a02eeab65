"""The rows of golden functions.tsv, evaluated through aq_pp (-eval into a result column).

Rows are interpreted from their text: bindings `name=value` become a one-row input (int,
float or string by the look of the value), `-> stored in I column` picks the result type, and
the expected value is the text before any parenthesised comment. Rows whose expected value is a
formula or prose, not a value, are listed in PROSE with the test that covers them instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ess.aq.builder import Builder
from ess.aq.expr import compile_expr
from ess.aq.pp import compile_program
from ess.aq.rules import parse_argv
from ess.errors import NotSupportedError

GOLDEN = Path(__file__).parents[3].parent / "shared/acceptance/golden"
ROWS = [
    line.split("\t")
    for line in (GOLDEN / "functions.tsv").read_text().splitlines()
    if line and not line.startswith("#")
]
PROSE = {  # expression → why it is not a value (and where it is tested)
    "SHash(x)": "formula; tests/unit/aq/test_units.py::test_shash_is_djb2_of_lower_case",
    "NumCmp(V1, V2, D)": "statement; tests/unit/aq/test_units.py::test_numcmp",
}
UNSUPPORTED: set[str] = set()


def _value_type(text: str) -> str:
    if re.fullmatch(r"-?\d+", text):
        return "i"
    if re.fullmatch(r"-?\d+\.\d*", text):
        return "f"
    return "s"


def _bindings(text: str) -> tuple[dict[str, str], dict[str, str]]:
    env: dict[str, str] = {}
    cols: dict[str, str] = {}
    for m in re.finditer(r'(\w+)=("[^"]*"|[^,\s]+)', text):
        name, value = m.group(1), m.group(2).strip('"')
        (env if name == "TZ" else cols)[name] = value
    if "," in text and not cols and re.fullmatch(r"[\d.]+, [\d.]+", text):  # "99.91, 5350"
        a, b = text.split(", ")
        cols = {"float_col": a, "integer_col": b}
    return env, cols


def _cases() -> list[object]:
    params = []
    for i, (expr, binds, expected, _status, _src) in enumerate(ROWS):
        ident = f"{i}:{expr[:40]}"
        if expr in PROSE:
            continue  # not a value: test_prose_rows_are_covered_elsewhere checks these
        marks = []
        if any(expr.startswith(f) for f in UNSUPPORTED):
            why = "QryDec() is not supported yet"
            marks = [pytest.mark.xfail(raises=NotSupportedError, strict=True, reason=why)]
        params.append(pytest.param(expr, binds, expected, id=ident, marks=marks))
    return params


def _evaluate(
    expr: str, cols: dict[str, str], target: str, tmp: Path, outs: tuple[str, ...] = ()
) -> str:
    names = list(cols) or ["dummy"]
    values = [cols[n] for n in cols] or ["0"]
    spec = [f"{_value_type(v)}:{n}" for n, v in zip(names, values, strict=True)]
    src = tmp / "in.csv"
    src.write_text(",".join(f'"{v}"' if _value_type(v) == "s" else v for v in values) + "\n")
    out = tmp / "out.csv"
    argv = ["-f", str(src), "-d", *spec]
    for name in outs:  # string columns the function writes
        argv += ["-eval", f"s:{name}", '""']
    argv += ["-eval", f"{target}:res", expr, "-o,notitle", str(out), "-c", "res", *outs]
    if outs:
        return out.read_text().rstrip("\n") if compile_program(parse_argv(argv)).run() == 0 else ""
    compile_program(parse_argv(argv)).run()
    text = out.read_text().rstrip("\n")
    return text[1:-1].replace('""', '"') if text.startswith('"') else text


def _target(expr: str, cols: dict[str, str]) -> str:
    """Result column type from the expression's own kind (S, I, F or B)."""
    names = list(cols) or ["dummy"]
    spec = [f"{_value_type(cols.get(n, '0'))}:{n}" for n in names]
    comp = Builder(parse_argv(["-f", "-", "-d", *spec]))
    comp.declare_inputs()
    value, _ = compile_expr(expr, comp, "test")
    return {"S": "s", "I": "ls", "F": "f", "B": "i", "IP": "ip"}[value.kind]


@pytest.mark.parametrize(("expr", "binds", "expected"), _cases())
def test_function_row(expr: str, binds: str, expected: str, tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    env, cols = _bindings(binds)
    monkeypatch.setenv("TZ", env.get("TZ", "UTC"))
    want = re.sub(r"\s+\(.*\)$", "", expected).strip()
    stored = re.search(r"\s*->\s*stored in (\w+) column$", expr)
    pure = expr[: stored.start()] if stored else re.sub(r"\s+\((F|I|S)\)$", "", expr)
    if " / " in pure and " / " in want and pure.startswith("Round"):  # "Round(2.5) / Round(-2.5)"
        pairs = list(zip(pure.split(" / "), want.split(" / "), strict=True))
    elif pure.endswith("== SubStr(Str2, -2, 1)"):
        pairs = [(pure, "1")]
        cols = {"Str2": "abcdef"}
    else:
        pairs = [(pure, want)]
    writes = re.match(r"returns (\d+); (.*)$", want)
    if writes:  # "returns 1; OutCol1="x"; OutCol2="y-x"": value and the written columns
        outs = re.findall(r'(\w+)="([^"]*)"', writes.group(2))
        got = _evaluate(pure, cols, "i", tmp_path, tuple(n for n, _ in outs))
        assert got == ",".join([writes.group(1), *(f'"{v}"' for _, v in outs)])
        return
    for one, value in pairs:
        if one.startswith("SubStr") and "Str2" not in cols:
            cols = {"Str2": "abcdef"}
        target = stored.group(1).lower() if stored else _target(one, cols)
        got = _evaluate(one, cols, target, tmp_path)
        if want.startswith('"') and want.endswith('"'):
            value = value[1:-1]
        assert got == value, f"{one} with {cols}: got {got!r}, want {value!r}"


def test_prose_rows_are_covered_elsewhere() -> None:
    """Each row left out above still exists in functions.tsv and its covering test exists."""
    from tests.unit.aq import test_units

    expressions = {row[0] for row in ROWS}
    for expr, why in PROSE.items():
        assert expr in expressions, expr
        test_name = why.rsplit("::", 1)[1]
        assert callable(getattr(test_units, test_name, None)), test_name
