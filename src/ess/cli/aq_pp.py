"""The `aq_pp` entry point (placeholder until its issue lands)."""

from __future__ import annotations

import sys


def main() -> None:
    sys.stderr.write("aq_pp: not supported yet (see the compatibility table in README.md)\n")
    sys.exit(10)
