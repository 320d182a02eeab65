"""Input whose first bytes look like compressed data (gzip, zlib, zstd magic) is read as the
text it is, as Essentia reads it: Polars' CSV reader would inflate it (or fail with
"unexpected end of file"). Through the aq_pp command, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ess.aq.csvbytes import MAGIC
from ess.load.options import CopyOptions
from ess.load.rows import check_rows
from ess.load.schema import TableColumn

AQ_PP = str(Path(sys.executable).parent / "aq_pp")


def aq_pp(args: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "ESS_WARM": "0", "LC_ALL": "C", "TZ": "UTC"}
    return subprocess.run([AQ_PP, *args], input=data, env=env, capture_output=True, timeout=60)


@pytest.mark.parametrize("magic", MAGIC, ids=lambda m: m.hex())
@pytest.mark.parametrize("columns", [["s:a", "s:b"], ["s:a", "i:b"]], ids=["strings", "typed"])
def test_a_record_starting_like_gzip_is_text(magic: bytes, columns: list[str]) -> None:
    data = magic + b",1\nplain,2\n"
    proc = aq_pp(["-f", "-", "-d", *columns, "-o", "-"], data)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    lines = proc.stdout.splitlines()
    assert len(lines) == 3  # title and two rows: nothing inflated, nothing dropped
    assert lines[2].startswith(b'"plain"')
    assert lines[1].endswith((b",1", b',"1"'))


def test_a_real_gzip_member_is_not_inflated() -> None:
    import gzip

    packed = gzip.compress(b"x,1\n")
    proc = aq_pp(["-f", "-", "-d", "s:a", "-o", "-"], packed)
    assert proc.returncode == 0, proc.stderr
    assert b'"x"' not in proc.stdout  # read as (odd) text, as Essentia would, not unpacked


def test_loader_rows_starting_like_gzip() -> None:
    cols = [TableColumn(name="a", type="character varying", width=10),
            TableColumn(name="b", type="integer", width=None)]  # fmt: skip
    # zlib's magic "x\x01" is valid UTF-8 (the loader refuses invalid UTF-8 on its own)
    checked = check_rows(b"x\x01,1\nplain,2\n", cols, CopyOptions())
    assert checked.rows == 2
