"""The `udbsql` command: SQL over the UDB, translated to aq_udb command lines (ess.query.udbsql)."""

from __future__ import annotations

import argparse
import os
import sys

DESCRIPTION = """\
SQL over UDB tables: the statement is translated to aq_udb command lines, run like aq_udb.

  select * | col, ... from db:table [where FILTER] [order by col [desc]] [limit N]
      -> aq_udb -exp db:table [-filt FILTER] [-sort[,dec] col] [-top N] [-c col ...]
  select count(*) from db:table [where FILTER]          -> aq_udb -cnt db:table [-filt FILTER]
  select count(distinct c1), count(distinct c2), count(*) from db:table
      -> aq_udb -exp db:table -c c1 c2, counted here: "row","k_c1","k_c2"
  select count(*) from db:table group by c1 c2          -> "c1","c2","Count"
  ... where key IN (select key2 from [db:]table2 [where FILTER2])
      -> aq_udb -exp db:table2 [-filt FILTER2] -c key2 first, then the outer command on its keys
FROM takes database:table, database:vector or database:var; FILTER is an aq_udb -filt
expression."""

EXAMPLE = """udbsql "select * from wood:usersales order by total desc limit 10"
udbsql -l "select count(distinct userid) from wood:purchases\""""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="udbsql",
        description=DESCRIPTION,
        epilog="example:\n  " + EXAMPLE.replace("\n", "\n  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="print the aq_udb command(s) on stderr first"
    )
    parser.add_argument(
        "-l", "--list", action="store_true", help="only list the aq_udb command(s), run nothing"
    )
    parser.add_argument("statement", nargs="+", help="the statement (words joined with spaces)")
    return parser


def main(argv: list[str] | None = None) -> None:
    from ess.errors import EssError

    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        from ess.query.udbsql import run, translate
        from ess.workspace import Workspace

        tr = translate(" ".join(args.statement))
        if args.list or args.verbose:
            stream = sys.stdout if args.list else sys.stderr
            for line in tr.commands():
                stream.write(line + "\n")
            stream.flush()
        if args.list:
            sys.exit(0)
        sys.stdout.buffer.write(run(Workspace.from_env(), tr))
        sys.stdout.flush()
    except EssError as exc:
        sys.stdout.flush()
        sys.stderr.write(f"udbsql: error: {exc}\n")
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(0)
