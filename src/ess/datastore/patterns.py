"""Category patterns: space-separated, shell-quoted globs whose ``*`` also crosses ``/``.

Essentia matched a pattern like ``$HOME/*tutorials/woodworking/*browse*`` against files several
directories below ``$HOME``, so a pattern is an fnmatch over the whole path, and the walk starts
at the pattern's longest leading directory without wildcards.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import shlex
from dataclasses import dataclass

from ess.errors import CategoryError

_WILDCARDS = re.compile(r"[*?\[]")


def split_patterns(text: str, *, option: str = "pattern") -> list[str]:
    try:
        parts = shlex.split(text)
    except ValueError as exc:
        raise CategoryError(f"{option} {text!r}: {exc}") from exc
    if not parts:
        raise CategoryError(f"{option} is empty")
    return parts


def literal_root(pattern: str) -> str:
    """The directory a walk must start from: everything before the first wildcard's directory."""
    found = _WILDCARDS.search(pattern)
    if found is None:
        return pattern
    return pattern[: pattern.rfind("/", 0, found.start()) + 1]


def has_wildcard(pattern: str) -> bool:
    return _WILDCARDS.search(pattern) is not None


@dataclass(frozen=True)
class PathMatcher:
    """A compiled set of include globs minus exclude globs over whole paths."""

    include: re.Pattern[str]
    exclude: re.Pattern[str] | None
    roots: tuple[str, ...]
    bulk: re.Pattern[str]

    def __call__(self, path: str) -> bool:
        if self.include.match(path) is None:
            return False
        return self.exclude is None or self.exclude.match(path) is None

    def select(self, listing: str) -> list[str]:
        """The matching paths of a NUL-separated listing, found by one regex scan in C."""
        found = [m.group(0) for m in self.bulk.finditer(listing)]
        if self.exclude is None:
            return found
        return [p for p in found if self.exclude.match(p) is None]


def _compile(globs: list[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs))


def _glob_body(glob: str) -> str:
    """fnmatch semantics with every wildcard kept inside one NUL-separated record."""
    out: list[str] = []
    i = 0
    while i < len(glob):
        char = glob[i]
        i += 1
        if char == "*":
            out.append("[^\\x00]*")
        elif char == "?":
            out.append("[^\\x00]")
        elif char == "[":
            end = glob.find("]", i + 1 if i < len(glob) and glob[i] in "!]" else i)
            if end < 0:
                out.append("\\[")
                continue
            body = glob[i:end].replace("\\", "\\\\")
            i = end + 1
            if body.startswith("!"):
                body = "^\\x00" + body[1:]
            elif body.startswith("^"):
                body = "\\" + body
            out.append(f"[{body}]")
        else:
            out.append(re.escape(char))
    return "".join(out)


def _compile_bulk(globs: list[str]) -> re.Pattern[str]:
    body = "|".join(f"(?:{_glob_body(g)})" for g in globs)
    return re.compile(f"(?<![^\\x00])(?:{body})(?![^\\x00])")


def outermost_roots(roots: list[str]) -> tuple[str, ...]:
    """Drop roots nested inside another root, so each file is walked once."""
    kept: list[str] = []
    for root in sorted(set(roots), key=len):
        if not any(root.startswith(k if k.endswith("/") else k + "/") or root == k for k in kept):
            kept.append(root)
    return tuple(sorted(kept))


def compile_matcher(patterns: list[str], excludes: list[str] | None = None) -> PathMatcher:
    return PathMatcher(
        include=_compile(patterns),
        exclude=_compile(excludes) if excludes else None,
        roots=outermost_roots([literal_root(p) for p in patterns]),
        bulk=_compile_bulk(patterns),
    )


def basename(path: str) -> str:
    return posixpath.basename(path)
