"""`ess query`: SQL straight over a category's raw files (parse and print; ess.query runs it)."""

from __future__ import annotations

import argparse
from typing import Any

from ess.cli.common import add_command

DESCRIPTION = """\
SQL over the raw (compressed) files of categories, without loading anything.

Table references are category:start:end (start/end: YYYY-MM-DD[ HH[:MM[:SS]]] or *). Rows are
read with the category's column spec exactly as `aq_pp -f,+1,eok` reads them: rows whose
fields do not convert are dropped (their number goes to stderr).

Essentia's dialect (output as Essentia prints it):
  select * | col, ... from cat:start:end [where FILTER] [order by col] [limit N]
      rows without a header line; ORDER BY is stable (ties keep file order)
  select count(*) | count(col) | count(distinct col), ... from ... [where FILTER]
      "row" (and "k_col" per distinct column), then the counts
  select count(col) [, g] from ... [where FILTER] group by g [g2 ...]
      "g","Count", then one line per group
  FILTER is an aq_pp -filt expression (==, <, &&, ||, PatCmp(...), ...).
Beyond Essentia: any SQL DuckDB accepts over those references -- joins between categories,
SUM/AVG/MIN/MAX, GROUP BY several columns, HAVING, ORDER BY ... DESC, window functions, ...;
its output has a title line of quoted column names. With --check, breaking a rule of
Essentia's dialect (e.g. LIMIT in a COUNT query) is an error.

On a running cluster each worker reads and filters its share of the files (COUNT forms
return partial counts only); without one, this machine's cores do it."""

EXAMPLE = """ess query "select count(distinct userID) from purchase:2014-09-01:2014-09-10"
ess query "select * from browse:*:* where articleID >= 46 limit 5"
ess query --format table "select articleID, sum(price) s from purchase:*:* group by 1 \\
    order by s desc limit 3\""""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "query",
        help="SQL-like query on raw category data",
        description=DESCRIPTION,
        example=EXAMPLE,
        handler=_query,
    )
    parser.add_argument("--label", help="the datastore to query (default: the selected one)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="only validate the statement (syntax, categories, columns, Essentia's rules)",
    )
    parser.add_argument(
        "--format",
        choices=("csv", "json", "table"),
        default="csv",
        help="csv in the aq tools' conventions (default), json (one object per line), table",
    )
    parser.add_argument(
        "statement",
        nargs="+",
        metavar="command",
        help="the statement (several words are joined with spaces)",
    )


def _query(args: argparse.Namespace) -> int:
    from ess.query.engine import run_query
    from ess.workspace import Workspace

    run_query(
        Workspace.from_env(),
        " ".join(args.statement),
        label=args.label,
        fmt=args.format,
        check_only=args.check,
    )
    return 0
