"""The datastore library's front door: what the command line and ``ess stream`` call."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import BinaryIO

from ess.datastore import codec
from ess.datastore.category import (
    Catalog,
    Category,
    CategoryFile,
    ProbeResult,
    scan,
    undated_warning,
    validate_name,
)
from ess.datastore.dates import compile_rule, parse_range
from ess.datastore.patterns import split_patterns
from ess.datastore.probe import DEFAULT_SAMPLE, probe_file
from ess.datastore.registry import Registry
from ess.datastore.store import Store, StoreSpec, open_store
from ess.errors import CategoryError, DatastoreError
from ess.workspace import Workspace

__all__ = [
    "CategoryFile",
    "CategoryInfo",
    "Store",
    "StoreSpec",
    "add_category",
    "change_category",
    "open_catalog",
    "open_store",
    "resolve_location",
    "resolve_stream_files",
]

CHANGEABLE = ("columnspec", "dateformat", "dateregex", "usecache", "comment")
# Warnings for the user; the command line prints them on stderr (the library never prints).
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CategoryInfo:
    """What a command running over a category's files needs to know about it."""

    name: str
    columnspec: str
    delimiter: str
    compression: str
    preprocess: str
    archive: str
    # what the empty-selection warning needs to say why nothing was selected
    total: int = 0
    in_range: int = 0
    first: str = ""
    last: str = ""

    def nothing_selected(self, lower: str, upper: str) -> str:
        """Why a stream over this category selected no file (printed as a warning)."""
        if not self.total:
            return f"category {self.name!r} has no files"
        if not self.in_range:
            return (
                f"no file of category {self.name!r} is dated within {lower} .. {upper} "
                f"(its {self.total} files are dated {self.first} .. {self.last})"
            )
        return (
            f"--exclude/--limit left none of the {self.in_range} files of category "
            f"{self.name!r} dated within {lower} .. {upper}"
        )


def open_catalog(ws: Workspace, label: str | None = None) -> Catalog:
    registry = Registry(ws)
    return Catalog(registry, registry.get(label))


def _retype(columnspec: str, letter: str) -> str:
    return " ".join(f"{letter}:{col.split(':', 1)[-1]}" for col in columnspec.split())


def _with_probe(catalog: Catalog, category: Category, files: list[CategoryFile]) -> Category:
    if not files:
        return category
    sample_file = max(files, key=lambda f: (f.size, f.path))  # Essentia sampled the largest
    archive = split_patterns(category.archive, option="--archive") if category.archive else None
    result = probe_file(
        catalog.store,
        sample_file.path,
        size=DEFAULT_SAMPLE,
        compression=category.compression or "auto",
        archive=archive,
        preprocess=category.preprocess,
        delimiter=category.delimiter,
    )
    return replace(category, probe=result)


def add_category(
    ws: Workspace,
    category: Category,
    *,
    label: str | None = None,
    overwrite: bool = False,
    noprobe: bool = False,
    alls: bool = False,
    allx: bool = False,
) -> list[str]:
    """Create (or with ``overwrite`` replace) a category; returns warnings for stderr."""
    validate_name(category.name)
    catalog = open_catalog(ws, label)
    if category.name in catalog.all() and not overwrite:
        return [f"category {category.name!r} already exists; left unchanged (use --overwrite)"]
    compile_rule(category.dateregex, category.dateformat)  # reject a bad rule before scanning
    if category.compression:
        category = replace(category, compression=codec.normalise_compression(category.compression))
    files = scan(catalog.store, category)
    if not files:
        raise CategoryError(
            f"pattern {category.pattern!r} matches no file in datastore {catalog.datastore.label!r}"
        )
    if not noprobe:
        category = _with_probe(catalog, category, files)
    if alls or allx:
        category = replace(
            category, columnspec=_retype(category.effective_columnspec, "S" if alls else "X")
        )
    catalog.save(category, files)
    warning = undated_warning(category, files)
    return [warning] if warning else []


def change_category(
    ws: Workspace,
    attribute: str,
    name: str,
    value: str | None,
    *,
    label: str | None = None,
    alls: bool = False,
    allx: bool = False,
    usecache: bool | None = None,
) -> list[str]:
    """Change one attribute; returns warnings for stderr."""
    catalog = open_catalog(ws, label)
    current = catalog.get(name)
    if attribute == "columnspec":
        if alls or allx:
            new = replace(
                current, columnspec=_retype(current.effective_columnspec, "S" if alls else "X")
            )
        elif value:
            new = replace(current, columnspec=" ".join(value.split()))
        else:
            raise CategoryError("columnspec: give a column spec, --alls or --allx")
    elif attribute in ("dateregex", "dateformat"):
        if not value:
            raise CategoryError(f"{attribute}: give a value")
        new = (
            replace(current, dateregex=value, dateformat=None)
            if attribute == "dateregex"
            else replace(current, dateformat=value, dateregex=None)
        )
        compile_rule(new.dateregex, new.dateformat)
    elif attribute == "usecache":
        flag = usecache if usecache is not None else _parse_bool(value)
        new = replace(current, usecache=flag)
    elif attribute == "comment":
        new = replace(current, comment=value or None)
    else:
        raise CategoryError(f"cannot change {attribute!r} (one of {', '.join(CHANGEABLE)})")
    # A new date rule re-dates every file; other changes keep the stored list as it is.
    files = (
        scan(catalog.store, new)
        if attribute in ("dateregex", "dateformat")
        else (catalog.cached_files(current.name))
    )
    catalog.save(new, files)
    warning = undated_warning(new, files) if attribute in ("dateregex", "dateformat") else None
    return [warning] if warning else []


