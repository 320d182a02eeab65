"""The parsing side of ``-f,jsn`` and ``-f,xml`` input: key paths (spec §3.3) to rows of strings.

A column spec ``Type:ColName:KeySpec`` names a path of dot-separated steps ``Key``, ``[N]``,
``Key[N]``, ``[*]``, ``Key[*]``; key names are case-insensitive and ``base=BaseSpec`` on ``-f``
prefixes every KeySpec. :func:`parse_keyspec` turns one into steps (lower-cased ``str`` keys,
``int`` for ``[N]``, ``None`` for ``[*]``); :func:`json_rows` and :func:`xml_rows` turn a document
into a frame of ``String`` columns ``f0..f{n-1}``, null meaning "absent / not in context" (the
caller turns it into 0 or blank).

The streaming model (what aq_pp's stream parser does, goldens ``input_jsn_01..04``,
``input_xml_01``). Each document is walked in document order:

* a column's value is set when its path is met, so a value met *after* an array is still unset
  (null) in that array's rows (``input_jsn_03``). Values are reset at the start of each document;
* a column with ``[*]`` steps has a *star prefix*: its path up to and including its last ``[*]``.
  A star prefix *emits rows* unless another column's star prefix strictly extends it (then it is
  an outer array whose element values are context for the inner rows: "rows are emitted per
  innermost array"). One row is emitted at the END of every element of an emitting array, holding
  the values set so far; so ``items[*].a`` and ``items[*].b`` together give one row per element
  with both values;
* when an element matched by a ``[*]`` step ends, the values of the columns that went through
  that ``[*]`` are cleared, so the other arrays' columns are null in a row (``input_jsn_04``);
* with no ``[*]`` column at all, each document gives exactly one row (at its end).

Decisions for cases the goldens do not show:

* a document whose ``[*]`` arrays are empty or missing gives no row when the spec has ``[*]``
  columns (likewise an outer-array element whose inner array is empty or missing);
* ``[N]`` is a 0-based index and matches only that element; a ``[N]`` or ``[*]`` step meeting an
  object (or a key step meeting an array) does not match, so the column stays null;
* a path that ends on an object or an array gives null (blank), as does JSON ``null``;
* numbers are kept as their JSON text (``1.50``, ``1e3``, ``-0``), ``true``/``false`` become the
  strings ``true``/``false``; strings are their decoded value;
* duplicate keys in one JSON object: the last one wins (that is what ``json`` gives us), and it is
  visited in the position of the first one.

XML (same KeySpec): elements are keys (lower-cased, any ``{namespace}`` prefix dropped), the
value of an element is its text with surrounding whitespace stripped (null when it is empty or
when the element has child elements); attributes are ignored. ``Key[N]``/``Key[*]`` count the
``Key`` siblings (the N-th ``<Key>`` child, each ``<Key>`` child: repeated siblings form the array,
``input_xml_01``); a bare ``Key`` matches every ``<Key>`` child (each one sets the value when met,
so the last one before a row wins). As ``Key.[N]`` and ``Key[N]`` are the same steps, an index
right after a key always counts that key's siblings; only an index at the start of a path or
right after another index (``[0].[2]``) counts all child elements whatever their name (the
virtual parent of the root element has one child). ``xml_rows`` reads one XML document (one
root element).

:func:`json_record_end` finds where a 16 MB batch may be cut: after the last complete top-level
JSON value. Objects, arrays and strings are complete at their closing character; a bare top-level
scalar (number, ``true``...) only when whitespace or another value follows it (``12`` at the very
end might be the start of ``123``).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

import polars as pl

from ess.errors import AqDataError, AqSyntaxError

Step = str | int | None
Path = list[Step]

_ELEMENT = re.compile(r"([^.\[\]]*)(?:\[(\*|\d+)\])?")
_WS = re.compile(r"[ \t\r\n]*")
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]]|"')


def parse_keyspec(spec: str, base: str = "") -> list[str | int | None]:
    """`base` + `spec` as path steps: lower-cased key names, ints for [N], None for [*]. Raise
    ess.errors.AqSyntaxError with a clear message on a malformed spec (e.g. `a[x]`, `a..b`)."""
    full = ".".join(part for part in (base, spec) if part)
    if not full:
        raise AqSyntaxError("empty key spec (give a KeySpec or base=BaseSpec)")
    steps: Path = []
    for element in full.split("."):
        match = _ELEMENT.fullmatch(element)
        if element == "" or match is None:
            what = "an empty element" if element == "" else f"a malformed element {element!r}"
            raise AqSyntaxError(
                f"bad key spec {full!r}: {what} (expected Key, [N], Key[N], [*] or Key[*])"
            )
        key, index = match.group(1), match.group(2)
        if key:
            steps.append(key.lower())
        if index is not None:
            steps.append(None if index == "*" else int(index))
    return steps


class _Walker:
    """The row state shared by the JSON and XML walks (see the module docstring)."""

    def __init__(self, paths: Sequence[Sequence[Step]]) -> None:
        self.paths = [list(p) for p in paths]
        n = len(self.paths)
        self.last_star = [max((i for i, s in enumerate(p) if s is None), default=-1) for p in paths]
        prefixes = [
            tuple(p[: k + 1]) if k >= 0 else None
            for p, k in zip(paths, self.last_star, strict=True)
        ]
        self.emits = [
            pre is not None
            and not any(
                other is not None and len(other) > len(pre) and other[: len(pre)] == pre
                for other in prefixes
            )
            for pre in prefixes
        ]
        self.has_star = any(k >= 0 for k in self.last_star)
        self.columns: list[list[str | None]] = [[] for _ in range(n)]
        self.values: list[str | None] = [None] * n
        self.start: list[tuple[int, int]] = [(c, 0) for c in range(n)]

    def begin(self) -> None:
        self.values = [None] * len(self.paths)

    def end(self) -> None:
        if not self.has_star:
            self.emit()

    def emit(self) -> None:
        for column, value in zip(self.columns, self.values, strict=True):
            column.append(value)

    def set(self, states: list[tuple[int, int]], value: str | None) -> None:
        for c, pos in states:
            if pos == len(self.paths[c]):
                self.values[c] = value

    def element_end(self, stars: list[tuple[int, int]]) -> None:
        """An element matched by `[*]` steps (column, index of the `[*]`) has ended."""
        if any(pos == self.last_star[c] and self.emits[c] for c, pos in stars):
            self.emit()
        for c, _ in stars:
            self.values[c] = None

    def frame(self) -> pl.DataFrame:
        names = [f"f{i}" for i in range(len(self.paths))]
        return pl.DataFrame(
            dict(zip(names, self.columns, strict=True)), schema={name: pl.String for name in names}
        )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    return None  # an object or an array


def _visit(walker: _Walker, node: Any, states: list[tuple[int, int]]) -> None:
    paths = walker.paths
    if isinstance(node, dict):
        walker.set(states, None)
        for key, child in node.items():
            lower = key.lower()
            inner = [
                (c, pos + 1) for c, pos in states if pos < len(paths[c]) and paths[c][pos] == lower
            ]
            if inner:
                _visit(walker, child, inner)
    elif isinstance(node, list):
        walker.set(states, None)
        for i, child in enumerate(node):
            inner = []
            stars = []
            for c, pos in states:
                if pos < len(paths[c]):
                    step = paths[c][pos]
                    if step is None:
                        inner.append((c, pos + 1))
                        stars.append((c, pos))
                    elif type(step) is int and step == i:
                        inner.append((c, pos + 1))
            if inner:
                _visit(walker, child, inner)
                if stars:
                    walker.element_end(stars)
    else:
        walker.set(states, _text(node))


def _decoder() -> json.JSONDecoder:
    return json.JSONDecoder(parse_float=str, parse_int=str, parse_constant=str)


def json_rows(
    data: bytes,
    paths: list[list[str | int | None]],
    source: str = "JSON input",
    first_line: int = 1,
) -> pl.DataFrame:
    """String columns f0..f{n-1} (n = len(paths)) of the rows of every JSON document in `data`.
    A value that is absent/not in context is null (the caller turns null into 0/blank). Raise
    ess.errors.AqDataError naming the 1-based line of a JSON syntax error."""
    walker = _Walker(paths)
    text = data.decode("utf-8", errors="replace")
    decode = _decoder().raw_decode
    idx = 1 if text.startswith("\ufeff") else 0
    end = len(text)
    while True:
        ws = _WS.match(text, idx)
        idx = ws.end() if ws else idx
        if idx >= end:
            break
        try:
            document, idx = decode(text, idx)
        except json.JSONDecodeError as exc:
            line = first_line - 1 + exc.lineno
            raise AqDataError(f"{source}, line {line}: {exc.msg}") from None
        except RecursionError:
            line = first_line + text.count("\n", 0, idx)
            raise AqDataError(f"{source}, line {line}: nested too deeply") from None
        walker.begin()
        _visit(walker, document, walker.start)
        walker.end()
    return walker.frame()


def _local(tag: Any) -> str:
    name = tag if isinstance(tag, str) else str(tag)
    return name.rsplit("}", 1)[-1].lower()


def xml_rows(
    data: bytes, paths: list[list[str | int | None]], source: str = "XML input", first_line: int = 1
) -> pl.DataFrame:
    """Same for an XML document (one root; use xml.etree.ElementTree.iterparse or similar)."""
    walker = _Walker(paths)
    parser: Any = ET.XMLPullParser(events=("start", "end"))
    # one frame per open element: (states, stars, counts by name, [total count, has children])
    stack: list[tuple[list[tuple[int, int]], list[tuple[int, int]], dict[str, int], list[int]]]
    stack = [(walker.start, [], {}, [0, 0])]
    seen_root = False
    pl_paths = walker.paths

    def events() -> None:
        nonlocal seen_root
        for event, elem in parser.read_events():
            if event == "start":
                assert isinstance(elem, ET.Element)
                if len(stack) == 1:
                    seen_root = True
                    walker.begin()
                states, _, counts, totals = stack[-1]
                name = _local(elem.tag)
                nth = counts.get(name, 0)
                counts[name] = nth + 1
                anyth = totals[0]
                totals[0] += 1
                totals[1] = 1
                inner: list[tuple[int, int]] = []
                stars: list[tuple[int, int]] = []
                for c, pos in states:
                    path = pl_paths[c]
                    if pos >= len(path):
                        continue
                    step = path[pos]
                    if isinstance(step, str):
                        if step != name:
                            continue
                        nxt = path[pos + 1] if pos + 1 < len(path) else ""
                        if nxt is None:
                            inner.append((c, pos + 2))
                            stars.append((c, pos + 1))
                        elif type(nxt) is int:
                            if nxt == nth:
                                inner.append((c, pos + 2))
                        else:
                            inner.append((c, pos + 1))
                    elif step is None:
                        inner.append((c, pos + 1))
                        stars.append((c, pos))
                    elif step == anyth:
                        inner.append((c, pos + 1))
                stack.append((inner, stars, {}, [0, 0]))
            else:
                assert isinstance(elem, ET.Element)
                states, stars, _, totals = stack.pop()
                if states:
                    if totals[1]:
                        walker.set(states, None)
                    else:
                        walker.set(states, (elem.text or "").strip() or None)
                if stars:
                    walker.element_end(stars)
                elem.clear()
                if len(stack) == 1:
                    walker.end()

    try:
        step = 1 << 20
        for at in range(0, len(data), step):
            parser.feed(data[at : at + step])
            events()
        parser.close()
        events()
    except ET.ParseError as exc:
        line = first_line - 1 + exc.position[0] if getattr(exc, "position", None) else "?"
        raise AqDataError(f"{source}, line {line}: {exc}") from None
    if not seen_root:
        raise AqDataError(f"{source}: no root element")
    return walker.frame()


def json_record_end(data: bytes) -> int:
    """Index of the last byte of the last complete top-level JSON value in `data` (the reader cuts
    16 MB batches there), or -1 when there is none. Must track strings and escapes."""
    last = -1
    depth = 0
    gap_start = 0  # at depth 0: where the text since the last token starts
    for match in _TOKEN.finditer(data):
        start = match.start()
        token = match.group()
        if depth == 0:
            gap = data[gap_start:start]
            stripped = gap.rstrip()
            if stripped.strip():
                last = gap_start + len(stripped) - 1  # a bare scalar ended by this token
        if token == b'"':
            return last  # an unterminated string: nothing complete after it
        if token[0:1] == b'"':
            if depth == 0:
                last = match.end() - 1
        elif token in (b"{", b"["):
            depth += 1
        elif depth > 0:
            depth -= 1
            if depth == 0:
                last = start
        if depth == 0:
            gap_start = match.end()
    if depth == 0:
        gap = data[gap_start:]
        stripped = gap.rstrip()
        if len(stripped) < len(gap):
            complete = stripped  # followed by whitespace: complete
        else:  # the last scalar may be cut; the ones before it are complete
            cut = max(stripped.rfind(c) for c in (b" ", b"\t", b"\r", b"\n"))
            complete = stripped[:cut].rstrip() if cut >= 0 else b""
        if complete.strip():
            last = gap_start + len(complete) - 1
    return last
