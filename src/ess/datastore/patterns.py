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

    def __call__(self, path: str) -> bool:
        if self.include.match(path) is None:
            return False
        return self.exclude is None or self.exclude.match(path) is None


def _compile(globs: list[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs))


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
    )


def basename(path: str) -> str:
    return posixpath.basename(path)
