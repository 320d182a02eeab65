"""Text of ``ess summary``: byte-compatible with Essentia 3.2's datastore table (spec 2.3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ess.datastore.category import Category, CategoryFile
from ess.datastore.dates import NONE_STAMP, display_date

_UNITS = "BKMGTP"


def human_size(size: float) -> str:
    """Base-1024 size with one decimal and a unit letter: 380900 -> 372.0K, 2021925 -> 1.9M."""
    unit = 0
    while size >= 1024 and unit < len(_UNITS) - 1:
        size /= 1024
        unit += 1
    return f"{size:.1f}{_UNITS[unit]}"


@dataclass(frozen=True)
class CategoryStats:
    name: str
    count: int
    size: int
    first: str
    last: str

    @classmethod
    def of(cls, name: str, files: list[CategoryFile]) -> CategoryStats:
        if not files:
            none = display_date(NONE_STAMP)
            return cls(name, 0, 0, none, none)
        stamps = [f.stamp for f in files]
        return cls(
            name,
            len(files),
            sum(f.size for f in files),
            display_date(min(stamps)),
            display_date(max(stamps)),
        )

    def to_json(self) -> dict[str, Any]:
        """``ess summary --json``: sizes in bytes; no file, no dates (null, not 1970-01-01)."""
        first, last = (self.first, self.last) if self.count else (None, None)
        return {"name": self.name, "files": self.count, "bytes": self.size,
                "first": first, "last": last}  # fmt: skip


def datastore_json(label: str, stats: list[CategoryStats]) -> dict[str, Any]:
    """The document of ``ess summary --json`` (docs/json-schemas/summary.json)."""
    ordered = sorted(stats, key=lambda s: s.name)
    return {
        "label": label,
        "files": sum(s.count for s in stats),
        "bytes": sum(s.size for s in stats),
        "categories": [s.to_json() for s in ordered],
    }


def datastore_summary(label: str, stats: list[CategoryStats], *, short: bool = False) -> str:
    from tabulate import tabulate

    rows = [
        [s.name, s.count, human_size(s.size), s.first, s.last]
        for s in sorted(stats, key=lambda s: s.name)
    ]
    if short:
        total = sum(s.count for s in stats), sum(s.size for s in stats)
        return f"{total[0]} files, {human_size(total[1])}\n"
    table = tabulate(
        rows, headers=["Name", "Count", "Size", "first", "last"], disable_numparse=False
    )
    lines = [
        "",
        "-" * 72,
        f" {label} ".center(72, "-"),
        "-" * 72,
        "",
        " File summary ".center(72, "="),
        table + " ",
        "",
        "=" * 72,
        "",
    ]
    return "\n".join(lines) + "\n"


def _field(label: str, value: object) -> str:
    return (label.ljust(13) + ("" if value is None or value == "" else str(value))).rstrip()


def _date_format(category: Category) -> str:
    return category.dateformat or ("" if category.dateregex else "auto")


def category_json(category: Category, stats: CategoryStats) -> dict[str, Any]:
    """``ess summary CATEGORY --json``: the fields of the text summary, values unformatted."""
    columnspec = category.effective_columnspec
    return {
        "name": category.name,
        "pattern": category.pattern,
        "exclude": category.exclude,
        "dateformat": _date_format(category) or None,
        "dateregex": category.dateregex,
        "archive": category.archive,
        "compression": category.effective_compression,
        "delimiter": category.effective_delimiter,
        **{k: v for k, v in stats.to_json().items() if k != "name"},
        "columnspec": columnspec,
        "columns": columnspec.split(),
        "preprocess": category.preprocess,
        "usecache": category.usecache,
        "comment": category.comment,
        "pkey": category.pkey,
        "sample_lines": list(category.probe.sample_lines) if category.probe else [],
    }


def category_summary(category: Category, stats: CategoryStats) -> str:
    probe = category.probe
    date_format = _date_format(category)
    columnspec = category.effective_columnspec
    lines = [
        _field("Name:", category.name),
        _field("Pattern:", category.pattern),
        _field("Exclude:", category.exclude if category.exclude else "None"),
        _field("Date Format:", date_format),
        _field("Date Regex:", category.dateregex),
        _field("Archive:", category.archive),
        _field("Delimiter:", category.effective_delimiter),
        _field("# of files:", stats.count),
        _field("Total size:", human_size(stats.size)),
        _field("File range:", f"{stats.first} - {stats.last}"),
        _field("# columns:", len(columnspec.split())),
        _field("Column Spec:", columnspec),
        _field("Preprocess:", category.preprocess),
        _field("usecache:", category.usecache),
    ]
    if category.comment:
        lines.append(_field("Comment:", category.comment))
    if category.pkey:
        lines.append(_field("Primary key:", category.pkey))
    lines += ["", "First few lines:", *(probe.sample_lines if probe else [])]
    return "\n".join(lines) + "\n"


def attribute(category: Category, name: str) -> str:
    """``ess summary CAT ATTR``: the raw value only."""
    return attribute_value(category, name) + "\n"


def attribute_value(category: Category, name: str) -> str:
    values = {
        "pkey": category.pkey or "",
        "columnspec": category.effective_columnspec,
        "schema": "\n".join(category.effective_columnspec.split()),
        "delimiter": category.effective_delimiter,
        "compression": category.effective_compression,
        "preprocess": category.preprocess or "",
    }
    return values[name]
