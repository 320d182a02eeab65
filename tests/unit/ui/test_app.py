"""The dashboard's application in-process (Starlette's test client): the token gate, the pages
over an empty and a small workspace, escaping, the calendar's days and gaps."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2 for its test client; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from ess.datastore.api import add_category
from ess.datastore.category import Category
from ess.run.progress import RunRecorder
from ess.ui.app import create_app
from ess.ui.data import calendar_days
from ess.workspace import Workspace

TOKEN = "t0ken-for-tests"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / ".conf", tmp_path / ".ess", tmp_path / ".aws")


@pytest.fixture
def client(ws: Workspace) -> TestClient:
    return TestClient(create_app(ws, token=TOKEN, port=1234), follow_redirects=False)


def test_the_token_gate(client: TestClient) -> None:
    assert client.get("/").status_code == 401
    assert client.get("/?token=nope").status_code == 401
    assert client.get("/static/ui.css").status_code == 401
    r = client.get(f"/work?token={TOKEN}&x=1")
    assert r.status_code == 303 and r.headers["location"] == "/work?x=1"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"ess_ui_1234={TOKEN};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert client.get("/work").status_code == 200  # the cookie now
    assert client.get("/static/ui.js").status_code == 200
    assert client.post("/cluster/stop", data={"csrf": "forged"}).status_code == 403


def test_every_page_renders_on_an_empty_workspace(client: TestClient) -> None:
    client.get(f"/?token={TOKEN}")
    for path, text in (
        ("/", "local"),
        ("/cluster", "platform <b>local</b>"),
        ("/work", "no ess stream or ess exec has run"),
        ("/udb", "no database defined"),
        ("/query", 'id="query-form"'),
        ("/dask", "Dask"),
    ):
        r = client.get(path)
        assert r.status_code == 200, path
        assert text in r.text, path
    assert client.get("/category/local/nope").status_code == 500  # one clear line, no trace
    assert "unknown category" in client.get("/category/local/nope").text
    assert client.get("/work/nope").status_code == 404


def test_a_category_page_and_escaping(client: TestClient, ws: Workspace, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for day in (1, 2, 5):
        (data / f"log_2024010{day}.csv").write_text("a,b\n1,<x>\n" * day)
    add_category(ws, Category(name="logs", pattern=f"{data}/log_*"))
    rec = RunRecorder.start(ws, kind="stream", command="echo '<script>'", labels=["<f>"])
    rec.file_done(0, ok=False, returncode=1, stderr=b"<b>bad</b>")
    rec.finish(True)
    client.get(f"/?token={TOKEN}")
    page = client.get("/category/local/logs").text
    assert page.count('class="day has') == 3 and page.count('class="day gap') == 2
    assert 'data-date="2024-01-05" data-files="1"' in page
    assert "&lt;x&gt;" in page and "<x>" not in page
    work = client.get("/work").text
    assert "&lt;script&gt;" in work and "<script>'" not in work
    assert "&lt;b&gt;bad&lt;/b&gt;" in work and "exit status 1" in work


def test_calendar_days_fill_the_gaps_and_count_undated_files() -> None:
    stamps = [
        ("2024-02-27 00:00:00", 5),
        ("2024-03-02 10:00:00", 7),
        ("2024-03-02 11:00:00", 1),
        ("1970-01-01 00:00:00", 3),  # no date in the name
        (42, 3),  # a numbered category
    ]
    days, undated = calendar_days(stamps)
    assert undated == 2
    assert days[0].date == dt.date(2024, 2, 27)
    assert len(days) == 5  # 27, 28, 29 (leap year), 1, 2
    assert [(d.files, d.size) for d in days] == [(1, 5), (0, 0), (0, 0), (0, 0), (2, 8)]
    assert calendar_days([]) == ((), 0)
