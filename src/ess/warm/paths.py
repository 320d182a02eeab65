"""Where warm services put their sockets; importable by the launcher (standard library only)."""

from __future__ import annotations

import os
import stat

#: Set by a node's worker (and the local default's stream) for the commands it runs: the
#: socket of the node's warm service. Unset: the user's own service (``python -m ess.warm``).
ENV_SOCKET = "ESS_WARM_SOCKET"
#: "0": run aq_pp/aq_udb cold (their own process), and start no service.
ENV_WARM = "ESS_WARM"
#: A unix socket path must fit sockaddr_un (108 bytes with the NUL).
MAX_SOCKET_PATH = 100


def runtime_dir(*, create: bool) -> str | None:
    """This user's private directory for sockets (0700, owned by us), or None when it is not
    safe: it exists with another owner or mode, or cannot be made."""
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    path = os.path.join(base, f"ess-warm-{os.getuid()}")
    if create:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return path


def user_socket() -> str | None:
    """The socket of this user's own service (``python -m ess.warm start``)."""
    base = runtime_dir(create=False)
    return os.path.join(base, "user.sock") if base else None


def socket_for(wanted: str) -> str:
    """``wanted``, or a name in the runtime directory when ``wanted`` is too long for a socket."""
    if len(os.fsencode(wanted)) <= MAX_SOCKET_PATH:
        return wanted
    base = runtime_dir(create=True)
    if base is None:
        raise OSError(f"no private directory for the warm socket {wanted}")
    import hashlib  # only here: the launcher imports this module

    digest = hashlib.sha256(os.fsencode(wanted)).hexdigest()[:16]
    return os.path.join(base, f"n-{digest}.sock")


def warm_enabled(environ: os._Environ[str] | dict[str, str] | None = None) -> bool:
    return (os.environ if environ is None else environ).get(ENV_WARM, "1") != "0"
