"""The dashboard's HTML: plain server-rendered pages, every value escaped.

No template engine and no client framework: each page is a few f-strings over the views of
:mod:`ess.ui.data`; the only script is the vendored ``static/ui.js`` (live updates of the work
page over server-sent events, confirmation of the cluster buttons).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from ess.ui.data import CategoryView, ClusterView, DatastoreView, Day, QueryView, UdbView

NAV = (
    ("/", "Datastores"),
    ("/cluster", "Cluster"),
    ("/work", "Work"),
    ("/udb", "UDB"),
    ("/query", "Query"),
)


def e(value: object) -> str:
    return escape("" if value is None else str(value))


def human(size: float) -> str:
    from ess.datastore.summary import human_size

    return human_size(size)


def layout(title: str, body: str, *, active: str, dashboard: str | None, csrf: str = "") -> str:
    links = "".join(
        f'<a href="{href}"{" class=active" if href == active else ""}>{e(text)}</a>'
        for href, text in NAV
    )
    if dashboard:
        links += f'<a href="{e(dashboard)}" id="dask-link" target="_blank">Dask dashboard</a>'
    else:
        links += '<a href="/dask" id="dask-link">Dask dashboard</a>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf" content="{e(csrf)}">
<title>{e(title)} · ess</title>
<link rel="stylesheet" href="/static/ui.css">
<script src="/static/ui.js" defer></script>
</head><body>
<header><span class="brand">ess</span><nav>{links}</nav></header>
<main><h1>{e(title)}</h1>
{body}
</main></body></html>
"""


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, id: str = "") -> str:
    """``rows`` hold HTML already escaped by the caller."""
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    ident = f' id="{e(id)}"' if id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ------------------------------------------------------------------------------ datastores
def datastores_page(stores: list[DatastoreView]) -> str:
    parts = []
    for store in stores:
        mark = " (selected)" if store.current else ""
        parts.append(f"<h2>{e(store.label)}{mark} <small>{e(store.description)}</small></h2>")
        if not store.categories:
            parts.append("<p class=muted>no categories</p>")
            continue
        rows = [
            [
                f'<a href="/category/{quote(store.label)}/{quote(c.name)}">{e(c.name)}</a>',
                e(c.count),
                e(human(c.size)),
                e(c.first),
                e(c.last),
                f"<code>{e(c.pattern)}</code>",
            ]
            for c in store.categories
        ]
        parts.append(
            table(["category", "files", "size", "first", "last", "pattern"], rows, id="cats")
        )
    return "\n".join(parts)


def category_page(label: str, view: CategoryView) -> str:
    facts = table(
        ["datastore", "files", "size", "first", "last", "delimiter", "pattern"],
        [
            [
                e(label),
                e(view.count),
                e(human(view.size)),
                e(view.first),
                e(view.last),
                f"<code>{e(view.delimiter)}</code>",
                f"<code>{e(view.pattern)}</code>",
            ]
        ],
    )
    gaps = sum(1 for d in view.days if d.files == 0)
    summary = f"{len(view.days)} days, {gaps} without files"
    if view.undated:
        summary += f"; {view.undated} files without a date in their name"
    spec = "".join(f"<li><code>{e(col)}</code></li>" for col in view.columnspec.split())
    sample = "<p class=muted>no probe sample (run 'ess probe')</p>"
    if view.sample:
        first, *rest = view.sample
        if view.has_header:
            headers, rows = list(first), rest
        else:
            headers, rows = [f"{i + 1}" for i in range(len(first))], list(view.sample)
        sample = table(headers, [[e(v) for v in row] for row in rows], id="sample")
    return f"""{facts}
<h2>Files per day <small>{e(summary)}</small></h2>
{calendar(view.days)}
<h2>Column spec</h2><ul class="spec" id="columnspec">{spec or "<li>none</li>"}</ul>
<h2>Sample rows <small>from the probe</small></h2>{sample}"""


