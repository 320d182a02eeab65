"""The `udbsql` command: SQL over the UDB, translated to aq_udb (placeholder until issue 18)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] in (["-h"], ["--help"]):
        sys.stdout.write("usage: udbsql [-v] [-l] STATEMENT\n\nnot supported yet\n")
        sys.exit(0)
    sys.stderr.write("udbsql: not supported yet (see the compatibility table in README.md)\n")
    sys.exit(10)
