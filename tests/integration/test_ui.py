"""`ess ui` in a real headless Chromium (selenium 4) against a local 2-worker cluster.

One cluster, one `ess ui` process and one browser for the module (each stopped in a finally
by its own pid/handle). A stream that imports the woodworking purchases into the UDB, slowed
by a `sleep 0.2` per file, runs while the work page is open: the page must follow it live (no
reload) to 100%. Screenshots of every page go to docs/screenshots/.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import BIN, PROJECT, WOODWORKING, EssEnv, free_port, make_env

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SHOTS = PROJECT / "docs" / "screenshots"
SLOW_IMPORT = (
    "sleep 0.2; aq_pp -f,+1 - -d s:purchaseDate s:userID i:articleID f:price s:refID "
    "-imp wood:purchases"
)

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):  # setup-system installs both
    pytest.skip("chromium and chromedriver are not installed", allow_module_level=True)


def _daemon_pids(env: EssEnv) -> list[int]:
    pids = []
    for pid_file in (env.work_dir / "cluster").glob("*.pid"):
        with contextlib.suppress(ValueError):
            pids.append(int(pid_file.read_text()))
    return pids


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EssEnv]:
    env = make_env(tmp_path_factory.mktemp("ui"))
    env.env["ESS_DASHBOARD"] = "1"  # as users have it (the other tests save its start-up)
    env.ess("select", "local", check=True)
    env.ess("category", "add", "purchase", f"{WOODWORKING}/*purchase_*", check=True)
    seen: set[int] = set()
    try:
        env.ess("cluster", "create", "--number", "2", check=True, timeout=120)
        seen.update(_daemon_pids(env))
        env.ess("create", "database", "wood", check=True)
        env.ess(
            "create",
            "table",
            "purchases",
            "s,pkey:userID s:purchaseDate i:articleID f:price",
            check=True,
        )
        env.ess("udbd", "start", check=True, timeout=60)
        yield env
    finally:
        seen.update(_daemon_pids(env))
        env.ess("cluster", "terminate", "-y", timeout=60)
        for pid in seen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class Ui:
    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url  # with ?token=...
        self.base = url.split("/?", 1)[0]
        self.token = url.split("token=", 1)[1]
        self.port = int(self.base.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def ui(cluster: EssEnv) -> Iterator[Ui]:
    proc = subprocess.Popen(
        [str(BIN / "ess"), "ui", "--port", str(free_port())],
        cwd=cluster.root,
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once the socket listens
        assert line.startswith("ess ui: http://127.0.0.1:"), line
        yield Ui(proc, line.split(" ", 2)[2].strip())
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        assert "Traceback" not in err, err


@pytest.fixture(scope="module")
def browser(ui: Ui) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(ui.url)  # the token link: sets the cookie, then redirects to /
        yield driver
    finally:
        driver.quit()


def shoot(driver: object, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))  # type: ignore[attr-defined]


def css(driver: object, selector: str) -> list[object]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)  # type: ignore[attr-defined,no-any-return]


def texts(driver: object, selector: str) -> list[str]:
    """The text of every match, read in one script (the live page replaces its elements)."""
    script = "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)"
    return driver.execute_script(script, selector)  # type: ignore[attr-defined,no-any-return]


def test_a_request_without_the_token_is_refused(ui: Ui) -> None:
    assert httpx.get(ui.base + "/").status_code == 401
    assert httpx.get(ui.base + "/cluster?token=wrong").status_code == 401
    assert httpx.get(ui.base + "/work/events").status_code == 401
    assert httpx.get(ui.base + "/static/ui.js").status_code == 401
    bad_cookie = httpx.get(ui.base + "/udb", cookies={f"ess_ui_{ui.port}": "x" * 32})
    assert bad_cookie.status_code == 401
    with httpx.Client() as client:
        first = client.get(ui.url)
        assert first.status_code == 303 and first.headers["location"] == "/"
        assert client.get(ui.base + "/").status_code == 200  # the cookie carries the token
        # a POST without the page's form token changes nothing
        assert client.post(ui.base + "/cluster/stop", data={"csrf": "no"}).status_code == 403


def _listening(pid: int) -> list[str]:
    """Local addresses of the TCP sockets process ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                address, port = cols[1].split(":")
                found.append(_address(address, width) + f":{int(port, 16)}")
    return found


def _address(hex_address: str, width: int) -> str:
    import ipaddress

    raw = bytes.fromhex(hex_address)
    if width == 8:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return str(ipaddress.IPv6Address(words))