def _level(value: int, low: int, high: int) -> int:
    """1..4 between the smallest and the largest day (0: no file)."""
    return 0 if value == 0 else 1 + int(3.999 * (value - low) / (high - low + 1))


def calendar(days: Sequence[Day]) -> str:
    """A heat map: one column per week (Monday first), one cell per day, darker = more bytes
    (or files: the buttons switch); days without files inside the range are outlined (gaps)."""
    if not days:
        return "<p class=muted>no dated files</p>"
    sizes = [d.size for d in days if d.files]
    counts = [d.files for d in days if d.files]
    start = days[0].date - dt.timedelta(days=days[0].date.weekday())
    cells: dict[tuple[int, int], str] = {}
    for d in days:
        week, weekday = divmod((d.date - start).days, 7)
        b = _level(d.size, min(sizes), max(sizes)) if d.files else 0
        c = _level(d.files, min(counts), max(counts)) if d.files else 0
        kind = "has" if d.files else "gap"
        tip = f"{d.date}: {d.files} files, {human(d.size)}"
        cells[(weekday, week)] = (
            f'<td class="day {kind} b{b} c{c}" data-date="{d.date}" data-files="{d.files}" '
            f'data-bytes="{d.size}" title="{e(tip)}"></td>'
        )
    weeks = max(w for _, w in cells) + 1
    months = []
    for w in range(weeks):
        monday = start + dt.timedelta(weeks=w)
        label = monday.strftime("%b %Y" if w == 0 or monday.month == 1 else "%b")
        months.append(f"<th><span>{label if w == 0 or monday.day <= 7 else ''}</span></th>")
    rows = []
    for wd, name in enumerate(("Mon", "", "Wed", "", "Fri", "", "Sun")):
        row = "".join(cells.get((wd, w), "<td></td>") for w in range(weeks))
        rows.append(f"<tr><th>{name}</th>{row}</tr>")
    head = f"<tr><th></th>{''.join(months)}</tr>"
    switch = (
        '<p class="switch">colour by <button type="button" data-calendar="by-bytes">bytes'
        '</button> <button type="button" data-calendar="by-files">files</button></p>'
    )
    legend = (
        f"<p class=legend>darker: more bytes ({human(min(sizes))} .. {human(max(sizes))} a day)"
        f" or files ({min(counts)} .. {max(counts)} a day); outlined: no file that day; "
        "hover a day for its files and bytes</p>"
    )
    grid = f'<table class="calendar by-bytes" id="calendar">{head}{"".join(rows)}</table>'
    return f'{switch}<div class="scroll">{grid}</div>{legend}'


# ------------------------------------------------------------------------------ cluster
def cluster_page(view: ClusterView, message: str = "", csrf: str = "") -> str:
    flash = f'<p class="flash" id="flash">{e(message)}</p>' if message else ""
    if view.error:
        return f"{flash}<p class=error>{e(view.error)}</p>"
    rows = [
        [
            e(n.id),
            f'<span class="state {e(n.state)}">{e(n.state)}</span>',
            e(n.reservation or ""),
            e(n.public_ip),
            e(n.private_ip),
            e(n.cpu),
            e(n.mem),
            e(n.disk),
            e(n.version or ""),
        ]
        for n in view.nodes
    ]
    headers = ["node", "state", "reservation", "public IP", "private IP", "cpu", "mem", "disk"]
    nodes = table([*headers, "version"], rows, id="nodes")
    problems = "".join(f"<li>{e(p)}</li>" for p in view.problems)
    token = f'<input type="hidden" name="csrf" value="{e(csrf)}">'

    def button(action: str, text: str, extra: str = "") -> str:
        return (
            f'<form method="post" action="/cluster/{action}" class="confirm" '
            f'data-confirm="{e(text)}: are you sure?">{token}{extra}'
            f'<button type="submit" id="btn-{action}">{e(text)}</button></form>'
        )

    add = '<input type="number" name="number" value="1" min="1" max="64" aria-label="workers">'
    buttons = button("start", "Start") + button("stop", "Stop") + button("add", "Add workers", add)
    return f"""{flash}<p>platform <b>{e(view.platform)}</b>, cluster <b id="cluster-id">
{e(view.cluster_id or "none")}</b></p>
{nodes}
{f"<ul class=error>{problems}</ul>" if problems else ""}
<div class="buttons">{buttons}</div>
<p class=muted>cost per hour: no instance type with a known price on this platform</p>"""


