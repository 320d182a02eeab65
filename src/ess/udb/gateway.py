"""The UDB import gateway: one cluster connection per worker process for every `aq_pp -imp`.

Inside ``ess stream`` each file's ``aq_pp -imp`` is a process of its own. Opening its own Dask
client (a TLS handshake, the client's threads: about 0.6 s of CPU) before its first batch was
most of the cost of a file. Now the first command a worker runs for a stream that may import
starts, in the worker process, a gateway: a thread serving a unix socket (0600, in a 0700
directory of the worker's scratch space; connections from another uid are closed unread,
SO_PEERCRED) that holds ONE :class:`~ess.udb.client.UdbSession`, created at the first import
and reused by every later one. The command finds it through ``ESS_UDB_GATEWAY``.

One connection is one aq_pp process's import. Messages are a JSON header and a body (frame:
header length, body length, big-endian); each gets ``{"ok": true}`` or one error line:

* ``open``: the importer's staging identity (the ``ESS_*`` variables
  :meth:`ess.udb.commit.Stager.from_env` reads) and work directory;
* ``batch``: database name, spec text, target, ddef; the body is the rows (Arrow IPC stream);
  the gateway runs :meth:`UdbSession.import_frames` on a view of the shared session
  (:meth:`UdbSession.share`: the connection's own stager and hand-over directory);
* ``close``: :meth:`Stager.close` (register the manifest for the stream's commit), as the
  process's own session would at its exit.

The staged/commit protocol is unchanged, only where the client lives moves: a connection that
ends without ``close`` (aq_pp killed) registers nothing, exactly as a killed process; a worker
that dies takes its gateway with it and the stream re-runs the file (a new attempt). Each
connection is served by its own thread; the Dask client is thread-safe for submit/gather.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ess.errors import EssError, UdbError
from ess.workspace import Workspace

ENV_GATEWAY = "ESS_UDB_GATEWAY"
#: variables of the importer's environment the gateway needs (its staging identity)
STAGING_VARS = ("ESS_UDB_STAGE", "ESS_UDB_ATTEMPT", "ESS_UDB_RUNNER", "ESS_FILE_INDEX")
_FRAME = struct.Struct(">IQ")
_UCRED = struct.Struct("3i")
#: a unix socket path longer than this does not fit sockaddr_un
_MAX_PATH = 100
#: Seconds a passed placement check (UdbSession.check_placement: no partition away from its
#: owner, i.e. no redistribution under way) stands for the gateway's later imports. It costs
#: a task on every worker, once per batch: the largest part of a small file's import. The
#: batches are only staged here and committed by the stream later (without a new check), so
#: a check a second old guards them as well as one a few milliseconds old.
PLACEMENT_TTL = 1.0


# ---------------------------------------------------------------------------- wire format
def send(sock: socket.socket, header: Mapping[str, Any], body: bytes | memoryview = b"") -> None:
    head = json.dumps(header).encode()
    sock.sendall(_FRAME.pack(len(head), len(body)) + head)
    if len(body):
        sock.sendall(body)


def recv(sock: socket.socket) -> tuple[dict[str, Any], bytes] | None:
    """The next message, or None when the peer closed the connection between messages."""
    first = _exact(sock, _FRAME.size, eof_ok=True)
    if first is None:
        return None
    head_len, body_len = _FRAME.unpack(first)
    head = _exact(sock, head_len)
    body = _exact(sock, body_len) if body_len else b""
    assert head is not None and body is not None
    return json.loads(head), body


def _exact(sock: socket.socket, n: int, *, eof_ok: bool = False) -> bytes | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            if eof_ok and got == 0:
                return None
            raise ConnectionError("the connection closed in the middle of a message")
        got += k
    return bytes(buf)


def _error(exc: BaseException) -> dict[str, Any]:
    """One error line, and the class to raise it as on the other side."""
    if isinstance(exc, EssError):
        return {"ok": False, "error": str(exc),
                "type": f"{type(exc).__module__}:{type(exc).__qualname__}"}  # fmt: skip
    return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "type": "ess.errors:UdbError"}


def _raise(answer: Mapping[str, Any]) -> None:
    """Raise the gateway's error as the class the direct path raises (same text)."""
    message = str(answer.get("error", "the UDB import gateway failed"))
    module, _, name = str(answer.get("type", "")).partition(":")
    cls: Any = getattr(sys.modules.get(module), name, None)  # only classes already loaded
    if isinstance(cls, type) and issubclass(cls, EssError):
        try:
            exc = cls(message)
        except TypeError:  # a class with other constructor arguments
            exc = UdbError(message)
    else:
        exc = UdbError(message)
    raise exc


