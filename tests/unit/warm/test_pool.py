"""Which waiting child a command may reuse (ess.warm.pool), without a service."""

from __future__ import annotations

import socket

import pytest

from ess.warm import pool
from ess.warm.request import Request


def _req(*env: bytes, tool: str = "aq_pp") -> Request:
    return Request(tool=tool, cwd=b"/", argv=(b"aq_pp", b"-h"), env=env)


def test_per_file_variables_are_not_part_of_the_key() -> None:
    a = _req(b"PATH=/bin", b"ESS_FILE=a.gz", b"ESS_FILE_INDEX=0", b"ESS_UDB_ATTEMPT=x", b"_=/a")
    b = _req(b"ESS_UDB_ATTEMPT=y", b"ESS_FILE_INDEX=1", b"ESS_FILE=b.gz", b"PATH=/bin", b"_=/b")
    assert pool.reuse_key(a) == pool.reuse_key(b)


@pytest.mark.parametrize(
    "other",
    [
        _req(b"PATH=/bin", b"POLARS_MAX_THREADS=2"),
        _req(b"PATH=/usr/bin"),
        _req(b"PATH=/bin"),
        _req(b"PATH=/bin", b"POLARS_MAX_THREADS=1", tool="aq_udb"),
    ],
)
def test_start_up_variables_and_the_tool_are(other: Request) -> None:
    assert pool.reuse_key(_req(b"PATH=/bin", b"POLARS_MAX_THREADS=1")) != pool.reuse_key(other)


def test_idle_children_are_bounded_and_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    execs = pool.Executors()
    pairs = [socket.socketpair() for _ in range(pool.MAX_IDLE + 1)]
    try:
        key = pool.reuse_key(_req(b"PATH=/bin"))
        for pid, (mine, _theirs) in enumerate(pairs, start=100):
            execs.add(pid, mine, key)
        retired = [execs.park(pid) for pid in range(100, 100 + len(pairs))]
        assert [ex.pid for ex in retired if ex is not None] == [100 + pool.MAX_IDLE]
        assert len(execs.idle[key]) == pool.MAX_IDLE
        assert execs.expired() == []
        monkeypatch.setattr(pool, "IDLE_SECONDS", -1.0)
        assert sorted(ex.pid for ex in execs.expired()) == list(range(100, 100 + pool.MAX_IDLE))
        assert execs.by_pid == {} and execs.idle[key] == []
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_a_request_goes_to_a_waiting_child_with_its_descriptors() -> None:
    from ess.warm.request import receive_request

    execs = pool.Executors()
    mine, theirs = socket.socketpair()
    r, w = socket.socketpair()
    try:
        req = _req(b"PATH=/bin")
        execs.add(7, mine, pool.reuse_key(req))
        assert execs.hand(req, [r.fileno()] * 3) == (None, [])  # not waiting yet
        execs.park(7)
        assert execs.hand(req, [r.fileno()] * 3) == (7, [])
        got, fds = receive_request(theirs)
        assert got == req and len(fds) == 3
        for fd in fds:
            socket.socket(fileno=fd).close()
        assert execs.hand(req, [r.fileno()] * 3) == (None, [])  # busy now
    finally:
        for s in (mine, theirs, r, w):
            s.close()