# ------------------------------------------------------------------------------ work
def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else ""


def work_fragment(runs: list[dict[str, Any]]) -> str:
    """The runs (newest first); the newest run's files in detail. Replaced live by ui.js."""
    if not runs:
        return "<p class=muted>no ess stream or ess exec has run in this work directory</p>"
    rows = []
    for r in runs:
        total = r.get("total") or 0
        completed = r.get("completed", 0)
        pct = 100 if total == 0 else int(100 * completed / total)
        running = r.get("state") == "running"
        end = time.time() if running else (r.get("finished") or r.get("updated") or 0)
        elapsed = max(1e-3, end - r.get("started", 0))
        rate = r.get("bytes_done", 0) / elapsed
        rows.append(
            [
                f'<a href="/work/{quote(r["id"])}">{e(r["id"])}</a>',
                e(r.get("kind")),
                f"<code>{e(r.get('command'))}</code> {e(r.get('detail', ''))}",
                f'<span class="state {e(r.get("state"))}">{e(r.get("state"))}</span>',
                f'<progress max="100" value="{pct}"></progress> '
                f'<span class="pct" data-run="{e(r["id"])}">{pct}%</span> '
                f"{e(completed)}/{e(total)}",
                e(f"{human(rate)}/s"),
                e(r.get("failed", 0)),
                e(_when(r.get("started"))),
                e(f"{elapsed:.1f} s"),
            ]
        )
    headers = ["run", "kind", "command", "state", "progress", "throughput", "failed", "started",
               "elapsed"]  # fmt: skip
    return table(headers, rows, id="runs") + files_fragment(runs[0])


def files_fragment(run: dict[str, Any]) -> str:
    rows = []
    for i, f in enumerate(run.get("files", [])):
        stderr = f.get("stderr", "")
        detail = e(f.get("error", ""))
        if stderr:
            detail += f"<pre class=stderr>{e(stderr)}</pre>"
        rows.append(
            [
                e(i + 1),
                e(f.get("label")),
                e(human(f.get("size", 0))),
                f'<span class="state {e(f.get("state"))}">{e(f.get("state"))}</span>',
                e(f.get("node", "")),
                detail,
            ]
        )
    title = f"<h2>Run {e(run['id'])} <small>{e(run.get('state'))}</small></h2>"
    return title + table(["#", "file", "size", "state", "node", "error"], rows, id="files")


def work_page(runs: list[dict[str, Any]], *, events: str) -> str:
    return f'<div id="live" data-events="{e(events)}">{work_fragment(runs)}</div>'


