"""ess ui's listening socket: loopback by default, 8765 or a free port, a busy port refused."""

from __future__ import annotations

import socket

import pytest

from ess.errors import UsageError
from ess.ui.server import DEFAULT_PORT, Listening, bind, is_loopback


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5")
    assert not is_loopback("example.com")


def test_default_port_then_any_free_one_and_a_busy_port_is_an_error() -> None:
    first = bind("127.0.0.1", None)
    try:
        port = first.getsockname()[1]
        assert first.getsockname()[0] == "127.0.0.1"
        second = bind("127.0.0.1", None)  # 8765 taken (by first, or by someone else): any port
        try:
            assert second.getsockname()[1] not in (0, port)
            if port == DEFAULT_PORT:
                assert second.getsockname()[1] != DEFAULT_PORT
        finally:
            second.close()
        with pytest.raises(UsageError, match=f"port {port} is in use"):
            bind("127.0.0.1", port)
    finally:
        first.close()


def test_the_link_carries_the_token() -> None:
    assert Listening("127.0.0.1", 8765, "abc").url == "http://127.0.0.1:8765/?token=abc"
    assert Listening("::1", 8765, "abc").url == "http://[::1]:8765/?token=abc"


def test_sockets_listen() -> None:
    sock = bind("127.0.0.1", 0)
    try:
        with socket.create_connection(sock.getsockname(), timeout=2):
            pass
    finally:
        sock.close()
