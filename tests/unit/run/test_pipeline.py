"""Running one pipeline on this machine: decompression by content, errors, output targets."""

from __future__ import annotations

import bz2
import gzip
import io
import zipfile
from pathlib import Path

from ess.datastore.api import StoreSpec
from ess.run.pipeline import NODE_ID, Pipeline, Source, run_pipeline

LOCAL = StoreSpec("local", "/")
TEXT = b"a,b\r\n1,2\r\n3,4\r\n" * 1000


def _pipe(cmd: str, *paths: Path, **kw: object) -> Pipeline:
    sources = tuple(Source(LOCAL, str(p), **kw) for p in paths)  # type: ignore[arg-type]
    return Pipeline(index=0, label=str(paths[0]) if paths else "x", command=cmd, sources=sources)


def test_decompresses_by_content_not_name(tmp_path: Path) -> None:
    (tmp_path / "gz.txt").write_bytes(gzip.compress(TEXT))
    (tmp_path / "bz.gz").write_bytes(bz2.compress(TEXT))
    (tmp_path / "plain.gz").write_bytes(TEXT)
    for name in ("gz.txt", "bz.gz", "plain.gz"):
        r = run_pipeline(_pipe("cat", tmp_path / name))
        assert r.ok and r.stdout == TEXT, name


def test_bulk_concatenates_sources(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(gzip.compress(b"1\n2\n"))
    (tmp_path / "b").write_bytes(b"3\n")
    r = run_pipeline(_pipe("wc -l", tmp_path / "a", tmp_path / "b"))
    assert r.stdout.strip() == b"3"


def test_archive_members(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("x.csv", "1\n2\n")
        z.writestr("y.txt", "skip\n")
    (tmp_path / "a.zip").write_bytes(buf.getvalue())
    r = run_pipeline(_pipe("cat", tmp_path / "a.zip", archive=("*.csv",)))
    assert r.ok and r.stdout == b"1\n2\n"


def test_failure_keeps_exit_status_and_stderr(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(TEXT)
    r = run_pipeline(_pipe("cat >/dev/null; echo oops >&2; exit 7", tmp_path / "f"))
    assert not r.ok and r.returncode == 7 and r.stderr == b"oops\n"


def test_pipefail_reports_a_failure_inside_the_pipeline(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(TEXT)
    r = run_pipeline(_pipe("false | cat", tmp_path / "f"))
    assert r.returncode == 1


def test_command_that_stops_reading_is_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(gzip.compress(TEXT * 50))
    r = run_pipeline(_pipe("head -1", tmp_path / "f"))
    assert r.ok and r.stdout == b"a,b\r\n"


def test_corrupt_input_is_reported_with_the_file_name(tmp_path: Path) -> None:
    noisy = b"".join(b"%d,%d\n" % (i, (i * 7919) % 104729) for i in range(200_000))
    packed = gzip.compress(noisy)
    (tmp_path / "bad.gz").write_bytes(packed[: len(packed) // 2])
    r = run_pipeline(_pipe("cat > /dev/null", tmp_path / "bad.gz"))
    assert not r.ok and r.error and "bad.gz" in r.error


def test_missing_file_is_reported(tmp_path: Path) -> None:
    r = run_pipeline(_pipe("cat", tmp_path / "nope"))
    assert not r.ok and "nope" in (r.error or "")


def test_output_target_and_node_placeholder(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x\n")
    p = Pipeline(
        index=0,
        label="f",
        command=f"echo {NODE_ID}; cat",
        sources=(Source(LOCAL, str(tmp_path / "f")),),
        output=(LOCAL, str(tmp_path / "out" / f"n{NODE_ID}.txt")),
    )
    r = run_pipeline(p)
    assert r.ok and r.stdout == b""
    assert (tmp_path / "out" / "n1.txt").read_bytes() == b"1\nx\n"


def test_cwd_and_env(tmp_path: Path) -> None:
    p = Pipeline(
        index=0, label="x", command="pwd; echo $FOO", cwd=str(tmp_path), env=(("FOO", "bar"),)
    )
    assert run_pipeline(p).stdout == f"{tmp_path}\nbar\n".encode()
