"""Storage backends behind one small interface, picked from a registry by datastore kind.

``LocalStore`` walks the filesystem with ``os.scandir`` (the categorize hot path: 100,000 files
in well under a second); ``S3Store`` goes through s3fs. Both are built from a picklable
:class:`StoreSpec`, so a worker can open the same store the master described.
"""

from __future__ import annotations

import os
import shutil
import stat as statmod
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, ClassVar, Protocol

from ess.errors import DatastoreError


@dataclass(frozen=True)
class StoreSpec:
    """Everything needed to open a store. ``options`` may hold credentials: never print it."""

    kind: str
    root: str
    options: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int
    mtime: float


class Store(Protocol):
    spec: StoreSpec

    def walk(self, root: str, keep: Callable[[str], bool] | None = None) -> Iterator[FileInfo]:
        """Every file below ``root`` (or ``root`` itself if a file) whose path ``keep``s."""
        ...

    def listdir(self, directory: str) -> list[FileInfo]: ...
    def is_dir(self, path: str) -> bool: ...
    def info(self, path: str) -> FileInfo: ...
    def open(self, path: str) -> BinaryIO: ...
    def write_bytes(self, path: str, data: bytes) -> None: ...
    def qualify(self, pattern: str) -> str: ...


_REGISTRY: dict[str, Callable[[StoreSpec], Store]] = {}


def register(kind: str) -> Callable[[type], type]:
    def decorate(cls: type) -> type:
        _REGISTRY[kind] = cls
        return cls

    return decorate


def open_store(spec: StoreSpec) -> Store:
    try:
        factory = _REGISTRY[spec.kind]
    except KeyError:
        raise DatastoreError(f"unknown datastore kind {spec.kind!r}") from None
    return factory(spec)


_FIND = shutil.which("find")
_FS_ENCODING = sys.getfilesystemencoding()


def _find_walk(root: str, keep: Callable[[str], bool] | None) -> Iterator[FileInfo]:
    """List file names with GNU find, filter them, and stat only the files kept.

    find's C walk takes names from readdir without a stat per file; a PathMatcher then picks
    the wanted paths out of the whole NUL-separated listing with one regex scan. Regular files
    and symlinks to them are listed; symlinked directories are not descended (as os.walk).
    """
    assert _FIND is not None
    listing = subprocess.run(
        [_FIND, root, "(", "-type", "f", "-o", "-xtype", "f", ")", "-print0"],
        capture_output=True,
        check=False,
    ).stdout.decode(_FS_ENCODING, "surrogateescape")
    select = getattr(keep, "select", None)
    if select is not None:
        paths = select(listing)
    else:
        paths = [p for p in listing.split("\0") if p and (keep is None or keep(p))]
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue  # vanished since the listing
        yield FileInfo(path, st.st_size, st.st_mtime)


def _scandir_walk(root: str, keep: Callable[[str], bool] | None) -> Iterator[FileInfo]:
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue  # unreadable directory: skip it as `find` would
        for entry in entries:
            try:
                # is_dir/is_file come free from readdir; stat only the files we keep.
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file() and (keep is None or keep(entry.path)):
                    est = entry.stat()
                    yield FileInfo(entry.path, est.st_size, est.st_mtime)
            except OSError:
                continue


def _os_error(path: str, exc: OSError) -> DatastoreError:
    return DatastoreError(f"{path}: {exc.strerror or exc}")


