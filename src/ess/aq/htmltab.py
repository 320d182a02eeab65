"""Records of aq_pp's `-f,tab` input format: the rows of an HTML table.

A row starts at the first `<td ...>` tag after the previous row's `</tr>` and ends at the next
`</tr>` (or at the end of the input); its fields are the contents of its `<td>` cells, in order.
Text outside cells is ignored, so `<th>` header rows, `<table>`/`<tr>` tags, captions and
anything between rows yield nothing. Decisions where the spec (aq-tools.md §2.1) is silent:

* Tags are matched case-insensitively; `<td>` may carry attributes (`<td class="x">`, the
  value must not hold `>`); blanks are allowed before the `>` of `</td >` and `</tr >`
  (HTML blanks only: space, tab, CR, LF, FF). `<tdx>` or `</trace>` are not cell/row tags.
* Cell contents are kept raw: HTML entities (`&amp;`, `&#38;`, ...) are not decoded and tags
  inside a cell (`<td><b>x</b></td>`) stay in the text, because Essentia passes the bytes
  through and nothing in the spec says otherwise. Leading/trailing blanks are kept too (the
  `trm` column attribute removes them, as for the other formats).
* A `\\r\\n` inside a cell becomes `\\n`, so a CRLF file gives the same fields as its LF copy,
  as the CSV reader does by stripping the `\\r` before each record's `\\n`. A lone `\\r` stays.
* A cell ends at `</td>`, or where HTML ends it implicitly: at the next `<td ...>` or at the
  row's end (`<tr><td>a<td>b</tr>` has cells `a` and `b`). As in HTML5, `<td/>` is a plain
  start tag (its cell runs to the next `<td>`, `</td>` or `</tr>`).
* The bytes are UTF-8; invalid bytes become U+FFFD, as in the rest of the reader.

Everything runs as Polars string operations over the whole chunk (no per-row Python loop):
the tags are first replaced by sentinel characters that do not occur in the chunk, after which
rows and cells are plain character-class matches.
"""

from __future__ import annotations

import itertools
import re

import polars as pl

BLANK = r"[ \t\r\n\f]"  # HTML whitespace; explicit so Python (record_end) and Rust agree
ROW_END = re.compile(rb"</tr" + BLANK.encode() + rb"*>", re.IGNORECASE)
PRIVATE_USE = (range(0xE000, 0xF900), range(0xF0000, 0xFFFFE), range(0x100000, 0x10FFFE))
WINDOW = 1 << 16  # record_end first looks for </tr> in the last 64 KB, then in wider tails


def record_end(data: bytes) -> int:
    """Index of the last byte of the last complete row in `data` (the '>' of its last `</tr>`,
    case-insensitive, `</tr >` with blanks allowed), or -1 when `data` holds no `</tr>`.
    The reader cuts its 16 MB batches there so that no row is split between batches."""
    window = WINDOW
    while True:
        start = max(0, len(data) - window)
        # lower() of a tail only: the row end is nearly always within the last row's bytes
        found = _last_row_end(data, start)
        if found >= 0 or start == 0:
            return found
        window *= 4


def _last_row_end(data: bytes, start: int) -> int:
    """The '>' of the last `</tr>` that begins at or after `start`, or -1."""
    tail = data[start:].lower()
    end = len(tail)
    while (at := tail.rfind(b"</tr", 0, end)) >= 0:
        match = ROW_END.match(data, start + at)  # on `data`: its blanks may run past the tail
        if match:
            return match.end() - 1
        end = at + 3  # `</track>` and the like: look before this one
    return -1


def parse_rows(data: bytes, width: int) -> pl.DataFrame:
    """The rows of an HTML-table chunk as string columns f0 .. f{width-1}.

    A row with more cells than `width` keeps the first `width` (like extra CSV fields); a row
    with fewer has null in the missing columns (the caller reports it as a record that does not
    match the column spec, or drops it under `eok`). Text after the last `</tr>` that holds a
    `<td ...>` but no `</tr>` (only possible at the end of the input) is a row too."""
    text = data.decode("utf-8", errors="replace")
    cell, close, row = _sentinels(text)
    marked = _mark_tags(text, cell, close, row)
    rows = marked.str.extract_all(f"{_esc(cell)}[^{_esc(row)}]*").explode(empty_as_null=False)
    cells = rows.str.extract_all(f"{_esc(cell)}[^{_esc(cell)}{_esc(close)}]*").list.eval(
        pl.element().str.slice(1)  # drop the cell sentinel
    )
    return pl.DataFrame(
        [cells.list.get(i, null_on_oob=True).alias(f"f{i}") for i in range(width)],
        schema=dict.fromkeys((f"f{i}" for i in range(width)), pl.String),
    )


def _mark_tags(text: str, cell: str, close: str, row: str) -> pl.Series:
    """Replace `</tr>` by `row`, `<td ...>` by `cell` and `</td>` by `close`; CRLF by LF.

    `</tr>` goes first and the `<td ...>` attribute class excludes its sentinel, so a broken
    `<td` tag cannot swallow a row end: the rows then end exactly where record_end finds them.
    """
    series = pl.Series("text", [text])
    if "\r\n" in text:  # a pass over the chunk saved for LF files
        series = series.str.replace_all("\r\n", "\n", literal=True)
    attrs = rf"(?:[ \t\r\n\f/][^>{_esc(row)}]*)?"  # `<td/>` opens a cell, as in HTML5
    return (
        series.str.replace_all(f"(?i)</tr{BLANK}*>", row)
        .str.replace_all(f"(?i)<td{attrs}>", cell)
        .str.replace_all(f"(?i)</td{BLANK}*>", close)
    )


def _sentinels(text: str) -> tuple[str, str, str]:
    """Three characters absent from `text`: C0 controls (one C-level scan each; HTML nearly
    never holds them), else private-use characters that the text does not use."""
    found = [c for c in map(chr, range(0x00, 0x09)) if c not in text]
    if len(found) < 3:
        used = set(text)
        found += itertools.islice(
            (c for c in map(chr, itertools.chain(*PRIVATE_USE)) if c not in used), 3
        )
    if len(found) < 3:
        raise ValueError("tab input: the chunk uses every private-use character")
    return found[0], found[1], found[2]


def _esc(char: str) -> str:
    """`char` as a Rust-regex escape, usable inside and outside character classes."""
    return f"\\x{{{ord(char):X}}}"
