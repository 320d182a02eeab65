"""`ess ui`: the dashboard (placeholder until issue 19 lands)."""

from __future__ import annotations

from typing import Any

from ess.cli._unsupported import register_unsupported


def register(subparsers: Any) -> None:
    register_unsupported(
        subparsers, "ui", "the dashboard (web pages on 127.0.0.1)", "ess ui --open"
    )
