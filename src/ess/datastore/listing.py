"""``ess ls``: the datastore's own ``ls``, and the way to preview a category pattern."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from ess.datastore.api import open_catalog
from ess.datastore.category import CategoryFile, check_limit
from ess.datastore.dates import compile_dateregex, display_date
from ess.datastore.patterns import compile_matcher, has_wildcard, literal_root, split_patterns
from ess.datastore.store import Store
from ess.workspace import Workspace


@dataclass(frozen=True)
class ListRequest:
    pattern: str | None = None
    exclude: str | None = None
    category: str | None = None
    label: str | None = None
    recursive: bool = False
    dateregex: str | None = None
    limit: int | None = None


@dataclass(frozen=True)
class Entry:
    path: str
    size: int
    date: str


def list_files(ws: Workspace, request: ListRequest) -> list[Entry]:
    check_limit(request.limit)
    catalog = open_catalog(ws, request.label)
    store = catalog.store
    rule = compile_dateregex(request.dateregex or "auto")
    if request.category:
        files: list[CategoryFile] = catalog.files(request.category)
        entries = [Entry(f.path, f.size, f.date) for f in files]
        if request.pattern:
            keep = compile_matcher([store.qualify(p) for p in split_patterns(request.pattern)])
            entries = [e for e in entries if keep(e.path)]
    else:
        patterns = [store.qualify(p) for p in split_patterns(request.pattern or ".")]
        entries = []
        for pattern in patterns:
            entries += _list_one(catalog.store, pattern, request.recursive)
        entries = [
            Entry(e.path, e.size, display_date(rule.stamp(e.path)) if e.size >= 0 else "")
            for e in entries
        ]
    if request.exclude:
        drop = compile_matcher(["*"], [store.qualify(p) for p in split_patterns(request.exclude)])
        entries = [e for e in entries if drop(e.path)]
    return entries[: request.limit] if request.limit is not None else entries


def _list_one(s: Store, pattern: str, recursive: bool) -> list[Entry]:
    if not has_wildcard(pattern):
        if s.is_dir(pattern):
            if recursive:
                return [
                    Entry(f.path, f.size, "") for f in sorted(s.walk(pattern), key=lambda f: f.path)
                ]
            return [
                Entry(f.path, f.size, "") for f in sorted(s.listdir(pattern), key=lambda f: f.path)
            ]
        info = s.info(pattern)
        return [Entry(info.path, info.size, "")]
    if recursive:
        matcher = compile_matcher([pattern])
        found = [f for root in matcher.roots for f in s.walk(root) if matcher(f.path)]
    else:
        root = literal_root(pattern)
        found = [
            f
            for f in s.listdir(root)
            if fnmatch.fnmatchcase(f.path.rstrip("/"), pattern)
            and "/" not in f.path.rstrip("/")[len(root) :]
        ]
    return [Entry(f.path, f.size, "") for f in sorted(found, key=lambda f: f.path)]