def test_nothing_listens_beyond_the_loopback_address(ui: Ui, cluster: EssEnv) -> None:
    mine = _listening(ui.proc.pid)
    assert mine == [f"127.0.0.1:{ui.port}"]
    for pid in _daemon_pids(cluster):  # the scheduler, its gateway and the workers
        for address in _listening(pid):
            assert address.startswith("127.0.0.1:"), (pid, address)


def test_datastores_and_the_purchase_calendar(browser: object, ui: Ui) -> None:
    browser.get(ui.base + "/")  # type: ignore[attr-defined]
    rows = css(browser, "#cats tbody tr")
    assert [r.text.split()[:2] for r in rows] == [["purchase", "30"]]  # type: ignore[attr-defined]
    shoot(browser, "datastores")
    rows[0].find_element("tag name", "a").click()  # type: ignore[attr-defined]
    days = css(browser, "#calendar td.day.has")
    assert len(days) == 30
    dates = sorted(d.get_attribute("data-date") for d in days)  # type: ignore[attr-defined]
    assert dates[0] == "2014-09-01" and dates[-1] == "2014-09-30"
    assert css(browser, "#calendar td.day.gap") == []
    assert "S:purchaseDate" in css(browser, "#columnspec")[0].text  # type: ignore[attr-defined]
    assert texts(browser, "#sample thead th")[:2] == ["purchaseDate", "userID"]
    assert len(css(browser, "#sample tbody tr")) >= 4
    css(browser, 'button[data-calendar="by-files"]')[0].click()  # type: ignore[attr-defined]
    grid = css(browser, "#calendar")[0]
    assert "by-files" in grid.get_attribute("class")  # type: ignore[attr-defined]
    css(browser, 'button[data-calendar="by-bytes"]')[0].click()  # type: ignore[attr-defined]
    shoot(browser, "category")


def test_cluster_page_lists_both_workers_and_asks_before_acting(
    browser: object, ui: Ui, cluster: EssEnv
) -> None:
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(ui.base + "/cluster")  # type: ignore[attr-defined]
    rows = [r.text.split()[:2] for r in css(browser, "#nodes tbody tr")]  # type: ignore[attr-defined]
    assert rows == [["master", "running"], ["worker-1", "running"], ["worker-2", "running"]]
    shoot(browser, "cluster")
    css(browser, "#btn-stop")[0].click()  # type: ignore[attr-defined]
    alert = WebDriverWait(browser, 5).until(expected_conditions.alert_is_present())
    assert "Stop" in alert.text
    alert.dismiss()  # said no: nothing happens
    assert browser.current_url.endswith("/cluster")  # type: ignore[attr-defined]
    assert "worker-2" in cluster.ess("cluster", "status", check=True).stdout


