"""The stream commit's link to the cluster (ess.udb.commitlink): what a user is told when the
cluster's daemons were started by an older ess than the one committing."""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from ess.errors import UdbError
from ess.udb.commitlink import _result


def _failed(exc: Exception) -> Future[int]:
    future: Future[int] = Future()
    future.set_exception(exc)
    return future


@pytest.mark.parametrize("answer", [
    TypeError("s_take_seeing_workers() got an unexpected keyword argument 'files'"),
    AttributeError("module 'ess.udb.server' has no attribute 'w_commit_files'"),
])  # fmt: skip
def test_an_older_daemon_is_named_with_what_to_do(answer: Exception) -> None:
    with pytest.raises(UdbError, match=r"run an older ess .*: restart the cluster") as got:
        _result(_failed(answer), timeout=5)
    assert str(answer) in str(got.value)


def test_other_errors_pass_unchanged() -> None:
    error = ValueError("a bad batch")
    with pytest.raises(ValueError) as got:
        _result(_failed(error), timeout=5)
    assert got.value is error
    done: Future[int] = Future()
    done.set_result(3)
    assert _result(done, timeout=5) == 3
