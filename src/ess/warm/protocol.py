"""The launcher <-> service messages (standard library only: the launcher imports this).

Request: ``MAGIC``, a 4-byte length and the payload; the three standard file descriptors ride
along with the first bytes (SCM_RIGHTS). The payload is NUL-separated bytes: tool, cwd, argc,
argv[0..argc), then ``NAME=value`` environment entries (bytes as the OS has them).
Replies, one byte of kind then a signed 4-byte number: ``STARTED`` pid, ``EXITED`` status
(>= 0 an exit code, < 0 the number of the signal that killed the child), ``REFUSED`` reason.
While the command runs the launcher sends ``SIGNAL`` signum for each signal it receives.
Between the service and a child it reuses (ess.warm.reuse): the service sends requests as a
launcher does; the child answers ``DONE`` code when a command ended and it waits for the next.
"""

from __future__ import annotations

import _signal as signal  # the C module: `signal` imports enum, ~4 ms in every launcher
import struct

TYPE_CHECKING = False  # typing and socket cost start-up time the launcher does not need
if TYPE_CHECKING:
    import _socket as socket  # the launcher's (socket.socket is a subclass)

#: Signals a terminal or a supervisor sends to a command: the launcher passes them on, the
#: service relays them to the command's child (the C launcher has the same list).
RELAYED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
           signal.SIGUSR2)  # fmt: skip
MAGIC = b"ESW1"
HEADER = struct.Struct("!4sI")
NUMBER = struct.Struct("!ci")
STARTED, EXITED, REFUSED, SIGNAL, DONE = b"R", b"X", b"N", b"S", b"D"
#: REFUSED reasons: the launcher then runs the command cold
STALE, FOREIGN, MISMATCH, BUSY = 1, 2, 3, 4
MAX_PAYLOAD = 16 << 20
#: A request for this tool runs nothing: the reply (STARTED) carries the commands served.
STATUS_TOOL = "?"


def encode(*, tool: str, cwd: bytes, argv: list[bytes], env: list[bytes]) -> bytes:
    payload = b"\0".join([tool.encode(), cwd, str(len(argv)).encode(), *argv, *env])
    return HEADER.pack(MAGIC, len(payload)) + payload


def number(kind: bytes, value: int) -> bytes:
    return NUMBER.pack(kind, value)


def read_number(sock: socket.socket) -> tuple[bytes, int] | None:
    """The next reply or signal message, or None at end of stream."""
    data = b""
    while len(data) < NUMBER.size:
        chunk = sock.recv(NUMBER.size - len(data))
        if not chunk:
            return None
        data += chunk
    kind, value = NUMBER.unpack(data)
    return kind, value
