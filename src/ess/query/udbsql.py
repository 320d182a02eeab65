"""``udbsql``: the query forms over UDB tables, translated to aq_udb command lines.

``select * | cols from db:tab [where F] [order by col [desc]] [limit N]`` becomes
``aq_udb -exp db:tab [-filt F] [-sort[,dec] col] [-top N] [-c cols]``; ``select count(*)``
becomes ``aq_udb -cnt db:tab [-filt F]``. COUNT(DISTINCT ...) and GROUP BY export the columns
they need with ``aq_udb -exp ... -c`` and count them here. ``col IN (SELECT col2 FROM
[db:]tab2 [WHERE F2])`` runs the inner export first and filters the outer one on its values.
Every aq_udb command runs through the code the ``aq_udb`` command uses (:mod:`ess.udb.query`).
"""

from __future__ import annotations

import io
import re
import shlex
from dataclasses import dataclass

import polars as pl

from ess.errors import NotSupportedError, UsageError
from ess.query.dialect import _clauses, _count_item, _split_commas, tokenize
from ess.workspace import Workspace

_FROM = re.compile(r"\bfrom\s+(?P<db>[A-Za-z_][\w-]*)(?::(?P<tab>[A-Za-z_]\w*|\.))?", re.I)
_IN = re.compile(
    r"(?P<col>[A-Za-z_]\w*)\s+in\s*\(\s*select\s+(?P<col2>[A-Za-z_]\w*)\s+from\s+"
    r"(?:(?P<db>[A-Za-z_][\w-]*):)?(?P<tab>[A-Za-z_]\w*)(?:\s+where\s+(?P<filt>[^()]*(?:\([^()]*"
    r"\)[^()]*)*))?\s*\)",
    re.I,
)


@dataclass(frozen=True)
class Translation:
    """The aq_udb command lines of a statement, and what udbsql does with their output."""

    inner: list[str] | None  # the IN (SELECT ...) export, run first
    inner_col: str
    outer_col: str
    argv: list[str]
    count: str  # "" (aq_udb's output as is), "distinct" or "group"
    distinct: tuple[str, ...] = ()
    group: tuple[str, ...] = ()

    def commands(self) -> list[str]:
        lines = []
        if self.inner is not None:
            lines.append(shlex.join(["aq_udb", *self.inner]))
        outer = self.argv
        if self.inner is not None:
            outer = [*outer, "-filt", f"{self.outer_col} IN (keys of the first command)"]
        lines.append(shlex.join(["aq_udb", *outer]))
        return lines


