"""Worker bootstrap for cloud clusters: the wheel of this exact build, and the user-data script.

**The package.** :func:`build_wheel` packs the ``ess`` package the master is running (editable
checkout or installed wheel alike) into a wheel, with the installed distribution's metadata
(dependencies, entry points). No build backend and no network are needed, and the workers get
byte for byte the code the master runs, even uncommitted changes. :func:`build_id` names that
code: ``<version>+<digest of the package files>``; a worker computes the same over its own
installed files, which is how ``ess cluster status`` spots a node running something else.

**The script.** :func:`render_user_data` makes a cloud-init multipart document: a cloud-config
part that makes cloud-init run the user script at *every* boot (so ``ess cluster start`` can
re-sync a stopped node by replacing its user-data), and a bash script that

1. downloads the cluster CA certificate and the worker certificate + key through short-lived
   presigned S3 URLs into a 0700 directory with ``umask 077`` (files 0600; the CA key never
   leaves the master; the user-data itself holds no key, only URLs that expire),
2. installs the wheel into a virtualenv (deps from the package index; skipped when that build is
   already installed),
3. starts, detached, a loop running ``python -m ess.engine.serve worker`` that dials the
   master's scheduler over mutual TLS; the worker is named after the instance id.

A few environment variables override what the script would otherwise ask the instance metadata
service (``ESS_NODE_ADDRESS``, ``ESS_INSTANCE_ID``) or choose (``ESS_BOOT_DIR``,
``ESS_PYTHON``, ``ESS_PIP_ARGS``, ``ESS_WORKER_PORT``): the simulated cloud of the tests runs
the very same script on 127.0.0.x addresses with them.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import shlex
import zipfile
from dataclasses import dataclass
from email import message_from_string
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import ess

WORKER_PORT = 8787
#: Files of the package that are not part of the build (bytecode caches).
_SKIP_PARTS = frozenset({"__pycache__"})
_SKIP_SUFFIXES = (".pyc", ".pyo")


# -- the build ---------------------------------------------------------------------------------
def package_dir() -> Path:
    return Path(ess.__file__).resolve().parent


def _package_files(root: Path) -> list[Path]:
    files = [
        p
        for p in root.rglob("*")
        if p.is_file()
        and not _SKIP_PARTS.intersection(p.relative_to(root).parts)
        and not p.name.endswith(_SKIP_SUFFIXES)
    ]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def package_digest(root: Path | None = None) -> str:
    """A digest of every file of the ``ess`` package (names and contents)."""
    root = root or package_dir()
    digest = hashlib.sha256()
    for path in _package_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def version_of(root: Path | None = None) -> str:
    """The ``__version__`` of the package at ``root`` (read, not imported)."""
    root = root or package_dir()
    for line in (root / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    return ess.__version__


def build_id(root: Path | None = None) -> str:
    """``<version>+<12 hex digits of the package digest>``: what "the same version" means."""
    root = root or package_dir()
    return f"{version_of(root)}+{package_digest(root)[:12]}"


def _metadata(version: str) -> tuple[str, str]:
    """METADATA and entry_points.txt of the installed distribution (dependencies included)."""
    from importlib import metadata

    try:
        dist = metadata.distribution("ess")
        text = dist.read_text("METADATA") or ""
        entry_points = dist.read_text("entry_points.txt") or ""
    except metadata.PackageNotFoundError:
        text, entry_points = "", ""
    lines = [ln for ln in text.splitlines() if not ln.startswith(("Version:", "Metadata-Version"))]
    head = ["Metadata-Version: 2.1", f"Version: {version}"]
    if not any(ln.startswith("Name:") for ln in lines):
        head.append("Name: ess")
    return "\n".join(head + lines) + "\n", entry_points


def wheel_name(version: str) -> str:
    return f"ess-{version}-py3-none-any.whl"


def build_wheel(dest: Path, *, source: Path | None = None) -> Path:
    """Write the wheel of the package at ``source`` (default: the running one) into ``dest``."""
    root = source or package_dir()
    version = version_of(root)
    dist_info = f"ess-{version}.dist-info"
    metadata_text, entry_points = _metadata(version)
    entries: list[tuple[str, bytes]] = [
        (f"ess/{p.relative_to(root).as_posix()}", p.read_bytes()) for p in _package_files(root)
    ]
    entries.append((f"{dist_info}/METADATA", metadata_text.encode()))
    entries.append(
        (
            f"{dist_info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: ess.cluster.bootstrap\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n",
        )
    )
    if entry_points:
        entries.append((f"{dist_info}/entry_points.txt", entry_points.encode()))
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, data in entries:
        sha = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        writer.writerow([name, f"sha256={sha}", len(data)])
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    entries.append((f"{dist_info}/RECORD", record.getvalue().encode()))

    dest.mkdir(parents=True, exist_ok=True)
    path = dest / wheel_name(version)
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    tmp.replace(path)
    return path


# -- the user-data -----------------------------------------------------------------------------
@dataclass(frozen=True)
class BootConfig:
    cluster_id: str
    scheduler: str  # tls://host:port
    build: str  # build_id() of the master
    wheel_file: str  # file name of the wheel
    wheel_url: str
    ca_url: str
    cert_url: str
    key_url: str
    worker_port: int = WORKER_PORT


_CLOUD_CONFIG = """#cloud-config
# ess: run the worker bootstrap at every boot, so a restarted node re-syncs with the master.
cloud_final_modules:
  - [scripts-user, always]
