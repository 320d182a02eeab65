"""The UDB import gateway (ess.udb.gateway): inside ess stream on a cluster every aq_pp -imp of
a worker goes through that worker's one connection. A real 2-worker local cluster for the
module; every daemon is killed by pid at the end."""

from __future__ import annotations

import io
import os
import shlex
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from ess.udb import spec
from ess.workspace import Workspace
from tests.unit.udb.harness import Sandbox, cluster

pytestmark = pytest.mark.slow

COLS = "s:k i:n f:x"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with cluster(tmp_path_factory.mktemp("udb-gw"), workers=2) as sandbox:
        with sandbox.inprocess(sandbox.root):
            spec.create_database(Workspace.from_env(), "db", [])
            spec.create_target(
                Workspace.from_env(), "vector", "vec", ["s,pkey:k i,+add:n f,+add:x"]
            )
        yield sandbox


def rows(start: int, count: int) -> pl.DataFrame:
    i = pl.int_range(start, start + count, eager=True)
    return pl.DataFrame({"k": "u" + (i * 7919 % 97).cast(pl.String), "n": i % 10,
                         "x": (i % 17).cast(pl.Float64) / 4})  # fmt: skip


def category(box: Sandbox, root: Path, name: str, frames: list[pl.DataFrame]) -> None:
    root.mkdir()
    for day, frame in enumerate(frames, start=1):
        frame.write_csv(root / f"p_201409{day:02d}.csv", include_header=False)
    box.run(f"ess select local && ess category add {name} '{root}/p_*'")


def exported(box: Sandbox) -> pl.DataFrame:
    out = box.run("aq_udb -exp db:vec").stdout
    return pl.read_csv(io.BytesIO(out), schema_overrides={"k": pl.String}).sort("k")


def test_stream_imports_through_one_gateway_per_worker(box: Sandbox, tmp_path: Path) -> None:
    frames = [rows(f * 500, 500) for f in range(12)]
    category(box, tmp_path / "many", "many", frames)
    assert exported(box).height == 0
    # each command says which gateway it used; 2 commands at a time on each worker
    command = f'aq_pp -f - -d {COLS} -imp db:vec && echo "$ESS_UDB_GATEWAY"'
    proc = box.run(f"ess stream many '*' '*' '{command}' --threads 2")
    paths = proc.stdout.decode().split()
    assert len(paths) == 12
    assert 1 <= len(set(paths)) <= 2  # one per worker process, reused by every later file
    for path in set(paths):
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(Path(path).parent).st_mode) == 0o700
    want = pl.concat(frames).group_by("k").agg(pl.col("n").sum(), pl.col("x").sum()).sort("k")
    got = exported(box)
    assert got.get_column("k").to_list() == want.get_column("k").to_list()
    assert got.get_column("n").to_list() == want.get_column("n").to_list()
    assert got.get_column("x").to_list() == pytest.approx(want.get_column("x").to_list())
    box.run("aq_udb -clr db:vec")


def test_a_refused_import_says_what_the_direct_path_says(box: Sandbox, tmp_path: Path) -> None:
    category(box, tmp_path / "bad", "bad", [rows(0, 50), rows(50, 50)])
    before = box.run("aq_udb -cnt db:vec").stdout
    command = "ess stream bad '*' '*' 'aq_pp -f - -d s:k s:n f:x -imp db:vec'"
    through = box.run(command, check=False)
    direct = box.run(f"ESS_UDB_GATEWAY=0 {command}", check=False)
    assert through.returncode == direct.returncode != 0
    assert b"does not match" in through.stderr
    assert through.stderr == direct.stderr
    assert box.run("aq_udb -cnt db:vec").stdout == before


def test_without_a_gateway_aq_pp_opens_its_own_connection(box: Sandbox, tmp_path: Path) -> None:
    stale = tmp_path / "stale.sock"  # a socket file nobody listens on any more
    import socket

    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(stale))
    for where in (str(tmp_path / "missing.sock"), str(stale)):
        proc = box.run(f"ESS_UDB_GATEWAY={where} aq_pp -f - -d {COLS} -imp db:vec",
                       input=rows(0, 40).write_csv(include_header=False).encode())  # fmt: skip
        assert proc.stderr == b""
    assert exported(box).get_column("n").sum() == 2 * rows(0, 40).get_column("n").sum()
    box.run("aq_udb -clr db:vec")


