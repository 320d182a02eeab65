"""Categories: named rules over a datastore's files, with a date per file (spec section 3).

A category's definition lives in ``<label>/categories.json`` and its file list in
``<label>/files/<name>.json``. Every change first builds the complete new state in memory
(scan, dates, probe) and only then writes it, file list before definition, each atomically,
so a failing command leaves the stored state exactly as it was.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from ess.datastore.dates import DateRange, DateRule, Stamp, compile_rule
from ess.datastore.patterns import compile_matcher, has_wildcard, split_patterns
from ess.datastore.registry import Datastore, Registry
from ess.datastore.store import Store, open_store
from ess.errors import CategoryError, UsageError
from ess.workspace import read_json, update_json, write_json_atomic

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ProbeResult:
    file: str
    compression: str
    delimiter: str
    columnspec: str
    has_header: bool
    sample_lines: list[str]

    @property
    def ncolumns(self) -> int:
        return len(self.columnspec.split()) if self.columnspec else 0


@dataclass(frozen=True)
class Category:
    name: str
    pattern: str
    exclude: str | None = None
    dateregex: str | None = None
    dateformat: str | None = None
    archive: str | None = None
    compression: str | None = None  # forced by the user; None = detected
    delimiter: str | None = None  # override
    columnspec: str | None = None  # override
    preprocess: str | None = None
    comment: str | None = None
    usecache: bool = False
    pkey: str | None = None
    probe: ProbeResult | None = None

    @property
    def date_rule(self) -> DateRule:
        return compile_rule(self.dateregex, self.dateformat)

    @property
    def effective_columnspec(self) -> str:
        return self.columnspec or (self.probe.columnspec if self.probe else "")

    @property
    def effective_delimiter(self) -> str:
        return self.delimiter or (self.probe.delimiter if self.probe else ",")

    @property
    def effective_compression(self) -> str:
        return self.compression or (self.probe.compression if self.probe else "auto")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Category:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in raw.items() if k in known}
        if data.get("probe"):
            data["probe"] = ProbeResult(**data["probe"])
        return cls(**data)


@dataclass(frozen=True)
class CategoryFile:
    path: str
    size: int
    mtime: float
    stamp: Stamp

    @property
    def date(self) -> str:
        from ess.datastore.dates import display_date

        return display_date(self.stamp)


def undated_warning(category: Category, files: list[CategoryFile]) -> str | None:
    """A warning when a --dateregex / --dateformat the user gave finds no date in some file
    names: those files silently get the 1970-01-01 ``none`` date (or number 0)."""
    rule = category.date_rule
    if not rule.explicit or not files:
        return None
    missed = [f.path for f in files if not rule.extracts(f.path)]
    if not missed:
        return None
    option = "dateregex" if category.dateregex else "dateformat"
    fallback = "number 0" if rule.kind == "number" else "date 1970-01-01"
    return (
        f"category {category.name!r}: {option} {category.dateregex or category.dateformat!r} "
        f"finds no date in "
        f"{len(missed)} of {len(files)} file names (e.g. {missed[0]}); they get the "
        f"{fallback}"
    )


def check_limit(limit: int | None) -> None:
    """--limit counts files: a negative one would silently drop files from the end."""
    if limit is not None and limit < 0:
        raise UsageError(f"--limit {limit}: give 0 or more files")


def validate_name(name: str) -> None:
    if not _NAME.match(name):
        raise CategoryError(
            f"category name {name!r}: use letters, digits, '_', '-' or '.', no spaces"
        )


def scan(store: Store, category: Category) -> list[CategoryFile]:
    """Match the category's patterns against the store; files sorted by (date, path)."""
    patterns = [_as_glob(store, store.qualify(p)) for p in split_patterns(category.pattern)]
    excludes = (
        [store.qualify(p) for p in split_patterns(category.exclude, option="--exclude")]
        if category.exclude
        else None
    )
    matcher = compile_matcher(patterns, excludes)
    rule = category.date_rule
    found: dict[str, CategoryFile] = {}
    for root in matcher.roots:
        for info in store.walk(root, keep=matcher):
            if info.path not in found:
                found[info.path] = CategoryFile(
                    info.path, info.size, info.mtime, rule.stamp(info.path)
                )
    # One rule gives every file of a category the same stamp type (all str or all int).
    return sorted(found.values(), key=lambda f: (f.stamp, f.path))


