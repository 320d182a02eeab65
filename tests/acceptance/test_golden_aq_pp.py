"""Golden cases of aq_pp: every pp_opt_*, etl_*, logcnv_*, catrules_*, input_* folder, by bash.

New folders are picked up automatically. Cases needing another issue's feature are xfail
(strict, so they fail loudly once the feature lands).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parents[2].parent / "shared/acceptance/golden"
BIN = Path(sys.executable).parent
PREFIXES = ("pp_opt_", "etl_", "logcnv_", "catrules_", "input_")

# case → the missing feature that makes it fail (owned by another issue or not implemented)
XFAIL = {
    "catrules_03_jsn": "the documented input file (twitterex.json) is not in the golden folder",
}


# cases run by another test module (they need a running cluster with the UDB)
ELSEWHERE = {"pp_opt_20_udb_import_vector": "tests/acceptance/test_golden_udb.py"}


def cases() -> list[Path]:
    return sorted(
        p for p in GOLDEN.iterdir()
        if p.is_dir() and p.name.startswith(PREFIXES) and p.name not in ELSEWHERE
    )  # fmt: skip


def golden_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(TZ="UTC", LC_ALL="C", PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    return env


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, id=c.name, marks=[pytest.mark.xfail(reason=XFAIL[c.name], strict=True)])
        if c.name in XFAIL
        else pytest.param(c, id=c.name)
        for c in cases()
    ],
)
def test_golden(case: Path, tmp_path: Path) -> None:
    work = tmp_path / case.name
    shutil.copytree(case, work)
    proc = subprocess.run(
        ["bash", str(work / "cmd.sh")], cwd=work, env=golden_env(), capture_output=True,
        timeout=120,
    )  # fmt: skip
    corrected = case / "expected.corrected.txt"
    expected = (corrected if corrected.exists() else case / "expected.txt").read_bytes()
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode() == expected.decode()


def test_cases_discovered() -> None:
    # 22 pp_opt + 19 etl + 1 logcnv + 3 catrules + 5 input (jsn, xml) in the golden index
    assert len(cases()) + len(ELSEWHERE) == 50, [c.name for c in cases()]
