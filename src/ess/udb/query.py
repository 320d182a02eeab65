"""aq_udb: a parsed request (ess.udb.request) executed on the cluster, printed.

The rules run where the data lives (each worker over its partitions) unless a Var column is
updated row by row across keys; then the client runs them over all rows in export order. The
client merges: rows are put in export order (keys by first insertion, rows in insertion
order), then `-lim_key/-lim_rec/-key_rec`, `-sort`, `-top`, `-c`, `-o`.
"""

from __future__ import annotations

import io
from typing import Any

import polars as pl

from ess.errors import AqSyntaxError, NotSupportedError, UdbError
from ess.udb import hashing, merge, server
from ess.udb.client import UdbSession, parse_target
from ess.udb.merge import sort_result
from ess.udb.request import ACTIONS, Request, parse_argv
from ess.udb.rules import RulePlan, literal_value
from ess.udb.server import Query
from ess.udb.spec import Column, DbSpec, load
from ess.workspace import Workspace

#: what a command prints: one buffer, or consecutive pieces (big exports are not joined)
Output = bytes | list[bytes | memoryview]

# ---------------------------------------------------------------------- execution


def run(ws: Workspace, argv: list[str], *, session: UdbSession | None = None) -> bytes:
    """Execute an aq_udb command line; returns what goes to stdout."""
    return b"".join(run_parts(ws, parse_argv(argv), session=session))


def run_parts(
    ws: Workspace, req: Request, *, session: UdbSession | None = None
) -> list[bytes | memoryview]:
    """What a parsed command prints, as consecutive pieces (a big export is not joined)."""
    out = _run(ws, req, session)
    return out if isinstance(out, list) else [out]


def _run(ws: Workspace, req: Request, session: UdbSession | None) -> Output:
    db, tab = parse_target(req.target)
    spec = load(ws, db, req.spec_file)
    if tab not in (".", "var"):
        tab = spec.require(tab).name
    if req.action in ("-crt", "-alt"):
        return b""  # definitions travel with each request; nothing to create on the servers
    from ess.udb.imp import shared_session

    return _execute(session or shared_session(ws), spec, tab, req)


def _execute(s: UdbSession, spec: DbSpec, tab: str, req: Request) -> Output:
    text = spec.text()
    if req.action == "-probe":
        s._require_workers(spec.name, range(len(s.place)))
        return b""
    if req.action == "-clr":
        s.on_all(spec.name, server.w_clear, text, spec.name, None if tab == "." else tab)
        return b""
    if req.action == "-ord":
        return _order(s, spec, tab, req)
    if req.action == "-inf":
        return _info(s, spec)
    if tab == "var":
        return _export_var(s, spec, req)
    var_init = _var_values(s, spec, req)
    plan = RulePlan(tab, req.pp, req.rules, req.bvars, var_init)
    if req.action == "-scn" and plan.empty:
        return b""
    global_rules = not plan.empty and plan.global_vars()
    q = Query(db=spec.name, spec_text=text, target=tab, pids=[],
              rules=None if plan.empty or global_rules else plan)  # fmt: skip
    seg = [a[4:] for a in req.attrs if a.lower().startswith("seg=")]
    cols = _output_columns(spec, tab, req)
    if not global_rules:
        q.seg = seg[0] if seg else None
        if req.action in ("-cnt", "-scn"):  # only the stamps travel back
            q.columns = [merge.K, merge.R]
        if req.action == "-exp":  # workers render their rows; the client orders the lines
            q.render, q.out_attrs = cols, req.out_attrs
            q.keep = _order_spec(req, spec, tab)[0] if req.sort else []
            if _plain(req):  # export order as is: workers send rendered blocks per key
                from ess.udb.export import export_body

                return [_title(cols, req), *export_body(s, q)]
    if _pushdown_ok(req) and not global_rules:
        q.order, q.top = _order_spec(req, spec, tab), req.top
    frame = s.query(q)
    if frame.width == 0:
        frame = _empty(spec, tab)
    if q.order is not None:  # cut on the workers: back to export order (ties), then sorted
        frame = frame.sort(merge.K, maintain_order=True)
    if global_rules:
        full = frame.select(merge.K, "__p")
        writes: dict[str, pl.DataFrame] = {}

        def keep(key: str, stored: pl.DataFrame) -> None:
            writes[key] = stored

        dropped: list[pl.Series] = []
        frame = plan.run(frame, spec, writer=keep, drop_keys=dropped.append)
        for stored in writes.values():
            s.update(q, stored)
        if dropped:
            s.drop_keys(spec.name, full.filter(pl.col(merge.K).is_in(dropped[0].implode())))
        _save_vars(s, spec, frame)
        if seg:
            frame = frame.filter(hashing.segment_mask(frame, [c.name for c in spec.pkey], seg[0]))
    if req.action == "-scn":
        return b""
    frame = _limit(frame, req)
    if req.action == "-cnt":
        return _count(s, spec, tab, frame, req)
    if req.sort:
        frame = sort_result(frame, *_order_spec(req, spec, tab))
    if req.top is not None:
        frame = frame.head(req.top)
    if server.LINE in frame.columns:
        return _write_lines(frame, cols, req)
    return _write(frame, cols, req)


