"""`ess redshift`: load data into Redshift or PostgreSQL (placeholder until issue 17 lands)."""

from __future__ import annotations

from typing import Any

from ess.cli._unsupported import register_unsupported


def register(subparsers: Any) -> None:
    register_unsupported(
        subparsers,
        "redshift",
        "load data into Redshift/PostgreSQL",
        "ess redshift register mycluster",
    )
