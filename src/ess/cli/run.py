"""`ess stream`, `ess exec`, `ess file` (placeholder until the engine issue lands)."""

from __future__ import annotations

from typing import Any

from ess.cli._unsupported import register_unsupported


def register(subparsers: Any) -> None:
    register_unsupported(subparsers, "file", "move files between master and workers",
                         "ess file push data.csv --dest in/")
    register_unsupported(subparsers, "stream", "stream category files through a command",
                         "ess stream browse 2014-09-01 2014-09-07 'wc -l'")
    register_unsupported(subparsers, "exec", "run a command on every worker",
                         "ess exec 'hostname'")
