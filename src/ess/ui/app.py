"""The dashboard's web application (Starlette): routes, the token gate, live updates.

Every request must carry the token printed by ``ess ui``: once as ``?token=...`` (the link the
command prints), after which a cookie (HttpOnly, SameSite=Strict, named after the port so two
dashboards on one machine do not clash) carries it; anything else gets 401. The buttons that
change the cluster are POST forms that also carry a per-server form token, so another site
cannot submit them. Pages call the library in Starlette's thread pool (plain ``def``
endpoints), so a slow ``cluster status`` does not stall the live updates.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from ess.errors import EssError
from ess.ui import data, pages
from ess.workspace import Workspace

STATIC = Path(__file__).with_name("static")
#: seconds between two looks at the run records for the live work page
POLL = 0.5


class TokenGate:
    """ASGI middleware: 401 unless the request carries the token (query once, then cookie)."""

    def __init__(self, app: ASGIApp, *, token: str, cookie: str) -> None:
        self.app = app
        self.token = token
        self.cookie = cookie

    def _ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = request.query_params.get("token")
        if given is not None and self._ok(given):
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            response: Response = RedirectResponse(target, status_code=303)
            response.set_cookie(self.cookie, self.token, httponly=True, samesite="strict")
            await response(scope, receive, send)
            return
        if self._ok(request.cookies.get(self.cookie)):
            await self.app(scope, receive, send)
            return
        response = PlainTextResponse(
            "401 Unauthorized: open the link 'ess ui' printed (it carries the token)\n",
            status_code=401,
        )
        await response(scope, receive, send)


def create_app(ws: Workspace, *, token: str, port: int) -> ASGIApp:
    csrf = hmac.new(token.encode(), b"ess-ui-form", hashlib.sha256).hexdigest()

    def page(title: str, body: str, active: str, status: int = 200) -> HTMLResponse:
        html = pages.layout(
            title, body, active=active, dashboard=data.dask_dashboard(ws), csrf=csrf
        )
        return HTMLResponse(html, status_code=status)

    def guarded(title: str, active: str, make: Callable[[], str]) -> HTMLResponse:
        try:
            return page(title, make(), active)
        except EssError as exc:
            return page(title, pages.error_page(str(exc)), active, status=500)

    def datastores(request: Request) -> Response:
        return guarded("Datastores", "/", lambda: pages.datastores_page(data.datastores(ws)))

    def category(request: Request) -> Response:
        label, name = request.path_params["label"], request.path_params["name"]
        return guarded(
            f"Category {name}",
            "/",
            lambda: pages.category_page(label, data.category(ws, label, name)),
        )

    def cluster(request: Request) -> Response:
        message = request.query_params.get("msg", "")
        return guarded(
            "Cluster",
            "/cluster",
            lambda: pages.cluster_page(data.cluster(ws), message, csrf),
        )

    async def cluster_action(request: Request) -> Response:
        # the buttons post urlencoded forms; parsed here (Starlette's form() needs an extra
        # package, python-multipart, for what two fields need)
        body = (await request.body())[:4096].decode(errors="replace")
        form = {k: v[0] for k, v in parse_qs(body).items()}
        if not hmac.compare_digest(form.get("csrf", ""), csrf):
            return PlainTextResponse("403 Forbidden: stale form\n", status_code=403)
        action = request.path_params["action"]
        try:
            number = int(form.get("number") or 1)
        except ValueError:
            number = 0
        from starlette.concurrency import run_in_threadpool

        try:
            message = await run_in_threadpool(data.cluster_action, ws, action, number)
        except EssError as exc:
            message = f"{action} failed: {exc}"
        return RedirectResponse(f"/cluster?msg={quote(message)}", status_code=303)

    def work(request: Request) -> Response:
        return guarded(
            "Work", "/work", lambda: pages.work_page(data.runs(ws), events="/work/events")
        )

    def run_detail(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        runs = [r for r in data.runs(ws, limit=1000) if r["id"] == run_id]
        if not runs:
            return page("Run", pages.error_page(f"no run {run_id}"), "/work", status=404)
        return page(f"Run {run_id}", pages.files_fragment(runs[0]), "/work")

    async def work_events(request: Request) -> Response:
        return StreamingResponse(
            _events(request, ws),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    def udb(request: Request) -> Response:
        target = request.query_params.get("preview", "")

        def make() -> str:
            view = data.udb(ws)
            preview = ""
            if target and view.running:
                db, _, tab = target.partition(":")
                preview = data.udb_preview(ws, db, tab)
            return pages.udb_page(view, preview, target)

        return guarded("UDB", "/udb", make)

    def query(request: Request) -> Response:
        text = request.query_params.get("q", "").strip()
        return guarded(
            "Query", "/query", lambda: pages.query_page(data.query(ws, text) if text else None)
        )

    def dask(request: Request) -> Response:
        link = data.dask_dashboard(ws)
        if link:
            return RedirectResponse(link, status_code=303)
        return page("Dask dashboard", pages.dask_page(data.bokeh_installed()), "")

    routes = [
        Route("/", datastores),
        Route("/category/{label}/{name}", category),
        Route("/cluster", cluster),
        Route("/cluster/{action}", cluster_action, methods=["POST"]),
        Route("/work", work),
        Route("/work/events", work_events),
        Route("/work/{run_id}", run_detail),
        Route("/udb", udb),
        Route("/query", query),
        Route("/dask", dask),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes)
    return TokenGate(app, token=token, cookie=f"ess_ui_{port}")


async def _events(request: Request, ws: Workspace) -> AsyncIterator[str]:
    """Server-sent events: the work fragment whenever a run record changes (checked every
    POLL seconds), and a comment every 15 s so proxies and tunnels keep the stream open."""
    last = ""
    idle = 0.0
    while not await request.is_disconnected():
        runs = data.runs(ws)
        key = json.dumps([(r["id"], r.get("updated"), r.get("state")) for r in runs])
        if key != last:
            last = key
            html = pages.work_fragment(runs)
            yield "event: work\n" + "".join(f"data: {line}\n" for line in html.splitlines()) + "\n"
            idle = 0.0
        elif idle >= 15:
            yield ": keep-alive\n\n"
            idle = 0.0
        await asyncio.sleep(POLL)
        idle += POLL
