"""Reading a query: table references, clauses, and whether it is in Essentia's own dialect.

``ess query`` accepts any SQL DuckDB accepts, over table references ``category:start:end``
(after FROM, JOIN or a comma of a FROM list). Statements of the forms the Essentia dialect knows
(spec ess-cli 5.2: ``SELECT * | cols`` with WHERE/ORDER BY/LIMIT, ``SELECT COUNT(...)`` items
with WHERE/GROUP BY) are recognized here, because their output (5.3) and some semantics (a
stable ORDER BY, GROUP BY columns separated by spaces) are Essentia's, not DuckDB's. Nothing
here reads data or knows about the datastore.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ess.errors import UsageError

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<str>'(?:[^']|'')*'|"(?:[^"\\]|\\.)*")
  | (?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<op>::|<=|>=|<>|!=|==|&&|\|\||[-+*/%(),.;<>=!~:\[\]{}|&^@?])
    """,
    re.VERBOSE,
)
_DATE = r"\d{4}-\d{2}-\d{2}(?:[ T]\d{1,2}(?::\d{2}(?::\d{2})?)?)?"
_BOUND = rf"\*|{_DATE}|[^\s:,();*]+"
#: ``category:start:end``; a bound is ``*``, a date with an optional time, or a word the
#: datastore judges (a bad one fails there, naming the bound).
_TABLE_REF = re.compile(
    rf"(?P<cat>[A-Za-z_][\w.-]*)\s*:\s*(?P<lo>{_BOUND})\s*:\s*(?P<hi>{_BOUND})(?![\w:-])"
)
#: Keywords that start a clause of a SELECT at the top level.
_CLAUSES = ("select", "from", "where", "group", "having", "order", "limit", "offset",
            "window", "qualify", "union", "except", "intersect")  # fmt: skip


@dataclass(frozen=True)
class Token:
    kind: str  # str | num | word | op
    text: str
    start: int
    depth: int  # parenthesis depth

    @property
    def low(self) -> str:
        return self.text.lower()


@dataclass(frozen=True)
class TableRef:
    """One ``category:start:end`` of the statement, and the SQL name it is read as."""

    text: str
    category: str
    lower: str
    upper: str
    name: str  # the table's name in the SQL DuckDB runs


@dataclass(frozen=True)
class CountItem:
    """One item of an Essentia COUNT query: ``count(*)``, ``count(col)``, ``count(distinct
    col)``, or a plain column (allowed when grouped by it)."""

    kind: str  # star | col | distinct | plain
    column: str = ""


@dataclass(frozen=True)
class Essentia:
    """A statement in Essentia's dialect (5.2), validated against its rules."""

    count: bool  # a COUNT query (else a row query)
    columns: tuple[str, ...] | None  # row query: the columns (None: ``*``)
    items: tuple[CountItem, ...]  # count query: the items
    where: str | None
    group_by: tuple[str, ...]
    order_by: str | None
    limit: int | None


