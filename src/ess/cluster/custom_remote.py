"""The shell commands the master runs on custom-cluster hosts over SSH.

Every value substituted into a command is quoted with ``shlex.quote``; the only unquoted
expansion is ``"$HOME"`` (the node directory is relative to the SSH user's home by default).
Each host has its own directory (``~/.ess-node/<cluster>/<host>``), so hosts that share a home
directory (NFS, or the loopback hosts of the tests) never step on each other:

    venv/ tls/ (0700, keys 0600)  installed  worker.pid  run-worker.sh  boot.log  worker.log
    work/   the worker's working directory (``ess exec`` runs there, ``ess file`` uses it)
    stage/  files being shipped (0700), removed after the bootstrap
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

q = shlex.quote


@dataclass(frozen=True)
class NodeDir:
    """Where a host keeps this cluster's files: ``path`` is absolute or relative to $HOME."""

    path: str

    @classmethod
    def of(cls, node_dir: str, cluster_slug: str, host_slug: str) -> NodeDir:
        return cls(f"{node_dir.rstrip('/')}/{cluster_slug}/{host_slug}")

    @property
    def shell(self) -> str:
        """The directory as one shell word."""
        if self.path.startswith("/"):
            return q(self.path)
        return '"$HOME"/' + q(self.path)

    def sub(self, name: str) -> str:
        return self.shell + "/" + q(name)

    def absolute(self, home: str) -> str:
        return self.path if self.path.startswith("/") else f"{home.rstrip('/')}/{self.path}"


def slug(text: str) -> str:
    """A cluster id as a directory name (and a word the bootstrap script accepts)."""
    out = "".join(c if c.isalnum() or c in "-." else "-" for c in text).strip("-.")
    return out or "cluster"


def prepare(node: NodeDir) -> str:
    """Create the node directories (private) and report the home and the installed build."""
    b = node.shell
    return (
        f"umask 077 && mkdir -p {b}/stage {b}/work && chmod 700 {b} {b}/stage && "
        f"printf 'home=%s\\n' \"$HOME\" && "
        f"printf 'installed=%s\\n' \"$(cat {b}/installed 2>/dev/null || true)\""
    )


def parse_keys(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def bootstrap(node: NodeDir, env: dict[str, str]) -> str:
    """Run the bootstrap script (given on stdin) in the worker's working directory."""
    assignments = " ".join(f"{k}={q(v)}" for k, v in sorted(env.items()))
    return f"cd {node.shell}/work && env {assignments} bash -s"


def boot_log_tail(node: NodeDir, lines: int = 25) -> str:
    return f"tail -n {int(lines)} {node.sub('boot.log')} 2>/dev/null; true"


def drop_stage(node: NodeDir) -> str:
    return f"rm -rf {node.shell}/stage"


_STOP = r"""
B={b}
touch "$B/detached" 2>/dev/null || true
if [ -f "$B/worker.pid" ]; then
  p=$(cat "$B/worker.pid")
  case "$p" in ''|*[!0-9]*) p= ;; esac
  # only our own worker loop: its command line names this node's run-worker.sh
  if [ -n "$p" ] && tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF "$B/run-worker.sh"; then
    kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true
    i=0
    while kill -0 -- "-$p" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
    kill -KILL -- "-$p" 2>/dev/null || true
    echo "stopped=$p"
  fi
  rm -f "$B/worker.pid"
fi
"""


def stop_worker(node: NodeDir) -> str:
    """Stop the worker loop and its worker (the whole process group), by pid."""
    return _STOP.replace("{b}", node.shell)


def remove_node(node: NodeDir) -> str:
    """Stop the worker and delete everything ess put on the host for this cluster (and the
    cluster's and ess's directories when they are left empty)."""
    cluster_dir, _, _ = node.path.rpartition("/")
    top, _, _ = cluster_dir.rpartition("/")
    rmdirs = " ".join(NodeDir(d).shell for d in (cluster_dir, top) if d)
    # the node's warm service (ess.warm) keeps NODE.warm.sock/.log and its launchers'
    # NODE.warm.sock.bin/ beside the node directory, and ends by itself once the worker is gone
    # (removing its launchers then too, but maybe after the rmdir below)
    warm = f"{node.shell}.warm.sock {node.shell}.warm.log {node.shell}.warm.sock.bin"
    return stop_worker(node) + (
        f"rm -rf {node.shell}\nrm -rf {warm}\nrmdir {rmdirs} 2>/dev/null || true\n"
    )


_STATUS = r"""
B={b}
printf 'home=%s\n' "$HOME"
printf 'installed=%s\n' "$(cat "$B/installed" 2>/dev/null || true)"
p=$(cat "$B/worker.pid" 2>/dev/null || true)
case "$p" in ''|*[!0-9]*) p= ;; esac
if [ -n "$p" ] && tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF "$B/run-worker.sh"; then
  echo "worker=$p"
else
  echo "worker="
fi
if [ -r /proc/stat ]; then
  cpu=$( { grep '^cpu[0-9]' /proc/stat; sleep 0.2; grep '^cpu[0-9]' /proc/stat; } | awk '
    { t = 0; for (i = 2; i <= NF; i++) t += $i; idle = $5 + $6
      if ($1 in T) { dt = t - T[$1]; di = idle - I[$1]
        printf "%s%.1f", (n++ ? ", " : ""), (dt > 0 ? 100 * (1 - di / dt) : 0) }
      else { T[$1] = t; I[$1] = idle } }')
  echo "cpu=[$cpu]"
  awk '/^MemTotal:/ {t = $2} /^MemAvailable:/ {a = $2}
       END { if (t) printf "mem=%.1f\n", 100 * (t - a) / t }' /proc/meminfo
fi
d="$B"; [ -d "$d" ] || d="$HOME"
df -P "$d" 2>/dev/null | awk 'NR == 2 { sub("%", "", $5); printf "disk=%.1f\n", $5 }'
"""


def status(node: NodeDir) -> str:
    """Worker pid (if running), installed build, per-CPU load, memory and disk use (%)."""
    return _STATUS.replace("{b}", node.shell)
