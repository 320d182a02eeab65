"""Running a query: where the rows are read, what is pushed down, what DuckDB does.

Three ways, chosen from the statement (:mod:`ess.query.dialect`):

* Essentia COUNT forms whose WHERE is an aq_pp filter: every task (one per group of files, on
  the cluster's workers or this machine's cores) returns partial aggregates -- rows per group,
  distinct values per DISTINCT column -- that the master adds up. No row travels.
* Essentia row queries without ORDER BY: rows stream in file order straight to the output, and
  reading stops at the LIMIT (the first rows appear while the first file is still being read).
* Everything else: DuckDB runs the SQL over Arrow batches of the tables' rows, filtered (when
  the WHERE is an aq_pp filter) and reduced to the columns the query names by whoever reads
  them. DuckDB pulls the batches as it goes, so memory stays bounded by what the query itself
  keeps (a sort or a join), not by the input.
"""

from __future__ import annotations

import re
import sys
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, TextIO

import polars as pl

from ess.errors import AqError, ClusterError, EssError, UsageError
from ess.query.dialect import Essentia, Statement, parse
from ess.query.output import ResultWriter
from ess.query.scan import (
    ORDINAL,
    FileSource,
    Partial,
    ScanResult,
    ScanTask,
    check,
    iter_frames,
    scan_share,
)
from ess.query.tables import Table, resolve_table, unknown_column
from ess.workspace import Workspace

TASK_MAX_FILES = 32
TASK_MAX_BYTES = 64 << 20


@dataclass
class Run:
    """One query being run: its tables, the pool, the rows dropped so far."""

    stmt: Statement
    tables: dict[str, Table]
    pool: Any = None  # a TaskPool; None: read in this process only
    dropped: int = 0
    filt: str | None = None  # the WHERE, pushed down as an aq_pp filter
    needed: dict[str, tuple[str, ...]] = field(default_factory=dict)