def translate(text: str) -> Translation:
    text = text.strip().rstrip(";")
    inner = None
    inner_col = outer_col = ""
    m_in = _IN.search(text)
    if m_in is not None:
        m_outer = _FROM.search(text)
        if m_outer is None:
            raise UsageError("syntax error: FROM database:table expected")
        db2 = m_in["db"] or m_outer["db"]
        inner = ["-exp", f"{db2}:{m_in['tab']}"]
        if m_in["filt"]:
            inner += ["-filt", m_in["filt"].strip()]
        inner += ["-c", m_in["col2"], "-o,notitle", "-"]
        inner_col, outer_col = m_in["col2"], m_in["col"]
        text = text[: m_in.start()] + "1" + text[m_in.end() :]
    m = _FROM.search(text)
    if m is None:
        raise UsageError("syntax error: FROM database:table (or database:vector, database:var)")
    target = m["db"] + (f":{m['tab']}" if m["tab"] else "")
    tokens = tuple(tokenize(text[: m.start()] + "from __t" + text[m.end() :]))
    clauses = _clauses(tokens)
    if not clauses or set(clauses) - {"select", "from", "where", "group", "order", "limit"}:
        raise UsageError("udbsql: SELECT ... FROM db:table [WHERE] [GROUP BY] [ORDER BY] [LIMIT]")
    sql = text[: m.start()] + "from __t" + text[m.end() :]

    def body(name: str) -> list[str]:
        lo, hi = clauses.get(name, (0, 0))
        return [t.text for t in tokens[lo:hi]]

    filt = ""
    if "where" in clauses:
        lo, hi = clauses["where"]
        end = tokens[hi].start if hi < len(tokens) else len(sql)
        filt = sql[tokens[lo].start : end].strip()
        if filt == "1":
            filt = ""
        elif filt.startswith("1 && ") or filt.endswith(" && 1"):
            filt = filt.removeprefix("1 && ").removesuffix(" && 1")
    lo, hi = clauses["select"]
    items = _split_commas(tokens[lo:hi])
    star = len(items) == 1 and [t.text for t in items[0]] == ["*"]
    counts = [] if star else [_count_item(i) for i in items]
    if any(c is None for c in counts):
        raise NotSupportedError("udbsql: select items other than columns and COUNT(...)")
    group = tuple(t for t in body("group") if t != ",")
    order = body("order")
    limit = body("limit")
    argv: list[str]
    if any(c is not None and c.kind != "plain" for c in counts):
        distinct = tuple(c.column for c in counts if c is not None and c.kind == "distinct")
        if not distinct and not group:
            argv = ["-cnt", target] + (["-filt", filt] if filt else [])
            return Translation(inner, inner_col, outer_col, argv, "")
        cols = tuple(dict.fromkeys([*group, *distinct]))
        argv = ["-exp", target] + (["-filt", filt] if filt else []) + ["-c", *cols]
        return Translation(inner, inner_col, outer_col, argv, "group" if group else "distinct",
                           distinct, group)  # fmt: skip
    if group:
        raise UsageError("udbsql: GROUP BY needs COUNT(...) items")
    argv = ["-exp", target] + (["-filt", filt] if filt else [])
    if order:
        dec = order[-1].lower() == "desc"
        names = [o for o in order if o.lower() not in ("asc", "desc", ",")]
        argv += ["-sort,dec" if dec else "-sort", *names]
    if limit:
        if len(limit) != 1 or not limit[0].isdigit():
            raise UsageError(f"udbsql: LIMIT {' '.join(limit)}: a number expected")
        argv += ["-top", limit[0]]
    if not star:
        argv += ["-c", *(c.column for c in counts if c is not None)]
    return Translation(inner, inner_col, outer_col, argv, "")


def run(ws: Workspace, tr: Translation) -> bytes:
    """Run the translation's aq_udb commands; the result as udbsql prints it."""
    from ess.udb.query import run as aq_udb

    argv = list(tr.argv)
    if tr.inner is not None:
        keys = aq_udb(ws, tr.inner).decode().splitlines()
        values = sorted({k.strip().strip('"') for k in keys if k.strip()})
        if values:
            alts = "|".join(re.escape(v) for v in values)
            keep = f'RxCmp({tr.outer_col}, "^({_aq_string(alts)})$", rx_extended)'
        else:
            keep = "1 == 0"
        argv[2:2] = ["-filt", keep]  # right after the action: rules are ANDed
    if not tr.count:
        return aq_udb(ws, argv)
    data = aq_udb(ws, argv)
    frame = None
    if data.strip():  # values kept as aq_udb wrote them (strings with their quotes)
        frame = pl.read_csv(io.BytesIO(data), infer_schema_length=0, quote_char=None)
        frame = frame.rename({c: c.strip('"') for c in frame.columns})
    if tr.count == "group":
        names = list(tr.group)
        if frame is None:
            return ("".join(f'"{n}",' for n in names) + '"Count"\n').encode()
        out = frame.group_by(names).len(name="Count")
        order: list[pl.Expr] = [
            pl.col(n).str.strip_chars('"').cast(pl.Float64, strict=False) for n in names
        ]
        return _csv(out.sort([*order, *(pl.col(n) for n in names)], nulls_last=True))
    if frame is None:
        return ('"row",' + ",".join(f'"k_{c}"' for c in tr.distinct) + "\n0" +
                ",0" * len(tr.distinct) + "\n").encode()  # fmt: skip
    row = {"row": frame.height} | {f"k_{c}": frame.get_column(c).n_unique() for c in tr.distinct}
    return _csv(pl.DataFrame(row))


def _aq_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _csv(frame: pl.DataFrame) -> bytes:
    """aq conventions: quoted names; values as aq_udb wrote them (numbers bare)."""
    head = ",".join(f'"{c}"' for c in frame.columns) + "\n"
    lines = []
    for row in frame.iter_rows():
        lines.append(",".join(_field(v) for v in row))
    return (head + "".join(line + "\n" for line in lines)).encode()


def _field(value: object) -> str:
    return "" if value is None else str(value)