def _empty(spec: DbSpec, tab: str) -> pl.DataFrame:
    if tab == ".":
        return merge.empty_frame(spec.pkey, (), rows=True)
    target = spec.require(tab)
    return merge.empty_frame(spec.pkey, target.columns, rows=True)


def _pushdown_ok(req: Request) -> bool:
    return (req.top is not None and bool(req.sort) and req.lim_key is None
            and req.lim_rec is None and req.key_rec is None and req.action == "-exp")  # fmt: skip


def _plain(req: Request) -> bool:
    """An export in export order, every row: nothing for the client to do per row."""
    return not req.sort and req.top is None and req.lim_key is None and req.lim_rec is None \
        and req.key_rec is None  # fmt: skip


def _order_spec(req: Request, spec: DbSpec, tab: str) -> tuple[list[str], bool]:
    if "ncas" in req.sort_attrs:
        raise NotSupportedError("aq_udb -sort,ncas")
    return [_column_name(spec, tab, c) for c in req.sort], "dec" in req.sort_attrs


def _column_name(spec: DbSpec, tab: str, name: str) -> str:
    low = name.lower()
    cols = [*spec.pkey, *(spec.require(tab).columns if tab not in (".", "var") else ())]
    for c in cols:
        if c.key == low:
            return c.name
    raise AqSyntaxError(f"no column {name!r} in {spec.name}:{tab}")


def _limit(frame: pl.DataFrame, req: Request) -> pl.DataFrame:
    if req.key_rec is not None:
        frame = frame.filter(pl.int_range(pl.len()).over(merge.K) < req.key_rec)
    if req.lim_key is not None:
        keys = frame.get_column(merge.K).unique(maintain_order=True).head(req.lim_key)
        frame = frame.filter(pl.col(merge.K).is_in(keys.implode()))
    if req.lim_rec is not None:
        frame = frame.head(req.lim_rec)
    return frame


def _var_values(s: UdbSession, spec: DbSpec, req: Request) -> dict[str, Any]:
    var = spec.var
    if var is None:
        if req.var_sets or req.bvars or any(g.bvars for g in req.pp):
            raise UdbError(f"database {spec.name} has no variable (ess create variable ...)")
        return {}
    stored = s.var(spec.name)
    values: dict[str, Any] = {}
    if stored is not None and stored.height:
        row = stored.row(0, named=True)
        values = {c.key: row.get(c.name) for c in var.columns}
    for name, text in req.var_sets:
        col = var.column(name)
        if col is None:
            raise AqSyntaxError(f"-var: {name!r} is not a Var column of {spec.name}")
        values[col.key] = literal_value(text, col)
    if req.var_sets:
        s.set_var(spec.name, _var_frame(var.columns, values))
    return values


def _var_frame(cols: tuple[Column, ...], values: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            c.name: pl.Series([values.get(c.key, "" if c.typ in ("S", "IP") else 0)], dtype=c.dtype)
            for c in cols
        }
    )


def _save_vars(s: UdbSession, spec: DbSpec, frame: pl.DataFrame) -> None:
    var = spec.var
    if var is None or frame.height == 0:
        return
    last = frame.tail(1).row(0, named=True)
    s.set_var(spec.name, _var_frame(var.columns, {c.key: last[f"__v_{c.key}"] for c in
                                                  var.columns}))  # fmt: skip


def _export_var(s: UdbSession, spec: DbSpec, req: Request) -> bytes:
    var = spec.var
    if var is None:
        raise UdbError(f"database {spec.name} has no variable")
    stored = s.var(spec.name)
    frame = stored if stored is not None and stored.height else _var_frame(var.columns, {})
    cols = [(c.name, c.name, c.typ) for c in var.columns]
    return _write(frame, cols, req)