def run_query(
    ws: Workspace,
    text: str,
    *,
    label: str | None = None,
    fmt: str = "csv",
    check_only: bool = False,
    out: BinaryIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run (or with ``check_only`` only validate) a query; returns the rows written."""
    out = out if out is not None else sys.stdout.buffer
    err = err if err is not None else sys.stderr
    stmt = parse(text)
    if check_only and stmt.violation:
        raise UsageError(f"not in Essentia's query dialect: {stmt.violation}")
    tables = {ref.name: resolve_table(ws, ref, label) for ref in stmt.tables}
    run = Run(stmt, tables)
    _push_down(run)
    plan = _plan(run)
    if check_only:
        return 0
    writer = ResultWriter(out, fmt, plan.header)
    from ess.cluster.provider import provider_for
    from ess.engine.session import pool_for

    conn = provider_for(ws).connection(revive=True)
    with pool_for(conn) as pool:
        run.pool = pool
        plan.execute(run, writer)
    writer.close(plan.columns)
    if run.dropped:
        err.write(
            f"ess query: {run.dropped} row(s) dropped: a field does not convert to the type of "
            "the column spec (as aq_pp -f,eok)\n"
        )
    return writer.rows


# ---------------------------------------------------------------- what is pushed down


def _push_down(run: Run) -> None:
    """The WHERE as an aq_pp filter (when it compiles as one), and the columns to read."""
    stmt = run.stmt
    table = next(iter(run.tables.values()))
    ess = stmt.essentia
    if stmt.where is not None:
        text = stmt.sql[stmt.where[0] : stmt.where[1]].strip()
        task = ScanTask((), table.columnspec, table.delimiter, text, ())
        try:
            check(task)
            run.filt = text
        except AqError as exc:
            if ess is not None and _names_unknown(str(exc)):
                raise UsageError(_aq_unknown(str(exc), table)) from None
    for name, t in run.tables.items():
        run.needed[name] = _needed(stmt, t, ess, run.filt)


def _names_unknown(message: str) -> bool:
    return "unknown" in message.lower() and "column" in message.lower()


def _aq_unknown(message: str, table: Table) -> str:
    m = re.search(r"column[^'\"]*['\"]([^'\"]+)['\"]", message)
    name = m.group(1) if m else message
    return unknown_column(name, list(table.schema), table.ref.category)


def _needed(
    stmt: Statement, table: Table, ess: Essentia | None, filt: str | None
) -> tuple[str, ...]:
    """The columns of ``table`` the rows must carry: those the query names outside a pushed-
    down WHERE (all of them for a ``*``)."""
    if ess is not None:
        if not ess.count and ess.columns is None:
            return tuple(table.schema)
        names = [*(ess.columns or ()), *(i.column for i in ess.items if i.column)]
        names += [*ess.group_by, *([ess.order_by] if ess.order_by else [])]
        found = [table.column(n) for n in names]
        if filt is None and stmt.where is not None:  # DuckDB evaluates the WHERE
            found += [f for t in _where_tokens(stmt) if (f := table.find(t.text))]
        return tuple(dict.fromkeys(found))
    toks = stmt.tokens
    for i, t in enumerate(toks):
        if t.text == "*" and i and toks[i - 1].low in ("select", "distinct", ",", "."):
            return tuple(table.schema)
    skip = range(0)
    if filt is not None and stmt.where is not None:
        skip = range(*stmt.where)
    cands: list[str | None] = [
        table.find(t.text.strip('"'))
        for t in toks
        if (t.kind == "word" or t.text.startswith('"')) and t.start not in skip
    ]
    return tuple(dict.fromkeys(f for f in cands if f))


def _where_tokens(stmt: Statement) -> list[Any]:
    assert stmt.where is not None
    lo, hi = stmt.where
    return [t for t in stmt.tokens if lo <= t.start < hi]


# ---------------------------------------------------------------- plans


@dataclass
class Plan:
    header: list[str] | None
    columns: list[str] = field(default_factory=list)

    def execute(self, run: Run, writer: ResultWriter) -> None:
        raise NotImplementedError


def _plan(run: Run) -> Plan:
    ess = run.stmt.essentia
    table = next(iter(run.tables.values()))
    if ess is not None:
        for name in [*(ess.columns or ()), *ess.group_by, *(i.column for i in ess.items)]:
            if name:
                table.column(name)
        if ess.order_by:
            table.column(ess.order_by)
        where_ok = ess.where is None or run.filt is not None
        if ess.count and where_ok:
            return CountPlan(_count_header(ess, table), ess=ess)
        if not ess.count and ess.order_by is None and where_ok:
            return RowPlan(None, ess=ess)
        sql, header = _essentia_sql(run, ess, table)
        essentia_sql = SqlPlan(header, sql=sql, ordinal=ess.order_by is not None)
        essentia_sql.validate(run)  # e.g. a WHERE that is neither aq_pp's nor SQL
        return essentia_sql
    sql = run.stmt.sql
    if run.filt is not None and run.stmt.where is not None:
        lo, hi = run.stmt.where
        sql = sql[:lo] + " true " + sql[hi:]  # the rows come filtered
    plan = SqlPlan([], sql=sql, ordinal=False)
    plan.validate(run)
    return plan


def _count_header(ess: Essentia, table: Table) -> list[str]:
    if ess.group_by:
        return [table.column(g) for g in ess.group_by] + ["Count"]
    keys = [f"k_{table.column(i.column)}" for i in ess.items if i.kind == "distinct"]
    return ["row", *dict.fromkeys(keys)]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _essentia_sql(run: Run, ess: Essentia, table: Table) -> tuple[str, list[str] | None]:
    """DuckDB SQL with Essentia's meaning, for forms whose WHERE is not an aq_pp filter (or a
    row query with ORDER BY: sorted with the input order as the tie-break, i.e. stable)."""
    src = _q(table.ref.name)
    where = "" if ess.where is None or run.filt is not None else f" WHERE {ess.where}"
    if ess.count:
        header = _count_header(ess, table)
        if ess.group_by:
            groups = ", ".join(_q(table.column(g)) for g in ess.group_by)
            sql = f"SELECT {groups}, count(*) FROM {src}{where} GROUP BY {groups} ORDER BY {groups}"
        else:
            keys = dict.fromkeys(table.column(i.column) for i in ess.items if i.kind == "distinct")
            items = ", ".join(["count(*)", *(f"count(DISTINCT {_q(k)})" for k in keys)])
            sql = f"SELECT {items} FROM {src}{where}"
        return sql, header
    cols = ", ".join(_q(table.column(c)) for c in ess.columns) if ess.columns else None
    select = cols or f"* EXCLUDE ({ORDINAL})"
    order = ""
    if ess.order_by:
        order = f" ORDER BY {_q(table.column(ess.order_by))}, {ORDINAL}"
    limit = f" LIMIT {ess.limit}" if ess.limit is not None else ""
    return f"SELECT {select} FROM {src}{where}{order}{limit}", None


# ---------------------------------------------------------------- reading rows


def _task(run: Run, table: Table, files: Sequence[FileSource], *, ordinal: int = 0,
          partial: Partial | None = None) -> ScanTask:  # fmt: skip
    filt = run.filt if len(run.tables) == 1 else None
    return ScanTask(
        files=tuple(files),
        columnspec=table.columnspec,
        delimiter=table.delimiter,
        filt=filt,
        columns=run.needed[table.ref.name],
        partial=partial,
        first_ordinal=ordinal,
    )


def _groups(table: Table, slots: int) -> list[tuple[int, list[FileSource]]]:
    """Consecutive files in tasks of at most TASK_MAX_FILES / TASK_MAX_BYTES, at least four
    tasks per slot when there are files enough: (index of the first file, files)."""
    n = len(table.files)
    per = max(1, min(TASK_MAX_FILES, n // max(1, 4 * slots)))
    groups: list[tuple[int, list[FileSource]]] = []
    nbytes = 0
    for i, (f, size) in enumerate(zip(table.files, table.sizes, strict=True)):
        if groups and len(groups[-1][1]) < per and nbytes + size <= TASK_MAX_BYTES:
            groups[-1][1].append(f)
            nbytes += size
        else:
            groups.append((i, [f]))
            nbytes = size
    return groups


def _shipped(pool: Any, task: ScanTask) -> ScanTask:
    """The task with its local files' bytes inside, for workers on other machines."""
    if pool.shared_filesystem:
        return task
    files = []
    for f in task.files:
        if getattr(f.store, "kind", None) == "local" and f.data is None:
            with open(f.path, "rb") as fh:
                f = replace(f, data=fh.read())
        files.append(f)
    return replace(task, files=tuple(files))


