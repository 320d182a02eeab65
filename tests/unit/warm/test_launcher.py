"""The launcher falls back to the cold path whenever the service cannot take the command."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from ess.warm import launcher
from ess.warm import protocol as p
from ess.warm.request import receive_request


def test_no_service_means_cold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESS_WARM_SOCKET", str(tmp_path / "nobody.sock"))
    launcher.handoff("aq_pp")  # returned (a warm run would have exited): the caller runs it


def test_a_refusal_means_cold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "s.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    seen: list[bytes] = []

    def refuse() -> None:
        conn, _ = srv.accept()
        req, fds = receive_request(conn)
        seen.append(req.argv[-1])
        for fd in fds:
            socket.close(fd)
        conn.sendall(p.number(p.REFUSED, p.STALE))
        conn.close()

    t = threading.Thread(target=refuse)
    t.start()
    monkeypatch.setenv("ESS_WARM_SOCKET", path)
    monkeypatch.setattr("sys.argv", ["aq_pp", "-f", "x"])
    try:
        launcher.handoff("aq_pp")  # returned instead of exiting with the command
    finally:
        t.join(10)
        srv.close()
    assert seen == [b"x"]


def test_warm_off_never_connects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "s.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.setblocking(False)
    monkeypatch.setenv("ESS_WARM_SOCKET", path)
    monkeypatch.setenv("ESS_WARM", "0")
    try:
        launcher.handoff("aq_pp")  # returned instead of exiting with the command
        with pytest.raises(BlockingIOError):
            srv.accept()  # nobody knocked
    finally:
        srv.close()
