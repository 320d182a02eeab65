"""The service's side of a request: decoded into a :class:`Request`, with its descriptors."""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass

from ess.warm.protocol import HEADER, MAGIC, MAX_PAYLOAD


@dataclass(frozen=True)
class Request:
    tool: str
    cwd: bytes
    argv: tuple[bytes, ...]
    env: tuple[bytes, ...]  # b"NAME=value"


def decode(payload: bytes) -> Request:
    fields = payload.split(b"\0")
    if len(fields) < 3:
        raise ValueError("short request")
    tool, cwd, argc = fields[0].decode(), fields[1], int(fields[2])
    if argc < 1 or len(fields) < 3 + argc:
        raise ValueError("bad argument count")
    argv = tuple(fields[3 : 3 + argc])
    env = tuple(f for f in fields[3 + argc :] if b"=" in f)
    return Request(tool=tool, cwd=cwd, argv=argv, env=env)


def receive_request(sock: socket.socket) -> tuple[Request, list[int]]:
    """Read one request and its file descriptors (the caller owns and closes the fds)."""
    msg, fds, _flags, _addr = socket.recv_fds(sock, HEADER.size, 3)
    try:
        while len(msg) < HEADER.size:
            more = sock.recv(HEADER.size - len(msg))
            if not more:
                raise ValueError("short header")
            msg += more
        magic, size = HEADER.unpack(msg)
        if magic != MAGIC or size > MAX_PAYLOAD:
            raise ValueError("not a warm request")
        chunks, got = [], 0
        while got < size:
            chunk = sock.recv(min(size - got, 1 << 20))
            if not chunk:
                raise ValueError("short request")
            chunks.append(chunk)
            got += len(chunk)
        return decode(b"".join(chunks)), fds
    except BaseException:
        for fd in fds:
            _close(fd)
        raise


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