PROBE = """
import socket, struct, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print("refused", exc.errno); sys.exit()
head = b'{"op": "open"}'
try:
    s.sendall(struct.pack(">IQ", len(head), 0) + head)
    s.settimeout(20)
    print("answered" if s.recv(1) else "closed")
except OSError:
    print("closed")
"""


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
def test_another_user_cannot_use_the_gateway(box: Sandbox, tmp_path: Path) -> None:
    category(box, tmp_path / "one", "one", [rows(0, 5)])
    # a query beside the import in the same command has its own connection (not the gateway)
    command = f'aq_pp -f - -d {COLS} -imp db:vec && aq_udb -cnt db:vec && echo "$ESS_UDB_GATEWAY"'
    out = box.run(f"ess stream one '*' '*' '{command}'").stdout.decode().splitlines()
    box.run("aq_udb -clr db:vec")
    assert out[0] == '"field","count"'
    path = out[-1]
    assert path
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable

    def probe() -> str:
        argv = [python, "-c", PROBE, path]
        done = subprocess.run(argv, user=65534, group=65534, capture_output=True, timeout=30)
        return done.stdout.decode()

    assert probe().startswith("refused")  # the file mode alone keeps them out
    # even with the directory and socket opened up, the gateway closes their connection unread
    parent = Path(path).parent
    os.chmod(parent, 0o755)
    os.chmod(path, 0o666)
    try:
        assert probe().strip() == "closed"
    finally:
        os.chmod(path, 0o600)
        os.chmod(parent, 0o700)


def test_the_stream_commits_without_a_dask_client_of_its_own(box: Sandbox, tmp_path: Path) -> None:
    """The master commits each file through the scheduler's task gateway (ess.udb.commitlink):
    the `ess stream` process itself never imports Dask, Polars or pyarrow (about 0.6 s of CPU
    per stream), and the import is applied all the same."""
    frames = [rows(f * 300, 300) for f in range(4)]
    category(box, tmp_path / "light", "light", frames)
    report = tmp_path / "modules.txt"
    probe = (
        "import atexit, sys\n"
        "heavy = ('distributed', 'polars', 'pyarrow')\n"
        f"atexit.register(lambda: open({str(report)!r}, 'w').write(\n"
        "    ' '.join(m for m in heavy if m in sys.modules)))\n"
        "from ess.cli.main import main\n"
        "main(sys.argv[1:])\n"
    )
    command = f"aq_pp -f - -d {COLS} -imp db:vec"
    box.run(f"{sys.executable} -c {shlex.quote(probe)} stream light '*' '*' '{command}'")
    assert report.read_text() == ""
    want = pl.concat(frames).group_by("k").agg(pl.col("n").sum()).sort("k")
    got = exported(box)
    assert got.get_column("n").to_list() == want.get_column("n").to_list()
    box.run("aq_udb -clr db:vec")


def test_parts_of_one_command_numbered_by_gateway_and_scheduler_never_meet(
    box: Sandbox, tmp_path: Path
) -> None:
    """Two aq_pp -imp processes in one command line are two parts of the file's attempt: the
    gateway numbers its own parts (no scheduler call), a process started with
    ESS_UDB_GATEWAY=0 gets the scheduler's number, and each part's batches are committed
    (a shared number would make one part's staged files replace the other's: 1x, not 2x)."""
    frames = [rows(f * 300, 300) for f in range(6)]
    category(box, tmp_path / "twice", "twice", frames)
    imp = f'aq_pp -f "$T" -d {COLS} -imp db:vec'
    command = (f'T=$(mktemp) && cat > "$T" && {imp} && {imp} && ESS_UDB_GATEWAY=0 {imp}'
               ' && rm -f "$T"')  # fmt: skip
    box.run(f"ess stream twice '*' '*' '{command}' --threads 2")
    want = pl.concat(frames).group_by("k").agg(pl.col("n").sum() * 3, pl.col("x").sum() * 3)
    want = want.sort("k")
    got = exported(box)
    assert got.get_column("k").to_list() == want.get_column("k").to_list()
    assert got.get_column("n").to_list() == want.get_column("n").to_list()
    assert got.get_column("x").to_list() == pytest.approx(want.get_column("x").to_list())
    box.run("aq_udb -clr db:vec")
