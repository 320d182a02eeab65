"""The client half of a warm start, run first thing by the ``aq_pp``/``aq_udb`` entry points.

Cheap on purpose (standard library, no Polars): it finds the service's socket, sends argv,
environment, cwd and file descriptors 0-2, relays the signals it gets, and exits with the
child's status (killing itself with the child's signal when the child died of one, so a shell
sees what it would have seen). Any trouble before the service accepts the command (no socket,
refused connection, ``ESS_WARM=0``, a refusal) returns None: the caller runs the command cold.
"""

from __future__ import annotations

import _signal as signal  # the C modules: signal and socket import enum, ~4 ms per command
import _socket as socket
import os
import struct
import sys

from ess.warm import protocol as p
from ess.warm.paths import ENV_SOCKET, socket_for, user_socket, warm_enabled


def handoff(tool: str) -> None:
    """Run this process's command (``sys.argv``) in the warm service and exit with its status;
    return (having done nothing visible) when the command should run cold instead."""
    if not warm_enabled():
        return
    path = os.environ.get(ENV_SOCKET) or user_socket()
    if not path:
        return
    try:
        sock = _connect(socket_for(path))
    except OSError:
        return
    if sock is None:
        return
    try:
        started = _send(sock, tool)
    except OSError:
        started = False
    if not started:
        sock.close()
        return
    _relay_until_exit(sock, tool)


def _connect(path: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def _send(sock: socket.socket, tool: str) -> bool:
    """Send the command; True once the service has started it."""
    try:
        fds = [0, 1, 2]
        for fd in fds:
            os.fstat(fd)  # a closed standard descriptor: let the cold path deal with it
        cwd = os.getcwdb()
    except OSError:
        return False
    argv = [os.fsencode(a) for a in sys.argv]
    env = [k + b"=" + v for k, v in os.environb.items()]
    data = p.encode(tool=tool, cwd=cwd, argv=argv, env=env)
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
    sent = sock.sendmsg([data[: p.HEADER.size]], rights)
    sock.sendall(data[sent:])
    sock.settimeout(30)  # the service answers at once; a wedged one must not hang the command
    reply = p.read_number(sock)
    sock.settimeout(None)
    return reply is not None and reply[0] == p.STARTED


def _relay_until_exit(sock: socket.socket, tool: str) -> None:
    def relay(signum: int, _frame: object) -> None:
        try:  # noqa: SIM105 - contextlib is start-up time the launcher does not need
            sock.sendall(p.number(p.SIGNAL, signum))
        except OSError:
            pass

    for sig in p.RELAYED:
        signal.signal(sig, relay)
    try:
        reply = p.read_number(sock)
    except OSError:
        reply = None
    if reply is None or reply[0] != p.EXITED:
        # the service went away mid-command (its children die with it): nothing to rerun,
        # the input is already consumed
        os.write(2, f"{tool}: the warm service stopped while running this command\n".encode())
        os._exit(1)
    status = reply[1]
    if status < 0:  # died of a signal: die of the same one
        for sig in p.RELAYED:
            signal.signal(sig, signal.SIG_DFL)
        if -status not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
        os._exit(128 - status)
    os._exit(status)


def served(path: str) -> int | None:
    """How many commands the service at ``path`` has run, or None when none answers there."""
    sock = _connect(path)
    if sock is None:
        return None
    try:
        sock.settimeout(10)
        sock.sendall(p.encode(tool=p.STATUS_TOOL, cwd=b"/", argv=[b"?"], env=[]))
        reply = p.read_number(sock)
    except OSError:
        return None
    finally:
        sock.close()
    return reply[1] if reply is not None and reply[0] == p.STARTED else None
