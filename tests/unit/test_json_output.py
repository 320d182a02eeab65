"""`--json` outputs against their documented schemas (docs/json-schemas), and the shell
completion script in a real bash: every command runs as a user runs it (`ess ...` in a
subprocess, in a sandboxed work dir). The commands that need a running cluster are in
tests/integration/test_json_output.py.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema

from ess.cli.main import build_parser
from tests.conftest import BIN, PROJECT, WOODWORKING, EssEnv

SCHEMAS = PROJECT / "docs" / "json-schemas"


def validated(schema: str, stdout: str) -> Any:
    """The document, after it passed its schema (one JSON document, nothing else on stdout)."""
    document = json.loads(stdout)
    checker = jsonschema.Draft202012Validator(json.loads((SCHEMAS / f"{schema}.json").read_text()))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in checker.iter_errors(document)]
    assert errors == [], f"{schema}: {errors}"
    return document


def _json_options() -> dict[str, str]:
    """Each command with a --json option -> the schema its help names."""
    found: dict[str, str] = {}

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif "--json" in action.option_strings:
                schema = re.search(r"docs/json-schemas/([\w-]+)\.json", action.help or "")
                found[path] = schema.group(1) if schema else ""

    walk(build_parser(), "ess")
    return found


def test_every_json_option_names_a_valid_documented_schema() -> None:
    options = _json_options()
    assert set(options) == {
        "ess cluster status",
        "ess cluster iplist",
        "ess ls",
        "ess summary",
        "ess repository",
        "ess udbd",
        "ess server",
    }
    docs = (PROJECT / "docs" / "json.md").read_text()
    for command, schema in options.items():
        path = SCHEMAS / f"{schema}.json"
        assert path.is_file(), f"{command}: {path}"
        jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))
        assert f"json-schemas/{schema}.json" in docs, f"docs/json.md does not describe {schema}"
    assert {p.stem for p in SCHEMAS.glob("*.json")} == set(options.values())


def test_ls_json_lists_what_the_text_lists(ess_env: EssEnv) -> None:
    ess_env.ess("select", "local", check=True)
    (ess_env.root / "d" / "sub").mkdir(parents=True)
    (ess_env.root / "d" / "log_20140902.txt").write_text("two\n")
    (ess_env.root / "d" / "notes.txt").write_text("x\n")
    where = str(ess_env.root / "d")
    text = ess_env.ess("ls", where, check=True).stdout
    files = validated("ls", ess_env.ess("ls", where, "--json", check=True).stdout)["files"]
    assert files == [
        {"path": f"{where}/log_20140902.txt", "directory": False, "size": 4, "date": "2014-09-02"},
        {"path": f"{where}/notes.txt", "directory": False, "size": 2, "date": "1970-01-01"},
        {"path": f"{where}/sub/", "directory": True, "size": None, "date": None},
    ]
    as_text = [f"{f['path']}\t{-1 if f['size'] is None else f['size']}\t{f['date'] or ''}"
               for f in files]  # fmt: skip
    assert text.splitlines() == as_text
    cat = ess_env.ess("ls", "--cat", "nothing", "--json")  # errors stay one line on stderr
    assert cat.returncode != 0 and cat.stdout == "" and "nothing" in cat.stderr
    mixed = ess_env.ess("ls", where, "--json", "--nameonly")
    assert mixed.returncode == 2 and "not allowed with argument --json" in mixed.stderr


def test_summary_json_has_the_datastore_the_category_and_one_attribute(ess_env: EssEnv) -> None:
    ess_env.ess("select", "local", check=True)
    ess_env.ess("category", "add", "purchase", f"{WOODWORKING}/*purchase_*", check=True)
    gone = ess_env.root / "gone_20140901.txt"
    gone.write_text("x\n")
    ess_env.ess("category", "add", "empty", str(gone), "--noprobe", check=True)
    gone.unlink()  # the rescan finds no file: no dates (null, where the text says 1970-01-01)
    store = validated("summary", ess_env.ess("summary", "--scan", "--json", check=True).stdout)
    assert store == {
        "label": "local",
        "files": 30,
        "bytes": 380900,
        "categories": [
            {"name": "empty", "files": 0, "bytes": 0, "first": None, "last": None},
            {"name": "purchase", "files": 30, "bytes": 380900,
             "first": "2014-09-01", "last": "2014-09-30"},
        ],
    }  # fmt: skip
    short = ess_env.ess("summary", "--short", "--json", check=True).stdout
    assert json.loads(short) == store
    assert ess_env.ess("summary", "--short", check=True).stdout == "30 files, 372.0K\n"
    rows = ess_env.ess("summary", check=True).stdout.splitlines()[8:10]
    assert [r.split() for r in rows] == [
        ["empty", "0", "0.0B", "1970-01-01", "1970-01-01"],
        ["purchase", "30", "372.0K", "2014-09-01", "2014-09-30"],
    ]

    one = validated("summary", ess_env.ess("summary", "purchase", "--json", check=True).stdout)
    text = ess_env.ess("summary", "purchase", check=True).stdout
    assert one["columns"] == ["S:purchaseDate", "I:userID", "I:articleID", "F:price", "S:refID"]
    assert (one["files"], one["first"], one["last"]) == (30, "2014-09-01", "2014-09-30")
    assert f"Column Spec: {one['columnspec']}\n" in text
    assert text.endswith("First few lines:\n" + "".join(f"{x}\n" for x in one["sample_lines"]))
    assert one["sample_lines"][0] == "purchaseDate,userID,articleID,price,refID"

    r = ess_env.ess("summary", "purchase", "schema", "--json", check=True)
    value = validated("summary", r.stdout)["value"]
    assert value + "\n" == ess_env.ess("summary", "purchase", "schema", check=True).stdout
    assert value.splitlines()[-1] == "S:refID"


def test_repository_json_marks_the_selected_datastore(ess_env: EssEnv) -> None:
    ess_env.ess("select", "local", check=True)
    doc = validated("repository", ess_env.ess("repository", "--json", check=True).stdout)
    assert doc["selected"] == "local"
    assert doc["datastores"] == [{"label": "local", "kind": "local", "root": "/", "region": None,
                                  "location": "local disk", "selected": True}]  # fmt: skip
    assert ess_env.ess("repository", check=True).stdout.splitlines()[2].split() == [
        "*", "local", "local", "local", "disk"
    ]  # fmt: skip


def test_server_summary_and_udbd_status_json_without_a_cluster(ess_env: EssEnv) -> None:
    ess_env.ess("create", "database", "wood", "--ports=1", check=True)
    ess_env.ess("create", "table", "allsales", "s,pkey:userid", "i,tkey:ptime", "f:price",
                check=True)  # fmt: skip
    ess_env.ess("create", "vector", "usersales", "s,pkey:userid", "f,+add:total", check=True)
    ess_env.ess("create", "variable", "i:totalusers", check=True)
    ess_env.ess("create", "database", "other", check=True)  # the active one now
    doc = validated("server-summary", ess_env.ess("server", "summary", "--json", check=True).stdout)
    assert doc["active"] == "other"
    assert [(d["name"], d["active"]) for d in doc["databases"]] == [
        ("other", True),
        ("wood", False),
    ]
    wood = doc["databases"][1]
    lines = []  # the text, rebuilt from the document
    for db in doc["databases"]:
        lines += [f"database {db['name']} (ports {' '.join(map(str, db['ports']))})",
                  "  pkey: " + " ".join(c["spec"] for c in db["pkey"])]  # fmt: skip
        for t in db["targets"]:
            title = "variable" if t["kind"] == "variable" else f"{t['kind']} {t['name']}"
            lines.append(f"  {title}: " + " ".join(c["spec"] for c in t["columns"]))
    assert ess_env.ess("server", "summary", check=True).stdout.splitlines() == lines
    assert len(lines) == 7
    assert wood["targets"][1]["columns"] == [
        {"name": "total", "type": "F", "attributes": ["+add"], "spec": "F,+add:total"}
    ]
    only = ess_env.ess("server", "summary", "--name", "other", "--json", check=True).stdout
    assert [d["name"] for d in validated("server-summary", only)["databases"]] == ["other"]

    status = validated("udbd-status", ess_env.ess("udbd", "status", "--json", check=True).stdout)
    assert status["running"] is False and status["cluster_running"] is False
    ports = sorted(p for d in doc["databases"] for p in d["ports"])
    assert status["pid"] is None and status["ports"] == ports and len(ports) == 2
    text = ess_env.ess("udbd", "status", check=True).stdout.splitlines()
    assert text == [f"{status['host']}: udbd-{p} is not running." for p in status["ports"]]

    wrong = ess_env.ess("udbd", "stop", "--json")
    assert wrong.returncode == 2 and "--json applies to 'ess udbd status' only" in wrong.stderr


def _bash_complete(line: str) -> list[str]:
    """COMPREPLY for `line<TAB>` in a real bash that sourced `ess completion bash`."""
    script = (
        'source <("$ESS" completion bash) || exit 9\n'
        'read -ra COMP_WORDS <<< "$LINE"\n'
        '[[ "$LINE" == *" " ]] && COMP_WORDS+=("")\n'
        "COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n"
        "$(complete -p ess | sed 's/.*-F \\([^ ]*\\) ess$/\\1/')\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    proc = subprocess.run(
        ["bash", "-c", script],
        env={"ESS": str(BIN / "ess"), "LINE": line, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_bash_completes_commands_subcommands_choices_and_options() -> None:
    assert _bash_complete("ess clu") == ["cluster"]
    assert _bash_complete("ess cluster st") == ["stop", "start", "status"]
    assert _bash_complete("ess cluster status --j") == ["--json"]
    assert _bash_complete("ess udbd st") == ["start", "stop", "status"]
    # a value given to an option does not derail the walk down the commands
    assert _bash_complete("ess category add --label x --ov") == ["--overwrite"]
    assert _bash_complete("ess completion ") == ["bash", "zsh"]
    assert "completion" in _bash_complete("ess ")


def test_zsh_script_is_generated_and_parses(tmp_path: Path) -> None:
    script = subprocess.run(
        [str(BIN / "ess"), "completion", "zsh"], capture_output=True, text=True, check=True
    ).stdout
    assert script.startswith("#compdef ess\n")
    assert "'ess cluster') cands=(set create add remove terminate stop start status reset " \
        "iplist)" in script  # fmt: skip
    zsh = shutil.which("zsh")
    assert zsh is not None, "zsh is missing: scripts/setup-system.sh installs it"
    (tmp_path / "_ess").write_text(script)
    proc = subprocess.run([zsh, "-n", str(tmp_path / "_ess")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_udbd_status_with_problems_renders_the_same_lines_and_fits_its_schema() -> None:
    """Damage cannot be staged cheaply here (tests/integration/test_udb_faults.py reads these
    lines from a real damaged UDB): the status object renders both outputs."""
    from dataclasses import asdict

    from ess.udb.udbd import UdbdStatus, WorkerNote

    status = UdbdStatus(
        host="vm",
        ports=(10010, 10011),
        cluster_running=True,
        running=True,
        pid=4242,
        load_errors=(WorkerNote("worker-2", "bad magic in seg-1"),),
        damaged=(WorkerNote("worker-1", "database db, table tab, partition 3: /x.damaged"),),
    )
    assert status.lines() == [
        "vm: udbd-10010 (4242) is running.",
        "vm: udbd-10011 (4242) is running.",
        "vm: worker-2: the UDB could not load its snapshots: bad magic in seg-1",
        "vm: worker-1: damaged snapshot moved aside, its rows are not loaded: "
        "database db, table tab, partition 3: /x.damaged",
    ]
    doc = validated("udbd-status", json.dumps(asdict(status)))
    assert doc["damaged"] == [{"worker": "worker-1", "text": status.damaged[0].text}]