@dataclass(frozen=True)
class Statement:
    text: str  # as given
    sql: str  # table references replaced by their names
    tables: tuple[TableRef, ...]
    tokens: tuple[Token, ...]  # of ``sql``
    essentia: Essentia | None  # None: not in Essentia's dialect (DuckDB's SQL)
    violation: str | None = None  # the Essentia rule it breaks, if it looks like one of its forms
    where: tuple[int, int] | None = None  # span of a top-level WHERE condition in ``sql``
    offsets: tuple[tuple[int, int], ...] = field(default=())  # (sql pos, shift) per replacement

    def position(self, sql_pos: int) -> int:
        """Where a position of ``sql`` is in the statement as given (0-based)."""
        shift = 0
        for at, delta in self.offsets:
            if sql_pos >= at:
                shift = delta
        return sql_pos + shift


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = depth = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise UsageError(f"syntax error at position {pos + 1}: unexpected {text[pos]!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            tok = m.group()
            if tok in (")", "]"):
                depth -= 1
            tokens.append(Token(kind, tok, pos, depth))
            if tok in ("(", "["):
                depth += 1
        pos = m.end()
    if depth != 0:
        raise UsageError("syntax error: unbalanced parentheses")
    return tokens


def _find_tables(text: str) -> list[tuple[re.Match[str], str]]:
    """Table references outside strings, each right after FROM, JOIN or a comma."""
    found = []
    masked = _mask_strings(text)
    for m in _TABLE_REF.finditer(masked):
        before = masked[: m.start()].rstrip()
        word = re.search(r"([A-Za-z_]+|,)$", before)
        if word and word.group(1).lower() in ("from", "join", ","):
            found.append((m, text[m.start() : m.end()]))
    return found


def _mask_strings(text: str) -> str:
    """``text`` with the insides of string literals blanked (same length)."""
    out = list(text)
    for m in _TOKEN.finditer(text):
        if m.lastgroup == "str":
            for i in range(m.start() + 1, m.end() - 1):
                out[i] = " "
    return "".join(out)


def parse(text: str) -> Statement:
    """Split a statement into its table references and clauses; classify it."""
    text = text.strip().rstrip(";").strip()
    if not text:
        raise UsageError("empty query")
    refs: list[TableRef] = []
    by_text: dict[tuple[str, str, str], TableRef] = {}
    pieces: list[str] = []
    offsets: list[tuple[int, int]] = []
    last = 0
    sql_len = 0
    for m, _raw in _find_tables(text):
        key = (m["cat"], m["lo"], m["hi"])
        ref = by_text.get(key)
        if ref is None:
            used = {r.name.lower() for r in refs}
            name = m["cat"] if re.fullmatch(r"[A-Za-z_]\w*", m["cat"]) else "t"
            base, n = name, 1
            while name.lower() in used:
                n += 1
                name = f"{base}_{n}"
            ref = TableRef(m.group(), m["cat"], m["lo"], m["hi"], name)
            by_text[key] = ref
            refs.append(ref)
        pieces.append(text[last : m.start()])
        sql_len += m.start() - last
        quoted = f'"{ref.name}"'
        pieces.append(quoted)
        sql_len += len(quoted)
        offsets.append((sql_len, m.end() - sql_len))
        last = m.end()
    pieces.append(text[last:])
    sql = "".join(pieces)
    tokens = tuple(tokenize(sql))
    if not tokens or tokens[0].low not in ("select", "with", "from"):
        tok = tokens[0].text if tokens else ""
        raise UsageError(f"syntax error at position 1 near {tok!r}: a query starts with SELECT")
    if not refs:
        raise UsageError("no table reference: FROM category:start:end (e.g. browse:*:*)")
    clauses = _clauses(tokens)
    where = None
    if "where" in clauses and len(refs) == 1:
        first, end = clauses["where"]
        if first < end:
            where = (tokens[first].start, _end_of(tokens, end, len(sql)))
    essentia, violation = _essentia(sql, tokens, clauses, refs)
    return Statement(
        text=text,
        sql=sql,
        tables=tuple(refs),
        tokens=tokens,
        essentia=essentia,
        violation=violation,
        where=where,
        offsets=tuple(offsets),
    )


def _end_of(tokens: tuple[Token, ...], index: int, length: int) -> int:
    return tokens[index].start if index < len(tokens) else length


def _clauses(tokens: tuple[Token, ...]) -> dict[str, tuple[int, int]]:
    """Top-level clauses of a single SELECT: keyword -> (first token, end token) of its body.
    A clause keyword seen twice (a UNION's second SELECT) makes the result empty."""
    starts: list[tuple[str, int]] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t.depth == 0 and t.kind == "word" and t.low in _CLAUSES:
            skip = 1
            if t.low in ("group", "order") and i + 1 < len(tokens) and tokens[i + 1].low == "by":
                skip = 2
            starts.append((t.low, i + skip))
            i += skip
            continue
        i += 1
    names = [n for n, _ in starts]
    if len(set(names)) != len(names) or not names or names[0] != "select":
        return {}
    out = {}
    for k, (name, first) in enumerate(starts):
        end = starts[k + 1][1] - (2 if starts[k + 1][0] in ("group", "order") else 1) \
            if k + 1 < len(starts) else len(tokens)  # fmt: skip
        out[name] = (first, end)
    return out


def _split_commas(tokens: tuple[Token, ...]) -> list[tuple[Token, ...]]:
    items: list[list[Token]] = [[]]
    base = tokens[0].depth if tokens else 0
    for t in tokens:
        if t.text == "," and t.depth == base:
            items.append([])
        else:
            items[-1].append(t)
    return [tuple(i) for i in items]


def _count_item(item: tuple[Token, ...]) -> CountItem | None:
    words = [t.low for t in item]
    if len(item) == 1 and item[0].kind == "word":
        return CountItem("plain", item[0].text)
    if len(item) >= 4 and words[0] == "count" and words[1] == "(" and words[-1] == ")":
        inner = item[2:-1]
        if len(inner) == 1 and inner[0].text == "*":
            return CountItem("star")
        if len(inner) == 1 and inner[0].kind == "word":
            return CountItem("col", inner[0].text)
        if len(inner) == 2 and inner[0].low == "distinct" and inner[1].kind == "word":
            return CountItem("distinct", inner[1].text)
    return None


def _essentia(
    sql: str, tokens: tuple[Token, ...], clauses: dict[str, tuple[int, int]], refs: list[TableRef]
) -> tuple[Essentia | None, str | None]:
    """The statement as an Essentia query, or why it is not one: (None, None) when it is
    plainly DuckDB SQL, (None, rule) when it is an Essentia form breaking a rule of 5.2."""
    if len(refs) != 1 or not clauses or set(clauses) - {
        "select", "from", "where", "group", "order", "limit",
    }:  # fmt: skip
        return None, None
    if clauses["from"][1] - clauses["from"][0] != 1:
        return None, None  # an alias, a join, ...: DuckDB's
    span = clauses["select"]
    items = _split_commas(tokens[span[0] : span[1]])
    star = len(items) == 1 and len(items[0]) == 1 and items[0][0].text == "*"
    counts = [_count_item(i) for i in items] if not star else []
    if not star and any(c is None for c in counts):
        return None, None
    count_items = tuple(c for c in counts if c is not None)
    is_count = any(c.kind != "plain" for c in count_items)
    group: tuple[str, ...] = ()
    if "group" in clauses:
        g = tokens[clauses["group"][0] : clauses["group"][1]]
        if not g or any(t.kind != "word" and t.text != "," for t in g):
            return None, None
        group = tuple(t.text for t in g if t.kind == "word")
    order = None
    if "order" in clauses:
        o = tokens[clauses["order"][0] : clauses["order"][1]]
        if len(o) == 2 and o[1].low == "asc":
            o = o[:1]
        if len(o) != 1 or o[0].kind != "word":
            return None, None
        order = o[0].text
    limit = None
    if "limit" in clauses:
        lim = tokens[clauses["limit"][0] : clauses["limit"][1]]
        if len(lim) != 1 or lim[0].kind != "num" or not lim[0].text.isdigit():
            return None, None
        limit = int(lim[0].text)
    where = None
    if "where" in clauses:
        first, end = clauses["where"]
        if first >= end:
            return None, None
        where = sql[tokens[first].start : _end_of(tokens, end, len(sql))].strip()
    if not is_count:
        if group:
            return None, "GROUP BY is not supported for SELECT (row) queries"
        columns = None if star else tuple(c.column for c in count_items)
        return Essentia(False, columns, (), where, (), order, limit), None
    if order is not None:
        return None, "ORDER BY is not supported for COUNT queries"
    if limit is not None:
        return None, "LIMIT is not supported for COUNT queries"
    if group and any(c.kind == "distinct" for c in count_items):
        return None, "GROUP BY is only supported when there is no DISTINCT in a COUNT query"
    grouped = {g.lower() for g in group}
    for c in count_items:
        if c.kind == "plain" and c.column.lower() not in grouped:
            return None, f"column {c.column} must be counted or in the GROUP BY"
    return Essentia(True, None, count_items, where, group, None, None), None
