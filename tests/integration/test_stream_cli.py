"""`ess stream` / `ess exec` / `ess file` without a cluster: this machine's cores do the work."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from tests.conftest import WOODWORKING, EssEnv

DATA = str(WOODWORKING)


@pytest.fixture
def wood(ess_env: EssEnv) -> EssEnv:
    ess_env.ess("select", "local", check=True)
    ess_env.ess("category", "add", "browse", f"{DATA}/*browse_*", check=True)
    ess_env.ess("category", "add", "purchase", f"{DATA}/*purchase_*", check=True)
    ess_env.ess(
        "category",
        "change",
        "columnspec",
        "purchase",
        "S:purchaseDate S:userID I:articleID f:price I:refID",
        check=True,
    )
    return ess_env


def test_golden_counts_without_a_cluster(wood: EssEnv) -> None:
    r = wood.ess("stream", "browse", "2014-09-01", "2014-09-07", "wc -l", check=True)
    assert r.stdout == "9896\n10120\n9692\n9936\n10210\n10008\n9823\n"
    assert r.stderr == ""


def test_debug_lines_are_essentias(wood: EssEnv) -> None:
    r = wood.ess(
        "stream", "purchase", "2014-09-29", "*", "aq_x -d %cols | wc -l", "--debug", "--master"
    )
    lines = r.stdout.splitlines()
    assert lines[0] == (
        f"set -o pipefail; localget -f  '{DATA}/purchase_20140929.gz' | "
        "aq_x -d S:purchaseDate S:userID I:articleID f:price I:refID | wc -l"
    )
    assert lines[2].startswith(f"set -o pipefail; localget -f  '{DATA}/purchase_20140930.gz'")
    assert r.returncode == 6  # aq_x does not exist: pipefail makes each file fail


def test_default_command_is_cat_and_output_is_whole_per_file(wood: EssEnv) -> None:
    r = wood.ess(
        "stream", "purchase", "2014-09-01", "2014-09-02", "--threads", "2", input=b"", check=True
    )
    expected = b"".join(
        gzip.decompress((WOODWORKING / f"purchase_2014090{d}.gz").read_bytes()) for d in (1, 2)
    )
    assert r.stdout.encode() == expected


def test_limit_exclude_bulk(wood: EssEnv) -> None:
    r = wood.ess("stream", "browse", "*", "*", "wc -l", "--limit", "3", check=True)
    assert r.stdout == "9896\n10120\n9692\n"
    r = wood.ess(
        "stream",
        "browse",
        "2014-09-01",
        "2014-09-03",
        "wc -l",
        "--exclude",
        f"{DATA}/*0902*",
        check=True,
    )
    assert r.stdout == "9896\n9692\n"
    r = wood.ess("stream", "browse", "2014-09-01", "2014-09-02", "wc -l", "--bulk", check=True)
    assert r.stdout == f"{9896 + 10120}\n"


def test_failure_names_the_file_and_quitonerror_stops(wood: EssEnv) -> None:
    cmd = "if grep -q 2014-09-03; then echo 'no good' >&2; exit 9; fi; echo ok"
    r = wood.ess("stream", "purchase", "2014-09-01", "2014-09-06", cmd)
    assert r.returncode == 6
    assert r.stdout == "ok\nok\nok\nok\nok\n"
    assert f"{DATA}/purchase_20140903.gz: exit status 9" in r.stderr
    assert "no good" in r.stderr
    r = wood.ess("stream", "purchase", "2014-09-01", "2014-09-30", cmd, "--quitonerror", "--master")
    assert r.returncode == 6
    assert r.stdout == "ok\nok\n"
    assert "1 of 30 files failed" in r.stderr


def test_s3out_writes_each_output_to_the_datastore(wood: EssEnv) -> None:
    out = wood.root / "converted"
    r = wood.ess(
        "stream",
        "purchase",
        "2014-09-01",
        "2014-09-02",
        "wc -l",
        "--s3out",
        f"local:{out}/%file.count",
        check=True,
    )
    assert r.stdout == ""
    assert (out / "purchase_20140901.count").read_text().strip().isdigit()
    assert sorted(p.name for p in out.iterdir()) == [
        "purchase_20140901.count",
        "purchase_20140902.count",
    ]


def test_progress_bar_goes_to_stderr(wood: EssEnv) -> None:
    r = wood.ess("stream", "browse", "*", "*", "wc -l", "--progress", check=True)
    assert len(r.stdout.splitlines()) == 30
    assert "30/30" in r.stderr


def test_archive_members(ess_env: EssEnv) -> None:
    data = ess_env.root / "arch"
    data.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in (("a.csv", b"1\n2\n"), ("b.log", b"x\n")):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
    (data / "pack_20140901.tgz").write_bytes(buf.getvalue())
    ess_env.ess("select", "local", check=True)
    ess_env.ess("category", "add", "pack", f"{data}/pack_*", "--noprobe", check=True)
    r = ess_env.ess("stream", "pack", "*", "*", "cat", "--archive", "*.csv", check=True)
    assert r.stdout == "1\n2\n"


def test_hostile_file_name_without_a_cluster(ess_env: EssEnv) -> None:
    data = ess_env.root / "evil"
    data.mkdir()
    (data / "a; touch PWNED").write_text("x\n")
    ess_env.ess("select", "local", check=True)
    ess_env.ess("category", "add", "evil", f"{data}/*", "--noprobe", check=True)
    r = ess_env.ess("stream", "evil", "*", "*", 'cat; echo %FILE; echo "$ESS_FILE"', check=True)
    assert r.stdout == "x\na; touch PWNED\na; touch PWNED\n"
    assert not list(ess_env.root.rglob("PWNED"))


def test_exec_and_file_without_a_cluster(ess_env: EssEnv) -> None:
    r = ess_env.ess("exec", "echo %node_id/%num_nodes %num_threads", check=True)
    assert r.stdout.startswith("1/1 ")
    r = ess_env.ess(
        "exec", "echo out", "--s3out", f"local:{ess_env.root}/o/n%node_id.txt", check=True
    )
    assert r.stdout == "" and (ess_env.root / "o" / "n1.txt").read_text() == "out\n"
    r = ess_env.ess("exec", "--master", "exit 2")
    assert r.returncode == 6 and "master: exit status 2" in r.stderr
    (ess_env.root / "f.txt").write_text("hello\n")
    ess_env.ess("file", "push", "f.txt", "--dest", "sub", check=True)
    assert (ess_env.root / "sub" / "f.txt").read_text() == "hello\n"
    ess_env.ess("file", "mkdir", "made/deeper", check=True)
    assert (ess_env.root / "made" / "deeper").is_dir()
    r = ess_env.ess("file", "get", "nope.txt")
    assert r.returncode != 0 and "nope.txt" in r.stderr


def test_bad_requests_fail_clearly(wood: EssEnv) -> None:
    r = wood.ess("stream", "nope", "*", "*")
    assert r.returncode == 4 and "nope" in r.stderr
    r = wood.ess("stream", "browse", "2015-01-01", "2015-12-31", "wc -l", check=True)
    assert r.stdout == ""
    r = wood.ess("stream", "browse", "*", "*", "--threads", "0")
    assert r.returncode == 2


def test_help_shows_examples(ess_env: EssEnv) -> None:
    for cmd in (
        ["stream"],
        ["exec"],
        ["file"],
        ["file", "push"],
        ["cluster"],
        ["cluster", "create"],
        ["cluster", "status"],
    ):
        r = ess_env.ess(*cmd, "--help", check=True)
        assert "example:" in r.stdout, cmd


def test_platform_choice_and_bad_create(ess_env: EssEnv) -> None:
    ess_env.ess("cluster", "set", "cloud", check=True)
    assert (ess_env.work_dir / ".platform").read_text() == "cloud\n"
    r = ess_env.ess("cluster", "set", "mars")
    assert r.returncode == 2
    ess_env.ess("cluster", "set", "local", check=True)
    r = ess_env.ess("cluster", "create", "--number", "0")
    assert r.returncode == 5


def test_the_library_entry_points(wood: EssEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """ess.run.api without the command line: results in file order, failures yielded with the
    others and raised (naming them) after the last one; exec once on this machine."""
    from ess.errors import CommandFailed, DatastoreError
    from ess.run import api
    from ess.workspace import Workspace

    ws = Workspace.from_env(wood.env)
    monkeypatch.chdir(wood.root)
    cmd = "if grep -q 2014-09-03; then echo bad >&2; exit 9; fi; wc -l"
    req = api.StreamRequest(category="purchase", lower="2014-09-02", upper="2014-09-04",
                            command=cmd, debug=True)  # fmt: skip
    seen: list[api.FileResult] = []
    with pytest.raises(CommandFailed, match=r"1 of 3 files failed\n.*purchase_20140903.gz"):
        seen.extend(api.stream(ws, req))
    assert [(r.ok, r.paths) for r in seen] == [
        (ok, (f"{DATA}/purchase_201409{d:02d}.gz",)) for ok, d in ((True, 2), (False, 3), (True, 4))
    ]
    assert seen[1].stderr == b"bad\n" and seen[0].stdout.strip().isdigit()
    assert seen[0].echo == f"set -o pipefail; localget -f  '{DATA}/purchase_20140902.gz' | {cmd}"
    with pytest.raises(DatastoreError):  # checked when called, before any work
        api.stream(ws, api.StreamRequest(category="nope", lower="*", upper="*"))
    nodes = list(api.execute(ws, api.ExecRequest(command='echo "%num_nodes $ESS_EXEC_NODE"')))
    assert [(r.label, r.stdout) for r in nodes] == [("master", b"1 1\n")]