def test_work_page_follows_a_running_stream_to_100_percent(
    browser: object, ui: Ui, cluster: EssEnv
) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(ui.base + "/work")  # type: ignore[attr-defined]
    browser.execute_script("window.notReloaded = true")  # type: ignore[attr-defined]
    stream = subprocess.Popen(
        [str(BIN / "ess"), "stream", "purchase", "2014-09-01", "2014-09-30", SLOW_IMPORT],
        cwd=cluster.root,
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    seen: list[str] = []
    try:

        def progress(driver: object) -> str | None:
            found = texts(driver, "#runs .pct")
            text = found[0] if found else ""
            if text and (not seen or seen[-1] != text):
                seen.append(text)
            return text if text == "100%" else None

        WebDriverWait(browser, 60, poll_frequency=0.1).until(progress)
        _, err = stream.communicate(timeout=60)
    finally:
        if stream.poll() is None:
            stream.kill()
            stream.communicate()
    assert stream.returncode == 0, err.decode()
    assert browser.execute_script("return window.notReloaded") is True  # type: ignore[attr-defined]
    assert any(p != "100%" for p in seen), seen  # it moved while we watched
    WebDriverWait(browser, 10).until(lambda d: texts(d, "#runs .state")[0] == "done")
    states = texts(browser, "#files tbody tr td:nth-child(4)")
    assert states == ["done"] * 30
    nodes = set(texts(browser, "#files tbody tr td:nth-child(5)"))
    assert nodes == {"worker-1", "worker-2"}
    shoot(browser, "work")


def test_failed_files_and_exec_runs_show_on_the_work_page(
    browser: object, ui: Ui, cluster: EssEnv
) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(ui.base + "/work")  # type: ignore[attr-defined]
    bad = "if grep -q 2014-09-02; then echo 'no such user' >&2; exit 7; fi; wc -l"
    r = cluster.ess("stream", "purchase", "2014-09-01", "2014-09-03", bad)
    assert r.returncode != 0 and "no such user" in r.stderr
    WebDriverWait(browser, 10).until(lambda d: texts(d, "#runs .state")[:1] == ["failed"])
    rows = texts(browser, "#files tbody tr td:nth-child(4)")
    assert rows == ["done", "failed", "done"]
    error = texts(browser, "#files tbody tr:nth-child(2) td:nth-child(6)")[0]
    assert "exit status 7" in error and "no such user" in error
    cluster.ess("exec", "echo hello", check=True)
    # the page follows the record over server-sent events: "running" may show first
    WebDriverWait(browser, 10).until(
        lambda d: (
            texts(d, "#runs td:nth-child(2)")[:1] == ["exec"]
            and texts(d, "#runs .state")[:1] == ["done"]
        )
    )


def test_udb_page_counts_the_imported_purchases(browser: object, ui: Ui, cluster: EssEnv) -> None:
    want = cluster.run("-cnt", "wood:purchases", tool="aq_udb", check=True).stdout
    counts = dict(line.replace('"', "").split(",") for line in want.splitlines()[1:])
    browser.get(ui.base + "/udb")  # type: ignore[attr-defined]
    cells = [c.text for c in css(browser, "#db-wood tbody tr td")]  # type: ignore[attr-defined]
    assert cells[:4] == ["table", "purchases", counts["pkey"], counts["row"]]
    assert int(counts["row"]) > 30_000
    assert [r.text.split()[0] for r in css(browser, "#memory tbody tr")] == [  # type: ignore[attr-defined]
        "worker-1",
        "worker-2",
    ]
    css(browser, "#db-wood a")[0].click()  # type: ignore[attr-defined]
    preview = css(browser, "#preview")[0].text  # type: ignore[attr-defined]
    assert preview.splitlines()[0] == '"userID","purchaseDate","articleID","price"'
    assert len(preview.splitlines()) == 21
    shoot(browser, "udb")


def test_query_page_runs_ess_query_and_charts_a_group_by(
    browser: object, ui: Ui, cluster: EssEnv
) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    want = cluster.ess(
        "query", "select count(articleID), articleID from purchase:*:* group by articleID",
        check=True,
    ).stdout.splitlines()[1:]  # fmt: skip
    browser.get(ui.base + "/query")  # type: ignore[attr-defined]
    box = css(browser, "#query-text")[0]
    box.send_keys(  # type: ignore[attr-defined]
        "select count(articleID), articleID from purchase:*:* group by articleID"
    )
    css(browser, "#run-query")[0].click()  # type: ignore[attr-defined]
    WebDriverWait(browser, 30).until(lambda d: texts(d, "#query-count"))
    cells = texts(browser, "#result tbody tr td")
    got = [f"{cells[i]},{cells[i + 1]}" for i in range(0, len(cells), 2)]
    assert got == want and len(got) > 10
    assert texts(browser, "#result thead th") == ["articleID", "Count"]
    bars = texts(browser, "#chart .bar .value")
    assert bars == cells[1::2][:50]  # one bar per group (the first 50), its count
    shoot(browser, "query")
    browser.get(ui.base + "/query?q=select+nope+from+purchase:*:*")  # type: ignore[attr-defined]
    assert "unknown column nope" in texts(browser, "#query-error")[0]


def test_the_dask_link_opens_dasks_dashboard_on_the_loopback(browser: object, ui: Ui) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(ui.base + "/")  # type: ignore[attr-defined]
    link = css(browser, "#dask-link")[0].get_attribute("href")  # type: ignore[attr-defined]
    assert link.startswith("http://127.0.0.1:"), link  # opens in a new tab: follow it here
    browser.get(link)  # type: ignore[attr-defined]
    WebDriverWait(browser, 60).until(lambda d: "/status" in d.current_url)
    assert browser.current_url.startswith("http://127.0.0.1:")  # type: ignore[attr-defined]
    assert "Dask" in browser.title  # type: ignore[attr-defined]


def test_add_workers_after_confirmation(browser: object, ui: Ui, cluster: EssEnv) -> None:
    """Last: the cluster has three workers afterwards."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(ui.base + "/cluster")  # type: ignore[attr-defined]
    css(browser, "#btn-add")[0].click()  # type: ignore[attr-defined]
    WebDriverWait(browser, 5).until(expected_conditions.alert_is_present()).accept()
    WebDriverWait(browser, 120).until(lambda d: texts(d, "#flash"))
    assert texts(browser, "#flash")[0].endswith(": 3 workers")
    nodes = [t.split()[0] for t in texts(browser, "#nodes tbody tr td:first-child")]
    assert nodes == ["master", "worker-1", "worker-2", "worker-3"]
    assert "worker-3" in cluster.ess("cluster", "status", check=True).stdout