# ---------------------------------------------------------------------------- aq_pp's side
class _GatewayStager:
    """What imp.close_sessions calls at the end of the process: the gateway's close."""

    def close(self, session: GatewaySession) -> None:
        session.commit()


class GatewaySession:
    """An aq_pp process's import through the worker's gateway (the UdbSession it replaces
    offers the same import_frames / close)."""

    def __init__(self, path: str, ws: Workspace, environ: Mapping[str, str] | None = None) -> None:
        """Connects and opens the import; OSError when there is no usable gateway (the caller
        then opens its own session: nothing was sent)."""
        env = os.environ if environ is None else environ
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(path)
            send(self.sock, {
                "op": "open",
                "env": {k: env[k] for k in STAGING_VARS if k in env},
                "work_dir": str(ws.work_dir.resolve()),
                "cache_dir": str(ws.cache_dir), "aws_dir": str(ws.aws_dir),
            })  # fmt: skip
            answer = recv(self.sock)
        except OSError:
            self.sock.close()
            raise
        if answer is None or not answer[0].get("ok"):
            self.sock.close()  # the gateway could not open a session: the cold path will say
            raise OSError(f"the UDB import gateway refused: {answer and answer[0].get('error')}")
        self.stager: _GatewayStager | None = _GatewayStager()
        self.closed = False
        from ess.udb.direct import enabled

        self.direct = enabled()  # stage batches straight into the owners' directories

    def ask(self, header: Mapping[str, Any], body: bytes | memoryview = b"") -> dict[str, Any]:
        """Send one message; the gateway's answer (its error raised as the direct path's)."""
        try:
            send(self.sock, header, body)
            answer = recv(self.sock)
        except OSError as exc:
            raise UdbError(f"the UDB import gateway of this worker stopped: {exc}") from exc
        if answer is None:
            raise UdbError("the UDB import gateway of this worker stopped")
        if not answer[0].get("ok"):
            _raise(answer[0])
        return answer[0]

    _ask = ask

    def import_frames(self, spec: Any, target: str, frames: Any, *, ddef: bool = False) -> int:
        import polars as pl

        from ess.udb import direct

        rows = 0
        for frame in frames:
            if self.direct and direct.stage(self, spec, target, frame, ddef=ddef):
                rows += frame.height
                continue
            self.direct = False  # the owners are not all here: every batch through the gateway
            buf = io.BytesIO()
            # string views as Polars holds them: no conversion on either side
            frame.write_ipc_stream(buf, compat_level=pl.CompatLevel.newest())
            header = {"op": "batch", "db": spec.name, "spec": spec.text(), "target": target,
                      "ddef": ddef}  # fmt: skip
            self._ask(header, buf.getbuffer())
            rows += frame.height
        return rows

    def commit(self) -> None:
        self._ask({"op": "close"})
        self.closed = True

    def close(self) -> None:
        self.sock.close()


def connect(ws: Workspace, environ: Mapping[str, str] | None = None) -> GatewaySession | None:
    """The gateway session named by ESS_UDB_GATEWAY, or None (none set, or not answering)."""
    env = os.environ if environ is None else environ
    path = env.get(ENV_GATEWAY, "")
    if not path or path == "0":
        return None
    try:
        return GatewaySession(path, ws, env)
    except OSError:
        return None


