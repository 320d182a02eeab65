"""`ess query`: SQL over raw category files (placeholder until issue 18 lands)."""

from __future__ import annotations

from typing import Any

from ess.cli._unsupported import register_unsupported


def register(subparsers: Any) -> None:
    register_unsupported(
        subparsers,
        "query",
        "SQL-like query on raw category data",
        "ess query 'select count(*) from browse:*:*'",
    )