def _parse_bool(value: str | None) -> bool:
    text = (value or "").strip().lower()
    if text in ("true", "yes", "1", "on", "--usecache", "usecache"):
        return True
    if text in ("false", "no", "0", "off", "--nocache", "nocache"):
        return False
    raise CategoryError(f"usecache: expected --usecache or --nocache, got {value!r}")


def resolve_stream_files(
    ws: Workspace,
    category: str,
    lower: str,
    upper: str,
    *,
    label: str | None = None,
    exclude: str | None = None,
    limit: int | None = None,
) -> tuple[CategoryInfo, StoreSpec, list[CategoryFile]]:
    """The category's files dated within [lower, upper] (``*`` = open), in date order."""
    catalog = open_catalog(ws, label)
    cat = catalog.get(category)
    date_range = parse_range(lower, upper, numeric=cat.date_rule.kind == "number")
    listed = catalog.files(cat.name)
    files = catalog.select(cat.name, date_range, exclude=exclude, limit=limit, files=listed)
    in_range = sum(date_range.contains(f.stamp) for f in listed)
    info = CategoryInfo(
        name=cat.name,
        columnspec=cat.effective_columnspec,
        delimiter=cat.effective_delimiter,
        compression=cat.compression or "auto",
        preprocess=cat.preprocess or "",
        archive=cat.archive or "",
        total=len(listed),
        in_range=in_range,
        first=listed[0].date if listed else "",
        last=listed[-1].date if listed else "",
    )
    if not files:
        log.warning(info.nothing_selected(lower, upper))
    return info, catalog.registry.spec(catalog.datastore), files


def resolve_location(ws: Workspace, target: str) -> tuple[StoreSpec, str]:
    """``label:path`` (or ``s3://bucket/path``) for --s3out: the store and the path in it."""
    registry = Registry(ws)
    if target.startswith("s3://"):
        path = target[len("s3://") :]
        bucket = path.split("/", 1)[0]
        matches = [
            d for d in registry.all().values() if d.kind == "s3" and d.root.split("/")[0] == bucket
        ]
        store = matches[0] if matches else None
        if store is None:
            raise DatastoreError(f"{target}: bucket {bucket!r} is not a registered datastore")
        return registry.spec(store), path
    label, sep, path = target.partition(":")
    if not sep:
        raise DatastoreError(f"{target!r}: expected LABEL:PATH")
    store = registry.get(label)
    spec = registry.spec(store)
    if store.kind == "local":
        return spec, path
    return spec, f"{store.root}/{path.lstrip('/')}"


def probe_category(
    ws: Workspace,
    name: str,
    *,
    label: str | None = None,
    file: str | None = None,
    pcmd: str | None = None,
    size: int | None = None,
) -> ProbeResult:
    """Probe one file of the category (``file`` or the largest) and store the result."""
    catalog = open_catalog(ws, label)
    category = catalog.get(name)
    if file:
        path = catalog.store.qualify(file)
    else:
        files = catalog.files(category.name)
        if not files:
            raise CategoryError(f"category {name!r} has no file to probe")
        path = max(files, key=lambda f: (f.size, f.path)).path
    archive = split_patterns(category.archive, option="--archive") if category.archive else None
    result = probe_file(
        catalog.store,
        path,
        size=size or DEFAULT_SAMPLE,
        compression=category.compression or "auto",
        archive=archive,
        preprocess=category.preprocess,
        pcmd=pcmd,
        delimiter=category.delimiter,
    )
    catalog.save(replace(category, probe=result), catalog.cached_files(category.name))
    return result


def _open_named(ws: Workspace, filename: str, label: str | None) -> tuple[Store, str]:
    store = open_catalog(ws, label).store
    return store, store.qualify(filename)


def copy_file(
    ws: Workspace,
    filename: str,
    sink: BinaryIO,
    *,
    label: str | None = None,
    decompress: bool = False,
    chunk: int = 1 << 20,
) -> None:
    """Write a datastore file's bytes (decompressed by content if asked) to ``sink``."""
    store, path = _open_named(ws, filename, label)
    with store.open(path) as raw:
        source = codec.open_decompressed(raw, name=path) if decompress else raw
        while data := source.read(chunk):
            sink.write(data)
    sink.flush()


def archive_members(
    ws: Workspace, filename: str, *, pattern: str | None = None, label: str | None = None
) -> list[str]:
    store, path = _open_named(ws, filename, label)
    patterns = split_patterns(pattern, option="--pattern") if pattern else []
    with store.open(path) as raw:
        return codec.list_archive(raw, patterns, name=path)