"""

_SCRIPT = r"""#!/bin/bash
# ess worker bootstrap: cluster @CLUSTER@, ess @BUILD@.
# Runs at every boot. Overrides (used by the simulated cloud of the test-suite): ESS_BOOT_DIR,
# ESS_NODE_ADDRESS, ESS_INSTANCE_ID, ESS_PYTHON, ESS_PIP_ARGS, ESS_WORKER_PORT; ESS_VENV_ARGS
# (e.g. --system-site-packages) is used by custom clusters (ess.cluster.custom).
set -euo pipefail
umask 077
BOOT_DIR="${ESS_BOOT_DIR:-/opt/ess}"
SCHEDULER=@SCHEDULER@
BUILD=@BUILDQ@
WHEEL="$BOOT_DIR/"@WHEEL@
PORT="${ESS_WORKER_PORT:-@PORT@}"
mkdir -p "$BOOT_DIR/tls" "$BOOT_DIR/scratch"
chmod 700 "$BOOT_DIR" "$BOOT_DIR/tls"
exec >>"$BOOT_DIR/boot.log" 2>&1
echo "ess bootstrap $(date -u +%FT%TZ): cluster @CLUSTER@, build $BUILD"

imds() {  # IMDSv2 lookup
  local token
  token=$(curl -fsS -m 5 -X PUT http://169.254.169.254/latest/api/token \
    -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')
  curl -fsS -m 5 -H "X-aws-ec2-metadata-token: $token" \
    "http://169.254.169.254/latest/meta-data/$1"
}
fetch() {  # fetch URL FILE: private temporary file, then rename
  local tmp="$2.part"
  rm -f "$tmp"
  if command -v curl >/dev/null 2>&1; then
    curl -fsS --retry 5 --retry-delay 2 -o "$tmp" "$1"
  else
    python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
      "$1" "$tmp"
  fi
  chmod 600 "$tmp"
  mv -f "$tmp" "$2"
}

ADDRESS="${ESS_NODE_ADDRESS:-$(imds local-ipv4)}"
INSTANCE="${ESS_INSTANCE_ID:-$(imds instance-id)}"

# 1. TLS material of the cluster (the CA key stays on the master)
fetch @CA_URL@ "$BOOT_DIR/tls/ca.crt"
fetch @CERT_URL@ "$BOOT_DIR/tls/worker.crt"
fetch @KEY_URL@ "$BOOT_DIR/tls/worker.key"

# 2. exactly the master's build of ess
PY="${ESS_PYTHON:-}"
if [ -z "$PY" ]; then
  for candidate in python3.13 python3.12 python3.11; do
    if command -v "$candidate" >/dev/null 2>&1; then PY="$candidate"; break; fi
  done
fi
if [ -z "$PY" ] && command -v dnf >/dev/null 2>&1; then
  dnf install -y -q python3.11 python3.11-pip && PY=python3.11
fi
if [ -z "$PY" ]; then echo "ess bootstrap: no Python >= 3.11 on this node" >&2; exit 1; fi
VENV="$BOOT_DIR/venv"
# shellcheck disable=SC2086
[ -x "$VENV/bin/python" ] || "$PY" -m venv ${ESS_VENV_ARGS:-} "$VENV"
if [ "$(cat "$BOOT_DIR/installed" 2>/dev/null || true)" != "$BUILD" ]; then
  fetch @WHEEL_URL@ "$WHEEL"
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check ${ESS_PIP_ARGS:-} "$WHEEL"
  # same version number, different code: replace the package itself too
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
    --force-reinstall ${ESS_PIP_ARGS:-} "$WHEEL"
  echo "$BUILD" >"$BOOT_DIR/installed"
fi

# 3. the worker, restarted whenever it exits (a re-sync makes it exit), until detached
rm -f "$BOOT_DIR/detached"
cat >"$BOOT_DIR/run-worker.sh" <<EOF
#!/bin/bash
export ESS_BOOT_DIR='$BOOT_DIR' ESS_PIP_ARGS='${ESS_PIP_ARGS:-}'
while [ ! -e '$BOOT_DIR/detached' ]; do
  '$VENV/bin/python' -m ess.engine.serve worker --tls-dir '$BOOT_DIR/tls' \
    --cluster-dir '$BOOT_DIR' --host '$ADDRESS' --port '$PORT' --scheduler '$SCHEDULER' \
    --name '$INSTANCE' --local-dir '$BOOT_DIR/scratch' --death-timeout 120 || true
  sleep 2
done
EOF
chmod 700 "$BOOT_DIR/run-worker.sh"
if [ -f "$BOOT_DIR/worker.pid" ] && kill -0 "$(cat "$BOOT_DIR/worker.pid")" 2>/dev/null; then
  kill -- -"$(cat "$BOOT_DIR/worker.pid")" 2>/dev/null || true
fi
setsid "$BOOT_DIR/run-worker.sh" </dev/null >>"$BOOT_DIR/worker.log" 2>&1 &
echo $! >"$BOOT_DIR/worker.pid"
echo "ess bootstrap: worker $INSTANCE started on $ADDRESS:$PORT, scheduler $SCHEDULER"
"""


def render_script(config: BootConfig) -> str:
    """The bash bootstrap script; every substituted value is shell-quoted."""
    q = shlex.quote
    values = {
        "@CLUSTER@": config.cluster_id,  # inside a comment/echo: ids are [a-z0-9-] only
        "@BUILD@": config.build,
        "@SCHEDULER@": q(config.scheduler),
        "@BUILDQ@": q(config.build),
        "@WHEEL@": q(config.wheel_file),
        "@PORT@": str(int(config.worker_port)),
        "@CA_URL@": q(config.ca_url),
        "@CERT_URL@": q(config.cert_url),
        "@KEY_URL@": q(config.key_url),
        "@WHEEL_URL@": q(config.wheel_url),
    }
    if not all(c.isalnum() or c in "-." for c in config.cluster_id):
        raise ValueError(f"bad cluster id {config.cluster_id!r}")
    if not all(c.isalnum() or c in "+.-_" for c in config.build):
        raise ValueError(f"bad build id {config.build!r}")
    text = _SCRIPT
    for token, value in values.items():
        text = text.replace(token, value)
    return text


def render_user_data(config: BootConfig) -> str:
    """A cloud-init multipart document: the every-boot cloud-config and the bootstrap script."""
    doc = MIMEMultipart(boundary="==ess-boot==")
    doc.attach(MIMEText(_CLOUD_CONFIG, "cloud-config"))
    doc.attach(MIMEText(render_script(config), "x-shellscript"))
    return doc.as_string()


def script_from_user_data(user_data: str) -> str:
    """The bootstrap script inside a user-data document (what cloud-init would run)."""
    msg = message_from_string(user_data)
    if not msg.is_multipart():
        return user_data
    for part in msg.walk():
        if part.get_content_type() == "text/x-shellscript":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                return payload.decode()
    raise ValueError("no shell script in the user-data")
