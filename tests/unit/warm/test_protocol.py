"""The launcher/service messages and the socket paths (no service started)."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from ess.warm import paths
from ess.warm import protocol as p
from ess.warm.request import decode, receive_request


def test_request_round_trip_keeps_any_bytes() -> None:
    argv = [b"aq_pp", b"-eval", b"s:x", b'"caf\xc3\xa9" + \xff', b""]
    env = [b"A=1", b"EMPTY=", b"B=x=y"]
    data = p.encode(tool="aq_pp", cwd=b"/tmp/d\xe9", argv=argv, env=env)
    magic, size = p.HEADER.unpack(data[: p.HEADER.size])
    assert magic == p.MAGIC and size == len(data) - p.HEADER.size
    req = decode(data[p.HEADER.size :])
    assert (req.tool, req.cwd, list(req.argv), list(req.env)) == ("aq_pp", b"/tmp/d\xe9", argv, env)


@pytest.mark.parametrize("payload", [b"", b"aq_pp\0/", b"aq_pp\0/\x005\0a", b"aq_pp\0/\0x\0a"])
def test_malformed_requests_are_refused(payload: bytes) -> None:
    with pytest.raises(ValueError):
        decode(payload)


def test_descriptors_travel_with_the_request(tmp_path: Path) -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    f = tmp_path / "f"
    f.write_bytes(b"hello")
    fd = os.open(f, os.O_RDONLY)
    data = p.encode(tool="aq_udb", cwd=b"/", argv=[b"aq_udb", b"-h"], env=[b"X=1"])
    try:
        socket.send_fds(left, [data], [fd, fd, fd])
        req, fds = receive_request(right)
        assert req.argv == (b"aq_udb", b"-h") and len(fds) == 3
        assert os.read(fds[0], 5) == b"hello"
        for got in fds:
            os.close(got)
    finally:
        os.close(fd)
        left.close()
        right.close()


def test_not_a_request_closes_the_descriptors() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    r, w = os.pipe()
    try:
        socket.send_fds(left, [b"GET / HTTP/1.0\r\n\r\n"], [r])
        with pytest.raises(ValueError):
            receive_request(right)
    finally:
        os.close(r)
        os.close(w)
        left.close()
        right.close()


def test_numbers_round_trip() -> None:
    left, right = socket.socketpair()
    left.sendall(p.number(p.EXITED, -9) + p.number(p.SIGNAL, 2))
    left.close()
    assert p.read_number(right) == (p.EXITED, -9)
    assert p.read_number(right) == (p.SIGNAL, 2)
    assert p.read_number(right) is None
    right.close()


def test_runtime_dir_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    made = paths.runtime_dir(create=True)
    assert made is not None and stat.S_IMODE(os.stat(made).st_mode) == 0o700
    os.chmod(made, 0o755)  # someone opened it up: not ours to trust any more
    assert paths.runtime_dir(create=False) is None
    assert paths.user_socket() is None


def test_long_socket_paths_move_to_the_runtime_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    short = str(tmp_path / "w.sock")
    assert paths.socket_for(short) == short
    long = str(tmp_path / ("d" * 120) / "worker-1.warm.sock")
    got = paths.socket_for(long)
    assert len(got) <= paths.MAX_SOCKET_PATH and got.startswith(str(tmp_path))
    assert got == paths.socket_for(long)  # the launcher and the service agree


def test_warm_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESS_WARM", "0")
    assert not paths.warm_enabled()
    monkeypatch.setenv("ESS_WARM", "1")
    assert paths.warm_enabled()
