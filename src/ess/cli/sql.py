"""`ess query` and `ess redshift` (placeholder until the SQL issues land)."""

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
    register_unsupported(
        subparsers,
        "redshift",
        "load data into Redshift/PostgreSQL",
        "ess redshift register mycluster",
    )
