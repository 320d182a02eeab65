"""UDB commands: `ess server/create/drop/use/udbd` (placeholder until the UDB issue lands)."""

from __future__ import annotations

from typing import Any

from ess.cli._unsupported import register_unsupported


def register(subparsers: Any) -> None:
    register_unsupported(subparsers, "server", "UDB spec housekeeping", "ess server reset")
    register_unsupported(subparsers, "create", "define UDB objects",
                         "ess create database wood")
    register_unsupported(subparsers, "drop", "remove UDB objects", "ess drop table allsales")
    register_unsupported(subparsers, "use", "set the active UDB database", "ess use wood")
    register_unsupported(subparsers, "udbd", "start/stop the UDB daemons", "ess udbd restart")
