"""The loader a worker runs for one file: ``python -m ess.load.copyin``.

``ess redshift stream`` replaces each file's command by this program; it reads its job from
``ESS_LOAD_JOB`` (JSON: the target without password, the table, the options, the file and the
user's command as substituted) and the password from ``ESS_LOAD_PASSWORD``, which it removes
from the environment before anything else starts. Its stdin is the file's bytes, which it hands
to the user's command (``bash -c``, ``set -o pipefail``) started as its child; the command's
stdout goes, on this worker's own connection, into:

* PostgreSQL: ``COPY table FROM STDIN (FORMAT csv)`` in one transaction with the file's ledger
  row (see :mod:`ess.load.ledger`), committed only when the command exited 0 (so a command
  that fails half-way loads nothing). With MAXERROR/TRUNCATECOLUMNS the output is checked in
  Polars first (:mod:`ess.load.rows`).
* Redshift (``mode`` "s3"): a gzip part under the staging prefix, which the master's manifest
  COPY loads (:mod:`ess.load.redshift`).

It prints one JSON line on stdout (status, rows, rejected) and exits 0, or prints one line
on stderr and exits non-zero.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import IO, Any

from ess.errors import EssError
from ess.load.ledger import FileKey, claim, record, record_errors
from ess.load.options import parse_options
from ess.load.target import Registration, connect, fold_name, quote_table, server_error

ENV_JOB = "ESS_LOAD_JOB"
ENV_PASSWORD = "ESS_LOAD_PASSWORD"
CHUNK = 1 << 20
#: ess.run.pipeline's placeholders for what only the worker knows (kept out of the env: NUL)
_NODE_ID = "\0node_id\0"
_THREAD_ID = "\0thread_id\0"


@dataclass(frozen=True)
class Outcome:
    status: str  # loaded | skipped | changed | staged
    rows: int = 0
    rejected: int = 0


class CommandExit(EssError):
    """The user's command exited non-zero: nothing of the file is loaded."""


def _start_command(job: dict[str, Any]) -> subprocess.Popen[bytes]:
    command = job["command"]
    command = command.replace(_NODE_ID, os.environ.get("ESS_NODE_ID", "1"))
    command = command.replace(_THREAD_ID, os.environ.get("ESS_THREAD_ID", "1"))
    return subprocess.Popen(
        ["bash", "-c", "set -o pipefail; " + command],
        stdin=sys.stdin.buffer,
        stdout=subprocess.PIPE,
    )


def _finish(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdout is not None:
        proc.stdout.close()
    code = proc.wait()
    if code != 0:
        raise CommandExit(f"the command exited with status {code}: nothing of the file loaded")


def _skip_lines(stream: IO[bytes], n: int) -> None:
    for _ in range(n):
        if not stream.readline():
            return


def _copy_sql(conn: Any, table: str, opts: Any) -> str:
    from ess.load.options import literal
    from ess.load.schema import table_columns
    from ess.load.target import quote_ident

    parts = ["FORMAT csv"]
    if opts.null_as is not None:
        parts.append(f"NULL {literal(opts.null_as)}")
    if "EMPTYASNULL" in opts.flags:  # a quoted "" is NULL too, as Redshift's EMPTYASNULL
        names = ", ".join(quote_ident(c.name) for c in table_columns(conn, table))
        parts.append(f"FORCE_NULL ({names})")
    return f"COPY {table} FROM STDIN ({', '.join(parts)})"


def load_postgresql(job: dict[str, Any], password: str) -> Outcome:
    import psycopg

    reg = Registration(**job["target"])
    opts = parse_options(job["options"])
    table = quote_table(job["table"])
    key = FileKey(fold_name(job["table"]), job["path"], job["size"], job["mtime"])
    conn = connect(reg, password)
    try:
        with conn.transaction():
            why = claim(conn, key, reload=job["reload"])
            if why is not None:
                return Outcome(why)
            proc = _start_command(job)
            assert proc.stdout is not None
            if opts.emulated:
                outcome = _load_checked(conn, table, key, proc, opts, reg, password)
            else:
                _skip_lines(proc.stdout, opts.ignoreheader)
                with conn.cursor() as cur:
                    with cur.copy(_copy_sql(conn, table, opts)) as copy:
                        while chunk := proc.stdout.read(CHUNK):
                            copy.write(chunk)
                    outcome = Outcome("loaded", rows=max(cur.rowcount, 0))
            _finish(proc)
            record(conn, key, rows=outcome.rows, rejected=outcome.rejected)
        return outcome
    except psycopg.Error as exc:
        raise server_error(exc) from None
    finally:
        conn.close()


def _load_checked(
    conn: Any,
    table: str,
    key: FileKey,
    proc: subprocess.Popen[bytes],
    opts: Any,
    reg: Registration,
    password: str,
) -> Outcome:
    from ess.load.rows import check_rows
    from ess.load.schema import table_columns

    assert proc.stdout is not None
    cols = table_columns(conn, table)
    data = proc.stdout.read()
    _finish(proc)
    checked = check_rows(data, cols, opts)
    limit = opts.maxerror or 0
    if checked.bad > limit:
        first = checked.rejected[0]
        # the load's transaction rolls back; the rejected rows are kept for the user apart
        _record_apart(reg, password, key, checked.rejected)
        raise EssError(
            f"line {first.line}, column {first.column or '-'}: {first.reason} "
            f"(value {first.value!r}); {checked.bad} bad rows > MAXERROR {limit}: "
            "nothing of the file loaded (see ess_load_errors)"
        )
    record_errors(conn, key, checked.rejected)
    with conn.cursor() as cur, cur.copy(_copy_sql(conn, table, opts)) as copy:
        copy.write(checked.csv)
    return Outcome("loaded", rows=checked.rows, rejected=checked.bad)


def _record_apart(reg: Registration, password: str, key: FileKey, rejected: list[Any]) -> None:
    conn = connect(reg, password)
    try:
        with conn.transaction():
            record_errors(conn, key, rejected)
    finally:
        conn.close()


def stage_s3(job: dict[str, Any]) -> Outcome:
    """Redshift: the command's output, gzipped, as one part under the staging prefix."""
    from ess.load.redshift import put_part

    proc = _start_command(job)
    assert proc.stdout is not None
    rows = put_part(job["part"], proc.stdout)
    _finish(proc)
    return Outcome("staged", rows=rows)


def main() -> int:
    password = os.environ.pop(ENV_PASSWORD, "")
    try:
        job = json.loads(os.environ.pop(ENV_JOB))
    except (KeyError, ValueError):
        sys.stderr.write("ess.load.copyin: no job (it is started by ess redshift stream)\n")
        return 2
    try:
        outcome = stage_s3(job) if job.get("mode") == "s3" else load_postgresql(job, password)
    except EssError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    sys.stdout.write(
        json.dumps({"status": outcome.status, "rows": outcome.rows, "rejected": outcome.rejected})
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
