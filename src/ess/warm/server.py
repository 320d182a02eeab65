"""The fork server: ``python -m ess.warm.server --socket PATH`` (started by ess.warm.service).

It imports what aq_pp and aq_udb need (ess.aq, Polars, pyarrow, the UDB client, the C helper)
once, never runs a query itself, then forks children that run the commands
(:mod:`ess.warm.child`); a child whose command ended cleanly waits for the next command with
its start-up environment (:mod:`ess.warm.reuse`, :mod:`ess.warm.pool`).
Forking is safe because nothing that holds a lock runs at fork time: Polars starts its rayon
pool on the first query (each child gets its own, sized by the child's POLARS_MAX_THREADS),
and the allocators' background threads are turned off before the import (their fork
handlers keep malloc consistent; see docs/performance.md for the test).

One thread, one selector: the listening socket, each running command's connection (signals
to relay; end of stream = the launcher died: the child is killed) and a self-pipe written on
SIGCHLD. A command's connection gets the child's exit status when it ends.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ess.warm import protocol as p
from ess.warm.child import become  # imported here, once, not in every child
from ess.warm.pool import Executor, Executors, reuse_enabled, reuse_key
from ess.warm.request import Request, receive_request

#: Exit code of a server that found its sources changed: the supervisor restarts it at once.
EXIT_STALE = 75
#: Seconds between checks of the loaded sources while no command arrives.
STALE_CHECK = 2.0
#: Python's own start-up variables: a command with other values runs cold.
PYTHON_VARS = ("PYTHONHASHSEED", "PYTHONPATH", "PYTHONHOME", "PYTHONUTF8", "PYTHONIOENCODING",
               "PYTHONWARNINGS", "PYTHONDEVMODE", "PYTHONSAFEPATH", "PYTHONNOUSERSITE")  # fmt: skip
UCRED = struct.Struct("3i")


#: What a command may need, imported once by the server. A module that fails to import here
#: (e.g. a source being edited) is left to the children, which fail or not as a cold start would.
PRELOAD = ("polars", "pyarrow", "ess.aq.pp", "ess.aq.rules", "ess.cli.aq_pp", "ess.cli.aq_udb",
           "ess.udb.imp", "ess.udb.query", "ess.udb.remote")  # fmt: skip


def preload() -> None:
    """Import everything a command needs, so a child starts with it in memory."""
    # no allocator background threads in the parent: a forked child would lack them
    os.environ.setdefault("_RJEM_MALLOC_CONF", "background_thread:false")
    os.environ.setdefault("JE_ARROW_MALLOC_CONF", "background_thread:false")
    import gc
    import importlib
    import traceback

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:
            print(f"ess.warm: cannot preload {name}:", file=sys.stderr)
            traceback.print_exc()
    if "ess.aq.native" in sys.modules:
        sys.modules["ess.aq.native"].native_library()  # builds the C helper once
    if "ess.aq.syntax" in sys.modules:
        sys.modules["ess.aq.syntax"].warm_up()  # the expression parser, for every -eval/-filt
    gc.collect()
    gc.freeze()  # the children's collections skip (and so do not copy) the parent's objects


def loaded_sources(root: Path) -> tuple[str, ...]:
    """The files of ess this server has loaded (modules, the C helper's sources, the grammar):
    an edit to one of them makes it stale; an edit elsewhere (a module it never imported)
    reaches the children anyway, since they import it from disk."""
    files = {str(f) for f in root.rglob("*") if f.suffix in (".c", ".lark")}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and path.startswith(str(root)):
            files.add(path)
    return tuple(sorted(files))


def fingerprint(files: tuple[str, ...]) -> tuple[int, ...]:
    stamps = []
    for path in files:
        try:
            stamps.append(os.stat(path).st_mtime_ns)
        except OSError:
            stamps.append(-1)
    return tuple(stamps)


@dataclass
class Server:
    path: str
    idle: float  # seconds without a command before the server exits (0: never)
    root: Path = field(default_factory=lambda: Path(__file__).resolve().parents[1])
    jobs: dict[int, socket.socket] = field(default_factory=dict)
    sel: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)

    def __post_init__(self) -> None:
        self.sources = loaded_sources(self.root)
        self.stamp = fingerprint(self.sources)
        self.checked = time.monotonic()
        self.python_env = {k: os.environ.get(k, "") for k in PYTHON_VARS}
        self.last = time.monotonic()
        self.served = 0
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.listener = _listen(self.path)
        self.execs = Executors()
        self.reuse = reuse_enabled()

    def serve(self) -> int:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # the wakeup fd does the work
        term = {"got": False}
        signal.signal(signal.SIGTERM, lambda *_: term.update(got=True))
        self.sel.register(self.listener, selectors.EVENT_READ, "accept")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        code = 0
        while not term["got"]:
            for key, _ in self.sel.select(timeout=1.0):
                if key.data == "accept":
                    code = self._accept() or code
                elif key.data == "wake":
                    _drain(self.wake_r)
                elif isinstance(key.data, tuple):  # ("exec", pid): a reused child's message
                    self._from_executor(key.data[1])
                else:
                    self._from_launcher(key.data, key.fileobj)  # type: ignore[arg-type]
            self._reap()
            for ex in self.execs.expired():
                self._retire(ex)
            if not code and time.monotonic() - self.checked > STALE_CHECK and self._stale():
                code = EXIT_STALE  # restart now, not when the next command finds out
            if code and self.listener.fileno() >= 0:
                self._stop_listening()  # stale: running commands finish on the old code
            if (code and not self.jobs) or self._idle_over():
                break
        self.close()
        return code

    def _stop_listening(self) -> None:
        self.sel.unregister(self.listener)
        _unlink_own(self.path, self.listener)
        self.listener.close()

    def _stale(self) -> bool:
        self.checked = time.monotonic()
        return fingerprint(self.sources) != self.stamp

    def _idle_over(self) -> bool:
        return bool(self.idle) and not self.jobs and time.monotonic() - self.last > self.idle

    def close(self) -> None:
        children = {*self.jobs, *self.execs.by_pid}
        for pid in children:
            _kill(pid, signal.SIGKILL)
        _wait_for(children, timeout=2.0)  # reaped here: their CPU time is counted upwards
        if self.listener.fileno() >= 0:
            _unlink_own(self.path, self.listener)
            self.listener.close()

    def _accept(self) -> int:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return 0
        self.last = time.monotonic()
        _pid, uid, _gid = UCRED.unpack(
            conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, UCRED.size)
        )
        if uid != os.getuid():  # the socket is 0600; this is the second lock on the door
            conn.close()
            return 0
        conn.settimeout(10)
        try:
            req, fds = receive_request(conn)
        except (OSError, ValueError):
            conn.close()
            return 0
        try:
            return self._start(conn, req, fds)
        finally:
            for fd in fds:
                os.close(fd)

    def _start(self, conn: socket.socket, req: Request, fds: list[int]) -> int:
        if req.tool == p.STATUS_TOOL:  # how many commands ran warm (status, tests)
            conn.sendall(p.number(p.STARTED, self.served))
            conn.close()
            return 0
        if self._stale():
            _refuse(conn, p.STALE)
            return EXIT_STALE
        if len(fds) != 3 or _python_env(req) != self.python_env:
            _refuse(conn, p.MISMATCH)
            return 0
        pid, broken = self.execs.hand(req, fds) if self.reuse else (None, [])
        for ex in broken:
            self._retire(ex)
        if pid is None:
            pid = self._fork(req, fds, conn)
        conn.settimeout(None)
        self.jobs[pid] = conn
        self.served += 1
        self.sel.register(conn, selectors.EVENT_READ, pid)
        try:
            conn.sendall(p.number(p.STARTED, pid))
        except OSError:
            _kill(pid, signal.SIGKILL)
        return 0

    def _fork(self, req: Request, fds: list[int], conn: socket.socket) -> int:
        """A new child for `req`: reusable (with a control socket) unless reuse is off."""
        control, child_end = socket.socketpair() if self.reuse else (None, None)
        keep_out = [self.listener.fileno(), self.wake_r, self.wake_w, conn.fileno(),
                    *(s.fileno() for s in self.jobs.values()), _selector_fd(self.sel),
                    *(ex.control.fileno() for ex in self.execs.by_pid.values()),
                    control.fileno() if control else -1]  # fmt: skip
        server_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            become(req, fds, server_pid=server_pid, close=[fd for fd in keep_out if fd >= 0],
                   control=child_end)  # fmt: skip
        if control is not None and child_end is not None:
            child_end.close()
            self.execs.add(pid, control, reuse_key(req))
            self.sel.register(control, selectors.EVENT_READ, ("exec", pid))
        return pid

    def _from_executor(self, pid: int) -> None:
        """A reused child's message: its command ended (DONE code), or it is going (EOF)."""
        ex = self.execs.by_pid.get(pid)
        if ex is None:
            return
        try:
            msg = p.read_number(ex.control)
        except OSError:
            msg = None
        if msg is None or msg[0] != p.DONE:  # ending: the reaping reports its command
            self._retire(self.execs.forget(pid))
            return
        self._report(pid, msg[1])
        self._retire(self.execs.park(pid))

    def _retire(self, ex: Executor | None) -> None:
        """Stop listening to a reused child and close its control socket: an idle child
        ends at once; a running one ends after its command."""
        if ex is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(ex.control)
        ex.control.close()

    def _from_launcher(self, pid: int, conn: socket.socket) -> None:
        try:
            msg = p.read_number(conn)
        except OSError:
            msg = None
        if msg is None:  # the launcher is gone (killed): its command goes too
            self.sel.unregister(conn)
            _kill(pid, signal.SIGKILL)
            return
        kind, signum = msg
        if kind == p.SIGNAL and 0 < signum < signal.NSIG:
            _kill(pid, signum)

    def _reap(self) -> None:
        while True:  # also the reused children that ended while waiting (no zombies)
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            ex = self.execs.forget(pid)
            if ex is not None:
                done = _pending_done(ex.control)  # it ended its command, then died: unread
                self._retire(ex)
                code = code if done is None else done
            self._report(pid, code)

    def _report(self, pid: int, code: int) -> None:
        """Tell the launcher of the command `pid` ran how it ended."""
        conn = self.jobs.pop(pid, None)
        if conn is None:
            return
        with contextlib.suppress(OSError):
            conn.sendall(p.number(p.EXITED, code))
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(conn)
        conn.close()
        self.last = time.monotonic()


def _wait_for(pids: set[int], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        for pid in list(pids):
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    pids.discard(pid)
            except ChildProcessError:
                pids.discard(pid)
        if pids:
            time.sleep(0.01)


def _pending_done(control: socket.socket) -> int | None:
    """The exit code a reused child reported and the service did not read yet, if any."""
    control.setblocking(False)
    try:
        msg = p.read_number(control)
    except OSError:
        return None
    return msg[1] if msg is not None and msg[0] == p.DONE else None


def _python_env(req: Request) -> dict[str, str]:
    got = {k: "" for k in PYTHON_VARS}
    for entry in req.env:
        name, _, value = entry.partition(b"=")
        key = os.fsdecode(name)
        if key in got:
            got[key] = os.fsdecode(value)
    return got


def _listen(path: str) -> socket.socket:
    """Listen on ``path`` (mode 0600 from the start), replacing a dead server's socket."""
    tmp = f"{path}.{os.getpid()}.tmp"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(tmp)
    finally:
        os.umask(old)
    os.chmod(tmp, 0o600)
    sock.listen(128)
    os.replace(tmp, path)  # launchers see a socket that already listens
    return sock


def _unlink_own(path: str, sock: socket.socket) -> None:
    """Remove ``path`` if it is still this server's socket (a successor may have replaced it)."""
    try:
        mine = os.fstat(sock.fileno()).st_ino
        if os.stat(path).st_ino == mine or not _answers(path):
            os.unlink(path)
    except OSError:
        pass


def _answers(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _refuse(conn: socket.socket, why: int) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(p.number(p.REFUSED, why))
    conn.close()


def _kill(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the child leads its own group (and so its own children)
    except OSError:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except (BlockingIOError, InterruptedError):
        pass


def _selector_fd(sel: selectors.BaseSelector) -> int:
    fileno = getattr(sel, "fileno", None)
    return int(fileno()) if fileno is not None else -1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ess.warm.server")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--idle", type=float, default=0)
    args = parser.parse_args(argv)
    preload()
    server = Server(path=args.socket, idle=args.idle)
    return server.serve()


if __name__ == "__main__":
    sys.exit(main())