def _results(run: Run, tasks: list[ScanTask], *, ordered: bool) -> Iterator[ScanResult]:
    """Run ``tasks`` on the pool, a window of them at a time; results in task order when
    ``ordered`` (else as they finish)."""
    from ess.engine.pool import Completions

    pool = run.pool
    window = max(2 * pool.total_slots, 4)
    pending: deque[Any] = deque()
    completions = Completions()
    index = 0
    try:
        while index < len(tasks) or pending:
            while index < len(tasks) and len(pending) < window:
                future = pool.submit(scan_share, _shipped(pool, tasks[index]))
                completions.watch(future)
                pending.append(future)
                index += 1
            if ordered:
                done = [pending.popleft()]
                pool.wait(done)
            else:
                done = [f for f in completions.wait() if f in pending]
                for f in done:
                    pending.remove(f)
            for outcome in pool.outcomes(done):
                if outcome.error is not None:
                    err = outcome.error
                    if isinstance(err, UsageError | AqError | ClusterError):
                        raise err
                    raise ClusterError(f"reading the query's files failed: {err}")
                yield outcome.value
    finally:
        pool.cancel(list(pending))


def _local(run: Run) -> bool:
    from ess.engine.pool import LocalPool

    return isinstance(run.pool, LocalPool)


def row_frames(
    run: Run, table: Table, *, ordinal: bool = False
) -> Generator[pl.DataFrame, None, None]:
    """The table's rows (filtered, needed columns), in file order, batch by batch."""
    if _local(run):  # in this process: batches stream as they are parsed (first rows early)
        task = _task(run, table, table.files, ordinal=1 if ordinal else 0)
        for frame, _height, bad in iter_frames(task):
            run.dropped += bad
            if frame is not None and frame.height:
                yield frame
        return
    tasks = [
        _task(run, table, files, ordinal=first + 1 if ordinal else 0)
        for first, files in _groups(table, run.pool.total_slots)
    ]
    for result in _results(run, tasks, ordered=True):
        run.dropped += result.dropped
        for data in result.frames:
            yield pl.read_ipc_stream(data)


# ---------------------------------------------------------------- the three plans


@dataclass
class RowPlan(Plan):
    ess: Essentia | None = None

    def execute(self, run: Run, writer: ResultWriter) -> None:
        assert self.ess is not None
        table = next(iter(run.tables.values()))
        left = self.ess.limit
        frames = row_frames(run, table)
        try:
            for frame in frames:
                if left is not None:
                    frame = frame.head(left)
                    left -= frame.height
                writer.write(frame)
                if left == 0:
                    break
        finally:
            frames.close()


@dataclass
class CountPlan(Plan):
    ess: Essentia | None = None

    def execute(self, run: Run, writer: ResultWriter) -> None:
        ess = self.ess
        assert ess is not None
        table = next(iter(run.tables.values()))
        group = tuple(table.column(g) for g in ess.group_by)
        distinct = tuple(
            dict.fromkeys(table.column(i.column) for i in ess.items if i.kind == "distinct")
        )
        partial = Partial(group, distinct)
        tasks = [
            _task(run, table, files, partial=partial)
            for _first, files in _groups(table, run.pool.total_slots)
        ]
        counts: list[pl.DataFrame] = []
        values: dict[str, list[pl.DataFrame]] = {c: [] for c in distinct}
        for result in _results(run, tasks, ordered=False):
            run.dropped += result.dropped
            frames = [pl.read_ipc_stream(d) for d in result.frames]
            counts.append(frames[0])
            for c, f in zip(distinct, frames[1:], strict=True):
                if f.width:
                    values[c].append(f)
                    if sum(v.height for v in values[c]) > (1 << 22):  # keep the union small
                        values[c] = [pl.concat(values[c]).unique()]
        writer.write(combine_counts(counts, values, group, distinct, table))