# ------------------------------------------------------------------------------ UDB
def udb_page(view: UdbView, preview: str = "", preview_of: str = "") -> str:
    parts = []
    if view.note:
        parts.append(f"<p class=muted>{e(view.note)}</p>")
    if not view.databases:
        parts.append("<p class=muted>no database defined ('ess create database ...')</p>")
    for db in view.databases:
        parts.append(
            f"<h2>database {e(db.name)} <small>ports {e(db.ports)}; pkey "
            f"<code>{e(db.pkey)}</code></small></h2>"
        )
        rows = []
        for t in db.targets:
            link = e(t.name)
            if view.running and t.kind != "variable":
                link = f'<a href="/udb?preview={quote(db.name)}:{quote(t.name)}">{e(t.name)}</a>'
            keys = "" if t.keys is None else t.keys
            count = "" if t.rows is None else t.rows
            rows.append([e(t.kind), link, e(keys), e(count), f"<code>{e(t.columns)}</code>"])
        parts.append(table(["kind", "name", "keys", "rows", "columns"], rows, id=f"db-{db.name}"))
        if db.keys_per_worker:
            held = [[e(w), e(n)] for w, n in sorted(db.keys_per_worker.items())]
            parts.append(table(["worker", "keys held"], held))
    if view.memory:
        mem = [
            [e(w), e(m.get("rows")), e(human(m.get("bytes", 0))), e(human(m.get("max_rss", 0)))]
            for w, m in sorted(view.memory.items())
        ]
        parts.append("<h2>Memory per worker</h2>")
        parts.append(table(["worker", "rows", "data", "max RSS"], mem, id="memory"))
    if preview_of:
        parts.append(
            f"<h2>Export preview of {e(preview_of)}</h2><pre id=preview>{e(preview)}</pre>"
        )
    return "\n".join(parts)


def query_page(view: QueryView | None) -> str:
    text = view.text if view is not None else ""
    form = (
        '<form method="get" action="/query" id="query-form">'
        f'<textarea name="q" rows="4" cols="100" id="query-text">{e(text)}</textarea><br>'
        '<button type="submit" id="run-query">Run</button> <span class=muted>ess query: '
        "category:start:end tables, Essentia's dialect or any DuckDB SQL</span></form>"
    )
    if view is None:
        return form
    if view.error:
        return form + f'<p class="error" id="query-error">{e(view.error)}</p>'
    parts = [form]
    if view.notes:
        parts.append(f"<p class=muted>{e(view.notes)}</p>")
    cut = " (cut: the page shows the first rows only)" if view.truncated else ""
    parts.append(f'<p id="query-count">{len(view.rows)} rows{cut}</p>')
    if view.grouped:
        parts.append(bar_chart(view.columns, view.rows))
    parts.append(table(view.columns, [[e(v) for v in r] for r in view.rows], id="result"))
    return "\n".join(parts)


def bar_chart(columns: Sequence[str], rows: Sequence[Sequence[Any]], limit: int = 50) -> str:
    """Horizontal bars of a GROUP BY answer: the last numeric column per group (the other
    columns name the group). Plain HTML: a bar is a div as wide as its share of the largest."""
    if not rows or len(columns) < 2:
        return ""
    numeric = [
        i
        for i in range(len(columns))
        if all(isinstance(r[i], int | float) and not isinstance(r[i], bool) for r in rows)
    ]
    if not numeric:
        return ""
    value = numeric[-1]
    top = max(abs(float(r[value])) for r in rows[:limit]) or 1.0
    bars = []
    for r in rows[:limit]:
        name = " ".join(str(r[i]) for i in range(len(columns)) if i != value)
        width = 100 * abs(float(r[value])) / top
        bars.append(
            f'<div class="bar"><span class="name">{e(name)}</span>'
            f'<span class="track"><span class="fill" style="width:{width:.1f}%"></span></span>'
            f'<span class="value">{e(r[value])}</span></div>'
        )
    more = f"<p class=muted>first {limit} groups</p>" if len(rows) > limit else ""
    return f'<div class="chart" id="chart"><h2>{e(columns[value])}</h2>{"".join(bars)}</div>{more}'


def dask_page(bokeh: bool) -> str:
    if bokeh:
        return (
            "<p>the cluster's scheduler has no dashboard yet: it starts with the dashboard "
            "when the cluster is (re)started now that bokeh is installed</p>"
        )
    return (
        '<p id="needs-bokeh">Dask\'s dashboard is off: it needs bokeh (<code>pip install '
        "bokeh</code>) and ESS_DASHBOARD not set to 0 when the cluster starts; then restart "
        "the cluster (<code>ess cluster stop; ess cluster start</code>)</p>"
    )


def error_page(message: str) -> str:
    return f'<p class="error">{e(message)}</p>'