def _order(s: UdbSession, spec: DbSpec, tab: str, req: Request) -> bytes:
    attrs = [a.lower() for a in req.attrs]
    targets = [spec.require(tab)] if tab not in (".", "var") else [
        t for t in spec.targets if t.kind == "table" and t.tkey is not None]  # fmt: skip
    if tab == "." and req.ord_cols:
        raise NotSupportedError("aq_udb -ord Db Col... (sorting the key list)")
    for target in targets:
        cols = [_column_name(spec, target.name, c) for c in req.ord_cols]
        if not cols:
            if target.tkey is None:
                raise UdbError(f"-ord {spec.name}:{target.name}: no columns given and no tkey")
            cols = [target.tkey.name]
        s.on_all(spec.name, server.w_order, spec.text(), spec.name, target.name, cols,
                 "dec" in attrs, "ncas" in attrs)  # fmt: skip
    return b""


def _info(s: UdbSession, spec: DbSpec) -> bytes:
    keys = s.query(Query(db=spec.name, spec_text=spec.text(), target=".", pids=[]))
    titles = ['"pkey"', '"var"']
    values = [str(keys.height), "1" if spec.var is not None else "0"]
    for t in spec.targets:
        if t.kind == "var":
            continue
        rows = s.query(Query(db=spec.name, spec_text=spec.text(), target=t.name, pids=[],
                             columns=[merge.K]))  # fmt: skip
        titles.append(f'"{t.name}"')
        values.append(str(rows.height))
    return (",".join(titles) + "\n" + ",".join(values) + "\n").encode()


def _count(s: UdbSession, spec: DbSpec, tab: str, frame: pl.DataFrame, req: Request) -> bytes:
    lines = ['"field","count"']
    if tab == ".":
        lines.append(f'"pkey",{frame.height}')
    else:
        lines.append(f'"pkey",{frame.get_column(merge.K).n_unique() if frame.height else 0}')
        lines.append(f'"row",{frame.height}')
    if req.out_attrs.notitle:
        lines = lines[1:]
    return ("\n".join(lines) + "\n").encode()


def _output_columns(spec: DbSpec, tab: str, req: Request) -> list[tuple[str, str, str]]:
    if tab == ".":
        cols = [(c.name, "pkey" if len(spec.pkey) == 1 else c.name, c.typ) for c in spec.pkey]
    else:
        target = spec.require(tab)
        cols = [(c.name, c.name, c.typ) for c in (*spec.pkey, *target.columns)]
    if req.columns is not None:
        cols = _select(cols, req.columns, spec, tab)
    return cols


def _title(cols: list[tuple[str, str, str]], req: Request) -> bytes:
    from ess.aq.writer import OutCol, title_line

    return b"" if req.out_attrs.notitle else title_line(
        [OutCol(n, lab, t) for n, lab, t in cols], req.out_attrs)  # fmt: skip


def _write_lines(frame: pl.DataFrame, cols: list[tuple[str, str, str]], req: Request) -> bytes:
    head = _title(cols, req)
    if frame.height == 0:
        return head
    buf = io.BytesIO()
    frame.select(server.LINE).write_csv(buf, include_header=False, quote_style="never")
    return head + buf.getvalue()


def _select(cols: list[tuple[str, str, str]], wanted: list[str], spec: DbSpec,
            tab: str) -> list[tuple[str, str, str]]:  # fmt: skip
    by_low = {c[0].lower(): c for c in cols}
    out = []
    npk = len(spec.pkey)
    for w in wanted:
        if w == "*":
            out += cols
        elif w == "+":
            out += cols[npk:]
        elif w.lower() in by_low:
            out.append(by_low[w.lower()])
        elif ":" in w and w.split(":")[0].lower() in by_low:
            name, label = w.split(":", 1)
            c = by_low[name.lower()]
            out.append((c[0], label, c[2]))
        else:
            raise AqSyntaxError(f"-c: no column {w!r} in {spec.name}:{tab}")
    return out


def _write(frame: pl.DataFrame, cols: list[tuple[str, str, str]], req: Request) -> bytes:
    from ess.aq.writer import OutCol, field_expr, title_line

    outcols = [OutCol(name, label, typ if typ in ("S", "F", "IP") else "I")
               for name, label, typ in cols]  # fmt: skip
    buf = io.BytesIO()
    if not req.out_attrs.notitle:
        buf.write(title_line(outcols, req.out_attrs))
    if frame.height:
        line = pl.concat_str([field_expr(c, req.out_attrs) for c in outcols],
                             separator=req.out_attrs.sep)  # fmt: skip
        frame.select(line.fill_null("").alias("l")).write_csv(
            buf, include_header=False, quote_style="never"
        )
    return buf.getvalue()


__all__ = ["ACTIONS", "Request", "parse_argv", "run", "run_parts", "sort_result"]
