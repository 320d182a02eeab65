"""Every ``ESS_*`` environment variable ess reads or sets, with its default and meaning.

This is the one list: code reads a variable through :func:`env` (which refuses a name that is
not listed here), ``docs/settings.md`` is generated from it (``python -m ess.settings``) and a
test checks both that the docs are current and that no ``ESS_*`` name in the sources is
missing here. Kinds:

* ``user``: the user sets it to change where state lives or how ess runs;
* ``tuning``: knobs for measuring or working around a problem (defaults are the right choice);
* ``command``: ess sets it for the commands that ``ess stream``/``ess exec`` run;
* ``worker``: ess sets it for commands on remote workers (the UDB's way back to the cluster);
* ``boot``: read by the node bootstrap (EC2 user-data, SSH hosts); the test-suite overrides them;
* ``test``: read by the project's test scripts (scripts/sshd-hosts.sh);
* ``cflag``: a C macro for ``ESS_NATIVE_CFLAGS`` (``-DNAME``), not an environment variable.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from ess.errors import ConfigError


@dataclass(frozen=True)
class Setting:
    name: str
    kind: str
    #: The value :func:`env` returns when the variable is unset or empty.
    default: str
    meaning: str
    #: How the docs describe a default that code works out (e.g. "the default VPC").
    described: str = ""


_S = Setting
SETTINGS: tuple[Setting, ...] = (
    _S("ESS_WORK_DIR", "user", "./.conf", "per-directory state: platform, cluster, UDB specs"),
    _S("ESS_CACHE_DIR", "user", "~/.ess", "datastores, categories and their file lists"),
    _S("ESS_AWS_DIR", "user", "~/.aws", "pem files of key pairs made by `ess cluster create`"),
    _S("ESS_NATIVE_DIR", "user", "~/.cache/ess/native", "where aq_pp's C helper is built"),
    _S("ESS_NATIVE", "tuning", "1", "0: aq_pp uses no C helper (pure Polars)"),
    _S("ESS_NATIVE_CFLAGS", "tuning", "", "extra compiler flags for aq_pp's C helper"),
    _S("ESS_AQ_MMAP", "tuning", "1", "0: aq_pp reads regular files with read(), not mmap"),
    _S("ESS_AQ_CHUNK_MB", "tuning", "16", "aq_pp's input batch size in MB"),
    _S("ESS_AQ_PREFETCH", "tuning", "1", "0: aq_pp reads its input without a prefetch thread"),
    _S("ESS_WARM", "tuning", "1", "0: aq_pp/aq_udb run cold and workers start no warm service"),
    _S("ESS_DASHBOARD", "tuning", "1", "0: schedulers start without Dask's dashboard (bokeh)"),
    _S("ESS_TRACEBACK", "tuning", "", "1: an internal error of ess shows its Python traceback"),
    _S("ESS_WARM_SOCKET", "command", "", "the warm service aq_pp/aq_udb hand their command to"),
    _S("ESS_WARM_C", "tuning", "1", "0: warm services install Python, not C, fast launchers"),
    _S("ESS_WARM_REUSE", "tuning", "1", "0: a warm service forks a fresh child for every command"),
    _S("ESS_HUGE_PAGES", "tuning", "0", "1: daemons keep the system's transparent huge pages"),
    _S("ESS_COMMAND_PATH", "command", "", "a worker's directory put first on its commands' PATH"),
    _S(
        "ESS_NO_GATEWAY", "tuning", "", "non-empty: tasks go through a Dask client, not the gateway"
    ),
    _S("ESS_EC2_AMI", "user", "", "image of EC2 workers", "latest Amazon Linux 2023"),
    _S("ESS_EC2_SUBNET", "user", "", "subnet EC2 workers are launched into", "the default VPC"),
    _S("ESS_EC2_INSTANCE_PROFILE", "user", "", "IAM instance profile of EC2 workers (S3 access)"),
    _S("ESS_EC2_SSH_CIDR", "user", "", "who may SSH to EC2 workers", "the master's IP/32"),
    _S("ESS_EC2_SCHEDULER_HOST", "user", "", "address workers dial", "the master's private IP"),
    _S("ESS_EC2_SCHEDULER_PORT", "user", "8786", "the scheduler's port on EC2 clusters"),
    _S("ESS_EC2_WORKER_PORT", "user", "8787", "the workers' port on EC2 clusters"),
    _S("ESS_EC2_JOIN_TIMEOUT", "user", "900", "seconds create/start wait for workers (0: none)"),
    _S("ESS_EC2_URL_TTL", "user", "3600", "lifetime of presigned bootstrap URLs in seconds"),
    _S("ESS_EC2_BATCH", "tuning", "25", "instances per RunInstances call"),
    _S("ESS_FILE", "command", "", 'the streamed file\'s name, safe to quote as "$ESS_FILE"'),
    _S("ESS_FILE_STEM", "command", "", "the streamed file's name without extension (%file)"),
    _S("ESS_FILE_DIR", "command", "", "the streamed file's directory (%path)"),
    _S("ESS_FILE_PATH", "command", "", "the streamed file's full path in its datastore"),
    _S("ESS_STDIN_NAME", "command", "", "what a command's stdin carries (aq_pp's error messages)"),
    _S("ESS_FILE_INDEX", "command", "", "the streamed file's place in the stream (0 = first)"),
    _S("ESS_NODE_ID", "command", "", "the node's number (%node_id)"),
    _S("ESS_THREAD_ID", "command", "", "the task slot's number on its node (%thread_id)"),
    _S("ESS_EXEC_NODE", "command", "", "`ess exec` only: the node's place, 1 = first (aq_udb)"),
    _S("ESS_SCHEDULER_ADDRESS", "worker", "", "the cluster's scheduler, for the UDB tools"),
    _S("ESS_TLS_DIR", "worker", "", "the worker's TLS directory (its own certificate)"),
    _S("ESS_TLS_FILES", "worker", "", "the worker's CA, cert and key files (os.pathsep list)"),
    _S("ESS_UDB_STAGE", "worker", "", "an ess stream's run token: aq_pp -imp stages its batches"),
    _S("ESS_UDB_ATTEMPT", "worker", "", "this execution of a file's command (a re-run differs)"),
    _S("ESS_UDB_RUNNER", "worker", "", "the address of the worker that runs the command"),
    _S("ESS_LOAD_JOB", "worker", "", "ess redshift stream: one file's load (no password)"),
    _S("ESS_LOAD_PASSWORD", "worker", "", "ess redshift stream: the loader's database password"),
    _S("ESS_LOAD_PYTHON", "worker", "", "ess redshift stream: the worker's Python for the loader"),
    _S("ESS_UDB_GATEWAY", "worker", "", "aq_pp -imp's shared UDB connection (0: none)"),
    _S(
        "ESS_UDB_DIRECT",
        "worker",
        "1",
        "0: aq_pp -imp in a stream stages through the gateway, not straight to the owners",
    ),
    _S("ESS_CLUSTER_WORKERS", "worker", "", "the worker names the master expects"),
    _S("ESS_CLUSTER_ID", "worker", "", "the cluster's id"),
    _S("ESS_BOOT_DIR", "boot", "/opt/ess", "where a node keeps its venv, wheel and logs"),
    _S("ESS_NODE_ADDRESS", "boot", "", "the address a worker announces", "instance metadata"),
    _S("ESS_INSTANCE_ID", "boot", "", "the node's instance id", "instance metadata"),
    _S(
        "ESS_PYTHON",
        "boot",
        "",
        "the Python a node's venv is made with",
        "a python3 found on the node",
    ),
    _S("ESS_PIP_ARGS", "boot", "", "extra pip arguments for the node's install"),
    _S("ESS_VENV_ARGS", "boot", "", "extra `python -m venv` arguments"),
    _S("ESS_WORKER_PORT", "boot", "", "the worker's port (0: any)", "the cluster's port"),
    _S("ESS_LONG", "test", "", "1: the suite also runs its tests marked long (make test-long)"),
    _S("ESS_SSHD_DIR", "test", "/var/tmp/ess-sshd", "state of the test suite's sshd hosts"),
    _S("ESS_SSHD_PORT", "test", "2222", "port of the test suite's sshd hosts"),
    _S("ESS_SSHD_USER", "test", "esstest", "login of the test suite's sshd hosts"),
    _S("ESS_NO_SIMD", "cflag", "", "portable C parser (no SSE2/AVX2)"),
    _S("ESS_NO_AVX2", "cflag", "", "SSE2 code only"),
    _S("ESS_NO_FMA", "cflag", "", "no FMA division path"),
    _S("ESS_AVX2", "cflag", "", "(internal) set when AVX2 code is compiled in"),
    _S("ESS_FMA", "cflag", "", "(internal) set when the FMA path is compiled in"),
    _S("ESS_TARGET_AVX2", "cflag", "", "(internal) function attribute of AVX2 code"),
    _S("ESS_TARGET_FMA", "cflag", "", "(internal) function attribute of FMA code"),
)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


def env(name: str, environ: Mapping[str, str] | None = None) -> str:
    """The variable's value, or its default when unset or empty."""
    setting = BY_NAME.get(name)
    if setting is None or setting.kind == "cflag":
        raise ConfigError(f"{name} is not a setting listed in ess.settings")
    value = (os.environ if environ is None else environ).get(name, "")
    return value or setting.default


def markdown() -> str:
    """The text of docs/settings.md."""
    lines = [
        "# Settings: every `ESS_*` variable",
        "",
        "Generated from `src/ess/settings.py` by `python -m ess.settings > docs/settings.md`;",
        "a test fails when this file and the module disagree. Kinds are explained in the",
        "module's docstring: `user` and `tuning` are yours to set, `command` and `worker` are",
        "set by ess for the commands it runs, `boot` is read by a node's bootstrap, `test` by the",
        "project's test scripts, `cflag` is a C macro for `ESS_NATIVE_CFLAGS`.",
        "",
        "| variable | kind | default | meaning |",
        "|---|---|---|---|",
    ]
    for s in SETTINGS:
        lines.append(
            f"| `{s.name}` | {s.kind} | {s.described or s.default or '(unset)'} | {s.meaning} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
