"""The `aq_udb` entry point (placeholder until its issue lands)."""

from __future__ import annotations

import sys


def main() -> None:
    sys.stderr.write("aq_udb: not supported yet (see the compatibility table in README.md)\n")
    sys.exit(10)