def combine_counts(
    counts: list[pl.DataFrame],
    values: dict[str, list[pl.DataFrame]],
    group: tuple[str, ...],
    distinct: tuple[str, ...],
    table: Table,
) -> pl.DataFrame:
    """The partial aggregates of every task, added up into Essentia's COUNT result."""
    if group:
        parts = [c for c in counts if c.height]
        if not parts:
            schema = {g: table.schema[g] for g in group} | {"Count": pl.Int64()}
            return pl.DataFrame(schema=schema)
        total = pl.concat(parts).group_by(list(group)).agg(pl.col("n").sum().alias("Count"))
        return total.sort(list(group))
    rows = sum(int(c.get_column("n").sum()) for c in counts)
    out = {"row": [rows]}
    for c in distinct:
        vals = values[c]
        out[f"k_{c}"] = [pl.concat(vals).unique().height if vals else 0]
    return pl.DataFrame(out, schema=dict.fromkeys(out, pl.Int64()))


@dataclass
class SqlPlan(Plan):
    sql: str = ""
    ordinal: bool = False

    def _connect(self, run: Run, readers: dict[str, Any]) -> Any:
        import duckdb

        con = duckdb.connect(config={"preserve_insertion_order": True})
        con.execute("SET enable_progress_bar = false")  # never drawn into our output
        for name, reader in readers.items():
            con.register(name, reader)
        return con

    def validate(self, run: Run) -> None:
        """DuckDB binds the SQL over empty tables: syntax and column errors before reading."""
        import pyarrow as pa

        readers = {name: pa.table(self._empty(run, t)) for name, t in run.tables.items()}
        con = self._connect(run, readers)
        try:
            con.execute(f"DESCRIBE {self.sql}")
        except Exception as exc:  # duckdb.Error subclasses: one line, in the query's words
            raise UsageError(explain_duckdb(exc, run)) from None
        finally:
            con.close()

    def _empty(self, run: Run, table: Table) -> Any:
        cols = run.needed[table.ref.name] or (next(iter(table.schema)),)
        schema = {c: table.schema[c] for c in cols}
        if self.ordinal:
            schema[ORDINAL] = pl.Int64()
        return pl.DataFrame(schema=schema).to_arrow(compat_level=pl.CompatLevel.oldest())

    def execute(self, run: Run, writer: ResultWriter) -> None:
        import pyarrow as pa

        readers = {}
        for name, table in run.tables.items():
            if not run.needed[name]:
                run.needed[name] = (next(iter(table.schema)),)  # rows need a column
            schema = self._empty(run, table).schema
            frames = row_frames(run, table, ordinal=self.ordinal)
            readers[name] = pa.RecordBatchReader.from_batches(schema, _batches(frames, schema))
        con = self._connect(run, readers)
        try:
            result = con.sql(self.sql)
            self.columns = list(result.columns)
            if self.header == []:
                self.header = self.columns
                writer.header = self.columns
            for b in result.to_arrow_reader(1 << 16):
                writer.write(pl.from_arrow(pa.Table.from_batches([b])))  # type: ignore[arg-type]
        except (EssError, OSError):
            raise  # ours (reading the files), or the output's (a closed pipe)
        except Exception as exc:  # DuckDB's, at planning or while running: one line
            raise UsageError(explain_duckdb(exc, run)) from None
        finally:
            con.close()


def explain_duckdb(exc: BaseException, run: Run) -> str:
    """A DuckDB error as one line naming the position and token in the query as given."""
    text = str(exc)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    m = re.search(r'Referenced column "([^"]+)" not found', text)
    if m:
        known = [c for t in run.tables.values() for c in t.schema]
        cats = ", ".join(t.ref.category for t in run.tables.values())
        return unknown_column(m.group(1), known, cats)
    m = re.search(r'syntax error at or near "([^"]*)"', text)
    if m:
        token = m.group(1)
        caret = re.search(r"LINE 1: (.*)\n( *)\^", text)
        pos = None
        if caret:
            line = caret.group(1)
            col = len(caret.group(2)) - len("LINE 1: ")
            at = run.stmt.sql.find(line.lstrip("."))
            pos = run.stmt.position(at + col) if at >= 0 else None
        if pos is None:
            at = run.stmt.sql.find(token)
            pos = run.stmt.position(at) if at >= 0 else 0
        return f"syntax error at position {pos + 1} near {token!r}"
    if "syntax error at end of input" in text:
        return f"syntax error at position {len(run.stmt.text) + 1}: the query ends too early"
    return "query: " + re.sub(r"^\w+ Error: ", "", first)


def _batches(frames: Iterator[pl.DataFrame], schema: Any) -> Iterator[Any]:
    for frame in frames:
        yield from frame.to_arrow(compat_level=pl.CompatLevel.oldest()).cast(schema).to_batches()