# ---------------------------------------------------------------------------- worker's side
class PartNumbers:
    """Part numbers of the attempts whose processes import through this gateway, without a
    scheduler call each (docs/udb.md, "Staging"). A part's number need only be unique within
    its attempt and follow the order in which the attempt's parts first import: one counter
    for all of them does both, with no table to keep or prune (an attempt may run for hours).

    Every process of one attempt (one execution of a file's command) runs on this worker and,
    with the gateway on, imports through it. A process of the same command line started with
    ``ESS_UDB_GATEWAY=0`` asks the scheduler instead, whose numbers start at 0 for each
    attempt: these start at LOCAL_BASE, so the two never meet."""

    LOCAL_BASE = 1_000_000

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.next = self.LOCAL_BASE

    def __call__(self) -> int:
        with self.lock:
            number, self.next = self.next, self.next + 1
            return number


class Gateway:
    """One socket and one shared UdbSession (made at the first import) for one cluster."""

    def __init__(self, path: Path, conn: Any) -> None:
        self.path, self.conn = path, conn
        self.session: Any = None
        self.lock = threading.Lock()
        self.checked = (-PLACEMENT_TTL, 0)  # (when, id of the session) of the last passed check
        self.roots: dict[str, str | None] = {}  # worker name -> staging root (ess.udb.direct)
        self.parts = PartNumbers()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self.listener.bind(str(path))
        os.chmod(path, 0o600)
        self.listener.listen(64)
        self.thread = threading.Thread(target=self._accept, name="ess-udb-gateway", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:  # closed
                return
            if not _same_user(sock):
                sock.close()
                continue
            threading.Thread(target=self._serve, args=(sock,), daemon=True,
                             name="ess-udb-import").start()  # fmt: skip

    def shared(self, ws: Workspace) -> Any:
        """The shared session (made now if there is none, or its client stopped)."""
        with self.lock:
            s = self.session
            if s is None or s.client.status not in ("running", "connecting"):
                from ess.udb.client import UdbSession

                if s is not None:
                    with contextlib.suppress(Exception):
                        s.close()
                with _worker_settings_kept():
                    self.session = s = UdbSession(ws, revive=False, conn=self.conn)
            return s

    def _serve(self, sock: socket.socket) -> None:
        view = None
        try:
            first = recv(sock)
            if first is None or first[0].get("op") != "open":
                return
            view = self._open(sock, first[0])
            if view is None:
                return
            from ess.udb.direct import Router, owner_roots

            specs: dict[tuple[str, str], Any] = {}
            router = Router(lambda v: owner_roots(v, self.roots, self.session.shipper.handoff))
            while (msg := recv(sock)) is not None:
                header, body = msg
                try:
                    op = header.get("op")
                    if op == "route":
                        send(sock, router.route(view, self._spec(specs, header), header))
                        continue
                    if op == "staged":
                        router.staged(view, header)
                    elif op == "close":
                        router.before_close(view)
                        try:
                            view.stager.close(view)
                        except Exception as exc:  # as imp.close_sessions says it
                            if not isinstance(exc, UdbError):
                                raise UdbError(f"the import could not be committed: {exc}") from exc
                            raise
                        finally:
                            view.stager = None  # registered (or failed): nothing more to do
                        send(sock, {"ok": True})
                        return
                    else:
                        self._batch(view, specs, header, body)
                except Exception as exc:
                    send(sock, _error(exc))
                else:
                    send(sock, {"ok": True})
        except OSError:
            pass  # the command is gone: nothing registered, as for a killed process
        finally:
            if view is not None:
                view.close()
            sock.close()

    def _open(self, sock: socket.socket, header: Mapping[str, Any]) -> Any:
        from ess.udb.commit import Stager

        ws = Workspace(work_dir=Path(header["work_dir"]), cache_dir=Path(header["cache_dir"]),
                       aws_dir=Path(header["aws_dir"]))  # fmt: skip
        try:
            shared = self.shared(ws)
            stager = Stager.from_env(header.get("env", {}))
            if not stager.direct:
                stager.numbering = self.parts
            view = shared.share(ws, stager, can_revive=self.conn.shared_filesystem)
            check = view.check_placement

            def check_placement() -> None:
                key = id(shared)
                if self.checked[1] == key and time.monotonic() - self.checked[0] < PLACEMENT_TTL:
                    return
                started = time.monotonic()
                check()
                self.checked = (started, key)

            view.check_placement = check_placement  # this view only (an instance attribute)
        except Exception as exc:
            send(sock, _error(exc))
            return None
        send(sock, {"ok": True})
        return view

    @staticmethod
    def _batch(view: Any, specs: dict[tuple[str, str], Any], header: Mapping[str, Any],
               body: bytes) -> None:  # fmt: skip
        import polars as pl

        frame = pl.read_ipc_stream(io.BytesIO(body))
        view.import_frames(Gateway._spec(specs, header), str(header["target"]), [frame],
                           ddef=bool(header.get("ddef")))  # fmt: skip

    @staticmethod
    def _spec(specs: dict[tuple[str, str], Any], header: Mapping[str, Any]) -> Any:
        """The database definition a message names (parsed once per connection)."""
        from ess.udb.spec import parse_spec

        key = (str(header["db"]), str(header["spec"]))
        if key not in specs:
            specs[key] = parse_spec(key[1], name=key[0], source=f"{key[0]}.spec")
        return specs[key]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
        with self.lock:
            if self.session is not None:
                with contextlib.suppress(Exception):
                    self.session.close()
                self.session = None


@contextlib.contextmanager
def _worker_settings_kept() -> Iterator[None]:
    """Making a client quiets Dask's loggers and sets its connect timeout for the whole
    process (right for a command, ess.engine.client.connect); this process is a worker, whose
    own log and settings stay as they were."""
    import dask

    names = ("distributed", "distributed.client", "distributed.worker", "tornado", "asyncio")
    levels = {name: logging.getLogger(name).level for name in names}
    key = "distributed.comm.timeouts.connect"
    timeout = dask.config.get(key)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        dask.config.set({key: timeout})


def _same_user(sock: socket.socket) -> bool:
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return False
    return bool(_UCRED.unpack(creds)[1] == os.getuid())


_GATEWAYS: dict[str, Gateway] = {}
_LOCK = threading.Lock()


def ensure(scratch: Path, conn: Any) -> Mapping[str, str]:
    """Make sure this process runs the gateway for `conn`'s cluster (started once) and return
    the command's environment for it. `scratch`: the worker's own directory."""
    key = f"{conn.cluster_id}\0{conn.address}\0{','.join(conn.worker_names)}"
    with _LOCK:
        gw = _GATEWAYS.get(key)
        if gw is None or not gw.thread.is_alive():
            gw = Gateway(_socket_path(scratch, len(_GATEWAYS)), conn)
            _GATEWAYS[key] = gw
    return {ENV_GATEWAY: str(gw.path)}


def _socket_path(scratch: Path, n: int) -> Path:
    """A new 0700 directory (the worker's scratch space, or the temporary directory when that
    path is too long for a unix socket) with the socket's name in it."""
    name = f"gw{n}.sock"
    for parent in (scratch, Path(tempfile.gettempdir())):
        if len(str(parent)) + len(name) + 24 < _MAX_PATH:
            parent.mkdir(parents=True, exist_ok=True)
            return Path(tempfile.mkdtemp(prefix="ess-udb-", dir=parent)) / name
    raise OSError(f"no directory short enough for a unix socket (tried {scratch})")


def close_all() -> None:
    """Stop every gateway of this process (tests; a worker's end stops them with it)."""
    with _LOCK:
        while _GATEWAYS:
            _GATEWAYS.popitem()[1].close()