def _as_glob(store: Store, pattern: str) -> str:
    """A wildcard-free pattern naming a directory means every file below it."""
    if not has_wildcard(pattern) and store.is_dir(pattern):
        return pattern.rstrip("/") + "/*"
    return pattern


class Catalog:
    """The categories of one datastore."""

    def __init__(self, registry: Registry, datastore: Datastore) -> None:
        self.registry = registry
        self.datastore = datastore
        self.directory: Path = registry.directory(datastore.label)
        self.definitions_path = self.directory / "categories.json"
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.registry.spec(self.datastore))
        return self._store

    def files_path(self, name: str) -> Path:
        return self.directory / "files" / f"{name}.json"

    # ------------------------------------------------------------------ reading
    def all(self) -> dict[str, Category]:
        raw = read_json(self.definitions_path, {}) or {}
        return {name: Category.from_json(entry) for name, entry in raw.items()}

    def get(self, name: str) -> Category:
        categories = self.all()
        if name in categories:
            return categories[name]
        folded = {k.lower(): v for k, v in categories.items()}
        if name.lower() in folded:
            return folded[name.lower()]
        known = ", ".join(sorted(categories)) or "none defined"
        raise CategoryError(
            f"unknown category {name!r} in datastore {self.datastore.label!r} (known: {known})"
        )

    def cached_files(self, name: str) -> list[CategoryFile]:
        raw = read_json(self.files_path(name), {"files": []}) or {"files": []}
        return [CategoryFile(*entry) for entry in raw["files"]]

    def files(self, name: str, *, refresh: bool | None = None) -> list[CategoryFile]:
        """The category's files; rescanned unless the category uses the cache."""
        category = self.get(name)
        if refresh is None:
            refresh = not category.usecache
        if not refresh:
            return self.cached_files(category.name)
        files = scan(self.store, category)
        self._write_files(category.name, files)
        return files

    def select(
        self,
        name: str,
        date_range: DateRange,
        *,
        exclude: str | None = None,
        limit: int | None = None,
        files: list[CategoryFile] | None = None,
    ) -> list[CategoryFile]:
        """The files dated within ``date_range``, minus ``exclude``, at most ``limit``; from
        ``files`` when the caller already has the category's list (one scan, not two)."""
        check_limit(limit)
        listed = self.files(name) if files is None else files
        files = [f for f in listed if date_range.contains(f.stamp)]
        if exclude:
            matcher = compile_matcher(
                ["*"], [self.store.qualify(p) for p in split_patterns(exclude, option="--exclude")]
            )
            files = [f for f in files if matcher(f.path)]
        return files[:limit] if limit is not None else files

    # ------------------------------------------------------------------ writing
    def _write_files(self, name: str, files: list[CategoryFile]) -> None:
        payload = {"files": [[f.path, f.size, f.mtime, f.stamp] for f in files]}
        write_json_atomic(self.files_path(name), payload, compact=True)

    def _write_definition(self, category: Category | None, name: str) -> None:
        def change(current: dict[str, Any] | None) -> dict[str, Any]:
            result = {k: v for k, v in (current or {}).items() if k != name}
            if category is not None:
                result[category.name] = category.to_json()
            return result

        update_json(self.definitions_path, change, default={})

    def save(self, category: Category, files: list[CategoryFile]) -> None:
        self._write_files(category.name, files)
        self._write_definition(category, category.name)

    def delete(self, name: str) -> None:
        category = self.get(name)
        self._write_definition(None, category.name)
        self.files_path(category.name).unlink(missing_ok=True)

    def rename_copy(self, source: str, dest: str, *, overwrite: bool = False) -> Category:
        validate_name(dest)
        original = self.get(source)
        if dest in self.all() and not overwrite:
            raise CategoryError(f"category {dest!r} already exists")
        copy = replace(original, name=dest)
        self.save(copy, self.cached_files(original.name))
        return copy
