"""`ess cluster` and the legacy `ess instance` (placeholder until the engine issue lands)."""

from __future__ import annotations

from typing import Any

from ess.cli._unsupported import register_unsupported


def register(subparsers: Any) -> None:
    register_unsupported(subparsers, "cluster", "manage worker nodes", "ess cluster status")
