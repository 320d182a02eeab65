"""Token substitution: Essentia's raw insertion, and no injection through file names."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ess.errors import UsageError
from ess.run.substitute import single_quote, substitute

VALUES = {
    "file": "browse_20140901",
    "FILE": "browse_20140901.gz",
    "path": "data/wood",
    "cols": "S:eventDate S:userID I:articleID",
    "delim": ",",
    "num_nodes": "2",
    "node_id": "1",
    "num_threads": "4",
    "thread_id": "3",
}


def test_tokens_are_replaced_raw_and_longest_first() -> None:
    cmd = (
        "aq_pp -d %cols -o ./bz2/%file.bz2 %FILE %path %delim %num_threads/%num_nodes "
        "%thread_id@%node_id"
    )
    assert substitute(cmd, VALUES) == (
        "aq_pp -d S:eventDate S:userID I:articleID -o ./bz2/browse_20140901.bz2 "
        "browse_20140901.gz data/wood , 4/2 3@1"
    )


def test_other_percent_sequences_pass_through() -> None:
    cmd = "aq_pp -eval s:d 'TimeToDate(t,\"%Y-%m-%d %H\")' %d %deli %Files %nodes % %delimx"
    assert substitute(cmd, VALUES) == (
        "aq_pp -eval s:d 'TimeToDate(t,\"%Y-%m-%d %H\")' %d %deli %Files %nodes % ,x"
    )


def test_case_sensitive_and_missing_values_untouched() -> None:
    assert substitute("%file %FILE %File", {"file": "a"}) == "a %FILE %File"


def _run(cmd: str, cwd: Path) -> str:
    return subprocess.run(
        ["bash", "-c", cmd], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.parametrize(
    "template",
    [
        "echo %FILE",
        "echo '%FILE'",
        'echo "%FILE"',
        "echo x%FILE.bz2",
        "echo '\"%FILE\"+ToS($RowNum)'",
        'echo "it\'s %FILE"',
    ],
)
@pytest.mark.parametrize(
    "name",
    [
        "a; touch PWNED",
        "b'; touch PWNED; '",
        'c"; touch PWNED; "',
        "d$(touch PWNED)",
        "e`touch PWNED`",
        'f\\"; touch PWNED #',
        "g && touch PWNED",
    ],
)
def test_hostile_file_names_cannot_run_commands(tmp_path: Path, template: str, name: str) -> None:
    cmd = substitute(template, {"FILE": name})
    out = _run(cmd, tmp_path)
    assert not (tmp_path / "PWNED").exists(), cmd
    assert name in out, (cmd, out)  # and the name arrives intact


def test_unmodelled_quoting_is_refused_for_unsafe_names_only() -> None:
    assert substitute("echo $(basename %FILE)", {"FILE": "ok.gz"}) == "echo $(basename ok.gz)"
    with pytest.raises(UsageError, match="ESS_FILE"):
        substitute("echo $(basename %FILE)", {"FILE": "a; touch PWNED"})


def test_single_quote() -> None:
    assert single_quote("/a/b.gz") == "'/a/b.gz'"
    assert single_quote("it's") == "'it'\\''s'"
