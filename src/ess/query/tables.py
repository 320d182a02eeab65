"""The tables of a query: each ``category:start:end`` resolved to its files and column spec.

Files are selected exactly as ``ess stream`` selects them (:func:`ess.run.stream.resolve`:
cached listings, dates from the names, the same errors for an unknown category or a bad date
bound). Column names are aq's: case-insensitive, shown as the spec spells them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import polars as pl

from ess.errors import UsageError
from ess.query.dialect import TableRef
from ess.query.scan import FileSource
from ess.workspace import Workspace


@dataclass(frozen=True)
class Table:
    ref: TableRef
    files: tuple[FileSource, ...]
    sizes: tuple[int, ...]
    columnspec: str
    delimiter: str
    schema: dict[str, pl.DataType]  # every column: spec name -> type of its values

    def column(self, name: str) -> str:
        """The spec's name of column ``name`` (any case), or an error suggesting the closest."""
        for label in self.schema:
            if label.lower() == name.lower():
                return label
        raise UsageError(unknown_column(name, list(self.schema), self.ref.category))

    def find(self, name: str) -> str | None:
        for label in self.schema:
            if label.lower() == name.lower():
                return label
        return None


def unknown_column(name: str, known: list[str], category: str) -> str:
    lowered = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.5)
    hint = f" (did you mean {lowered[close[0]]}?)" if close else ""
    return f"unknown column {name} in category {category}{hint}; its columns: {', '.join(known)}"


def resolve_table(ws: Workspace, ref: TableRef, label: str | None) -> Table:
    from ess.aq.colspec import parse_colspec, polars_dtype
    from ess.run.stream import StreamRequest, resolve

    resolved = resolve(ws, StreamRequest(ref.category, ref.lower, ref.upper, label=label))
    info = resolved.info
    if not info.columnspec.strip():
        raise UsageError(f"category {ref.category} has no column spec (ess category change)")
    schema: dict[str, pl.DataType] = {}
    for word in info.columnspec.split():
        spec = parse_colspec(word)
        if not spec.skip:
            schema[spec.name] = polars_dtype(spec.typ)
    files = tuple(
        FileSource(resolved.store, f.path, info.compression, resolved.archive)
        for f in resolved.files
    )
    return Table(
        ref=ref,
        files=files,
        sizes=tuple(f.size for f in resolved.files),
        columnspec=info.columnspec,
        delimiter=info.delimiter,
        schema=schema,
    )