@register("local")
class LocalStore:
    """The machine's filesystem. Paths are absolute; ``..`` components are kept as written."""

    kind: ClassVar[str] = "local"

    def __init__(self, spec: StoreSpec) -> None:
        self.spec = spec

    def qualify(self, pattern: str) -> str:
        return pattern if pattern.startswith("/") else os.path.join(os.getcwd(), pattern)

    def walk(self, root: str, keep: Callable[[str], bool] | None = None) -> Iterator[FileInfo]:
        if not root:
            root = "/"
        try:
            st = os.stat(root)
        except OSError:
            return
        if not statmod.S_ISDIR(st.st_mode):
            if keep is None or keep(root):
                yield FileInfo(root, st.st_size, st.st_mtime)
            return
        if _FIND is not None:
            yield from _find_walk(root, keep)
        else:  # pragma: no cover - Debian always has GNU find
            yield from _scandir_walk(root, keep)

    def listdir(self, directory: str) -> list[FileInfo]:
        try:
            entries = list(os.scandir(directory or "/"))
        except OSError as exc:
            raise _os_error(directory, exc) from exc
        result = []
        for entry in entries:
            est = entry.stat()
            size = -1 if entry.is_dir() else est.st_size
            result.append(
                FileInfo(entry.path + ("/" if entry.is_dir() else ""), size, est.st_mtime)
            )
        return result

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def info(self, path: str) -> FileInfo:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise _os_error(path, exc) from exc
        return FileInfo(path, st.st_size, st.st_mtime)

    def open(self, path: str) -> BinaryIO:
        try:
            return open(path, "rb")
        except OSError as exc:
            raise _os_error(path, exc) from exc

    def write_bytes(self, path: str, data: bytes) -> None:
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, "wb") as out:
                out.write(data)
        except OSError as exc:
            raise _os_error(path, exc) from exc


@register("s3")
class S3Store:
    """An S3 bucket (optionally a prefix in it) through s3fs; paths are ``bucket/key``."""

    kind: ClassVar[str] = "s3"

    def __init__(self, spec: StoreSpec) -> None:
        import s3fs  # heavy: imported only when an S3 datastore is used

        self.spec = spec
        self.fs = s3fs.S3FileSystem(**spec.options)
        self.root = spec.root.rstrip("/")

    def qualify(self, pattern: str) -> str:
        return f"{self.root}/{pattern.lstrip('/')}"

    def _call(self, path: str, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except FileNotFoundError as exc:
            raise DatastoreError(f"s3://{path}: no such object") from exc
        except PermissionError as exc:
            raise DatastoreError(f"s3://{path}: access denied (check the credentials)") from exc
        except OSError as exc:
            raise DatastoreError(f"s3://{path}: {exc}") from exc

    def walk(self, root: str, keep: Callable[[str], bool] | None = None) -> Iterator[FileInfo]:
        prefix = root.rstrip("/") or self.root
        found = self._call(prefix, lambda: self.fs.find(prefix, detail=True))
        for path, meta in sorted(found.items()):
            if meta.get("type") == "directory" or (keep is not None and not keep(path)):
                continue
            yield FileInfo(path, int(meta.get("size") or 0), _mtime(meta))

    def listdir(self, directory: str) -> list[FileInfo]:
        prefix = directory.rstrip("/") or self.root
        found = self._call(prefix, lambda: self.fs.ls(prefix, detail=True))
        return [
            FileInfo(
                m["name"] + ("/" if m.get("type") == "directory" else ""),
                -1 if m.get("type") == "directory" else int(m.get("size") or 0),
                _mtime(m),
            )
            for m in found
        ]

    def is_dir(self, path: str) -> bool:
        return bool(self._call(path, lambda: self.fs.isdir(path)))

    def info(self, path: str) -> FileInfo:
        meta = self._call(path, lambda: self.fs.info(path))
        return FileInfo(path, int(meta.get("size") or 0), _mtime(meta))

    def open(self, path: str) -> BinaryIO:
        return self._call(path, lambda: self.fs.open(path, "rb", block_size=8 << 20))

    def write_bytes(self, path: str, data: bytes) -> None:
        self._call(path, lambda: self.fs.pipe_file(path, data))


def _mtime(meta: dict[str, Any]) -> float:
    stamp: Any = meta.get("LastModified") or meta.get("mtime")
    return float(stamp.timestamp()) if hasattr(stamp, "timestamp") else 0.0
