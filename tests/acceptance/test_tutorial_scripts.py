"""Essentia's own tutorial scripts, run as files with bash, against their recorded stdout.

Everything follows ``acceptance/scripts/README.md``: the scripts run in the order of its table,
in one state, from a temporary folder laid out as it says (the data linked in, not copied),
with this build's ``ess``, ``aq_pp`` and ``aq_udb`` first on PATH, ``TZ=UTC`` and the C locale.
Only the host prefix and PIDs of ``udbd`` lines are normalised. The whole sequence runs twice:
on the default local platform (where ``ess udbd restart`` starts a local cluster by itself) and
on a 2-worker local cluster made first with ``ess cluster create --number=2``; either way
``ess exec`` runs each command once, so nothing is printed or imported twice.

Also README.md's "A first session" block, run as a script: its top 10 is printed once.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import ACCEPTANCE, BIN, DATA, PROJECT, assert_no_traceback, make_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # runs scripts for minutes

SCRIPTS = ACCEPTANCE / "scripts"
TIMEOUT = 1200  # seconds per script; the machine is shared, 3-database.sh takes minutes


def readme_order() -> list[str]:
    """The scripts in the order of the README's table (its first column)."""
    text = (SCRIPTS / "README.md").read_text()
    return re.findall(r"^\| `([\w./-]+\.sh)` \|", text, flags=re.M)


ORDER = readme_order()


def normalise(text: str) -> str:
    """The README's normalisations: host prefix and PIDs of ``udbd`` lines."""
    lines = []
    for line in text.splitlines(keepends=True):
        if "udbd-" in line:
            line = re.sub(r"^[^:\n]+: ", "HOST: ", line)
            line = re.sub(r"\(\d+\)", "(PID)", line)
        lines.append(line)
    return "".join(lines)


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def layout(root: Path) -> None:
    """The folders the README asks for, with the data linked in."""
    wood = DATA / "woodworking" / "diy_woodworking"
    (root / "diy_woodworking").symlink_to(wood)  # 1-datastore, 2-etl, 3-database, read_purchase
    (root / "tutorials").mkdir()  # essentia_setup: $HOME/<something>/woodworking/diy_woodworking
    (root / "tutorials" / "woodworking").symlink_to(DATA / "woodworking")
    (root / "map-reduce").mkdir()  # wordcount: a folder holding pg98.txt
    (root / "map-reduce" / "pg98.txt").symlink_to(DATA / "map-reduce" / "pg98.txt")


def cwd_for(root: Path, script: str) -> Path:
    return root / "map-reduce" if script.startswith("map-reduce/") else root


def run_script(root: Path, env: dict[str, str], script: str) -> Ran:
    proc = subprocess.run(
        ["bash", str(SCRIPTS / script)],
        cwd=cwd_for(root, script),
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert_no_traceback("bash", [script], proc.stderr)
    return Ran(proc.returncode, proc.stdout, proc.stderr)


def stop_everything(root: Path, env: dict[str, str]) -> None:
    for args in (["udbd", "stop"], ["cluster", "terminate", "-y"]):
        subprocess.run(
            [str(BIN / "ess"), *args],
            cwd=root,
            env=env,
            capture_output=True,
            timeout=300,
            check=False,
        )


@pytest.fixture(scope="module", params=["local", "local-cluster-2"])
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Ran]]:
    """Every script's result, run in README order on one platform set-up."""
    root = tmp_path_factory.mktemp(request.param)
    env = make_env(root).env
    layout(root)
    try:
        if request.param == "local-cluster-2":
            made = subprocess.run(
                [str(BIN / "ess"), "cluster", "create", "--number=2"],
                cwd=root, env=env, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert made.returncode == 0, made.stderr
        yield {script: run_script(root, env, script) for script in ORDER}
    finally:
        stop_everything(root, env)


def test_readme_lists_every_script() -> None:
    assert sorted(ORDER) == sorted(str(p.relative_to(SCRIPTS)) for p in SCRIPTS.glob("*/*.sh"))
    assert ORDER[0] == "woodworking/1-datastore.sh"


@pytest.mark.parametrize("script", ORDER)
def test_script_prints_its_recording(runs: dict[str, Ran], script: str) -> None:
    ran = runs[script]
    assert ran.returncode == 0, ran.stderr[-2000:]
    expected = (SCRIPTS / script).with_suffix(".out").read_text()
    assert normalise(ran.stdout) == normalise(expected)


def test_database_prints_every_row_once_with_exact_totals(runs: dict[str, Ran]) -> None:
    """3-database.sh apart from key order: the udbd lines, every exported row exactly once
    (issue: ess exec on a cluster of N workers printed it N times), and the top 10 of the
    vector fed by ``ess exec "aq_udb -exp ... | aq_pp ... -imp"`` (imported once) exact."""
    ran = runs["woodworking/3-database.sh"]
    assert ran.returncode == 0, ran.stderr[-2000:]
    got = normalise(ran.stdout).splitlines()
    want = normalise((SCRIPTS / "woodworking/3-database.out").read_text()).splitlines()
    assert len(got) == len(want)
    assert got[:4] == want[:4]  # udbd restart lines, the table's title line
    assert got[-11:] == want[-11:]  # the vector's title and top 10
    assert sorted(got[4:-11]) == sorted(want[4:-11])


# -- README.md "A first session" -------------------------------------------------------------
def readme_session() -> str:
    text = (PROJECT / "README.md").read_text()
    block = text.split("## A first session", 1)[1].split("```", 2)[1]
    return block.strip("\n") + "\n"


def test_readme_first_session_prints_its_top_10_once(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("readme")
    env = make_env(root).env
    layout(root)
    script = root / "first-session.sh"
    script.write_text("set -e\n" + readme_session())
    try:
        proc = subprocess.run(
            ["bash", str(script)], cwd=root, env=env, capture_output=True, text=True,
            timeout=TIMEOUT,
        )  # fmt: skip
    finally:
        stop_everything(root, env)
    assert_no_traceback("bash", [str(script)], proc.stderr)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    # wc -l per browse file, in date order (the recorded counts of 2-etl)
    recorded = (SCRIPTS / "woodworking/2-etl.out").read_text().splitlines()[:7]
    start = lines.index(recorded[0])
    assert lines[start : start + 7] == recorded
    # the purchase stream prints what read_purchase.sh recorded
    purchases = (SCRIPTS / "woodworking/read_purchase.out").read_text().splitlines()
    assert lines[start + 7 : start + 7 + len(purchases)] == purchases
    # then the udbd restart lines and the top 10 by price, once
    tail = lines[start + 7 + len(purchases) :]
    title = '"userid","ptime","articleid","price","refid"'
    assert [ln for ln in lines if ln == title] == [title]
    assert all("udbd-10010" in ln for ln in tail[: tail.index(title)])
    top = tail[tail.index(title) + 1 :]
    assert len(top) == 10
    prices = [float(row.split(",")[3]) for row in top]
    all_prices = sorted((float(p.split(",")[3]) for p in purchases), reverse=True)
    assert prices == all_prices[:10]
