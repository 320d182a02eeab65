"""`ess redshift` against Redshift's control API and S3 staging, served by a real moto server.

There is no Redshift here, and Redshift's SQL (COPY ... MANIFEST) must not be faked as working
on PostgreSQL. So the load path runs for real up to the database: the loaders write gzip parts
to (moto) S3, the master writes the manifest; the database end is a connection that records
every statement and, when the COPY arrives, reads the manifest and the parts it names from S3
exactly as Redshift would. The tests assert the exact SQL and what was staged.
"""

from __future__ import annotations

import contextlib
import gzip
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from ess.errors import CommandFailed
from ess.load.stream import LoadRequest, load_stream
from ess.workspace import Workspace
from tests.conftest import WOODWORKING, EssEnv

pytestmark = pytest.mark.slow

ROLE = "arn:aws:iam::123456789012:role/ess-load"
BUCKET = "ess-stage"


@pytest.fixture
def rs_env(aws_env: EssEnv, monkeypatch: pytest.MonkeyPatch) -> EssEnv:
    creds = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": aws_env.env["AWS_ENDPOINT_URL"],
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    aws_env.env.update(creds)
    for key, value in creds.items():  # the in-process loads' loaders inherit these
        monkeypatch.setenv(key, value)
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    rs = boto3.client("redshift")
    with contextlib.suppress(rs.exceptions.ClusterAlreadyExistsFault):
        rs.create_cluster(
            ClusterIdentifier="redshiftdemo",
            NodeType="dc2.large",
            MasterUsername="essentia",
            MasterUserPassword="DEMOpassword999",
            DBName="redshiftdemo",
        )
    aws_env.ess("select", "local", check=True)
    aws_env.ess("category", "add", "purchase", f"{WOODWORKING}/*purchase*", check=True)
    return aws_env


def _register(env: EssEnv) -> None:
    r = env.ess(
        "redshift",
        "register",
        "redshiftdemo",
        "redshiftdemo",
        "essentia",
        "DEMOpassword999",
        "--no-connect",
        "--staging",
        f"s3://{BUCKET}/ess",
        "--iam-role",
        ROLE,
    )
    assert r.returncode == 0, r.stderr
    assert "DEMOpassword999" not in r.stderr + r.stdout


def test_register_resolves_the_endpoint_and_list(rs_env: EssEnv) -> None:
    _register(rs_env)
    state = json.loads((rs_env.work_dir / "redshift.json").read_text())
    assert state["cluster_id"] == "redshiftdemo" and state["kind"] == "redshift"
    assert state["host"].startswith("redshiftdemo.") and state["port"] == 5439
    assert "DEMOpassword999" not in json.dumps(state)
    secret = rs_env.work_dir / "redshift.password"
    assert secret.read_text() == "DEMOpassword999" and secret.stat().st_mode & 0o777 == 0o600
    listed = rs_env.ess("redshift", "list", check=True).stdout.splitlines()
    assert listed[0] == '"cluster","status","host","port","dbname","node_type","nodes"'
    assert any(line.startswith('"redshiftdemo",') for line in listed[1:])
    missing = rs_env.ess("redshift", "register", "nosuch", "db", "u", "p", "--no-connect")
    assert missing.returncode != 0 and "no Redshift cluster 'nosuch'" in missing.stderr
    rs_env.ess("redshift", "deregister", check=True)
    assert not secret.exists() and not (rs_env.work_dir / "redshift.json").exists()


class _Cursor:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None


class RecordingRedshift:
    """The database end: records statements; at COPY, reads the manifest and parts from S3."""

    def __init__(self, *, fail_copy: bool = False) -> None:
        self.sql: list[str] = []
        self.params: list[Any] = []
        self.staged: list[bytes] = []
        self.fail_copy = fail_copy
        self.committed = False

    def execute(self, sql: str, params: Any = None) -> _Cursor:
        self.sql.append(sql)
        self.params.append(params)
        if "pg_attribute" in sql:
            return _Cursor([("purchasedate", "varchar", 256), ("userid", "int8", None)])
        if sql.startswith("COPY"):
            manifest_url = sql.split("'")[1]
            s3 = boto3.client("s3")
            key = manifest_url.removeprefix(f"s3://{BUCKET}/")
            entries = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())["entries"]
            for e in entries:
                assert e["mandatory"] is True
                part = e["url"].removeprefix(f"s3://{BUCKET}/")
                body = s3.get_object(Bucket=BUCKET, Key=part)["Body"].read()
                self.staged.append(gzip.decompress(body))
            if self.fail_copy:
                import psycopg

                raise psycopg.errors.InternalError_("Load into table 'purchase' failed")
        return _Cursor([])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.sql.append("BEGIN")
        try:
            yield
        except BaseException:
            self.sql.append("ROLLBACK")
            raise
        self.sql.append("COMMIT")

    def close(self) -> None:
        pass


def _staged_objects() -> list[str]:
    found = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="ess/")
    return [o["Key"] for o in found.get("Contents", [])]


def test_stream_stages_parts_and_sends_one_manifest_copy(rs_env: EssEnv) -> None:
    _register(rs_env)
    db = RecordingRedshift()
    ws = Workspace.from_env(rs_env.env)
    req = LoadRequest(
        "purchase",
        "2014-09-01",
        "2014-09-02",
        "purchase",
        command="tail -n +2 | cut -d, -f1,2",
        options=("TRUNCATECOLUMNS", "MAXERROR 3"),
    )
    summary = load_stream(ws, req, connector=lambda reg, pw: db)
    assert summary.count("loaded") == 2
    copies = [s for s in db.sql if s.startswith("COPY")]
    assert len(copies) == 1
    manifest_url = copies[0].split("'")[1]
    assert manifest_url.startswith(f"s3://{BUCKET}/ess/") and manifest_url.endswith("/manifest")
    assert copies[0] == (
        f"COPY \"purchase\" FROM '{manifest_url}' IAM_ROLE '{ROLE}' "
        "MANIFEST GZIP CSV TRUNCATECOLUMNS MAXERROR 3"
    )
    # the COPY, the ledger lock and rows sit in one transaction
    begin = db.sql.index(copies[0]) - 2
    assert db.sql[begin : begin + 3] == ["BEGIN", "LOCK ess_load_ledger", copies[0]]
    tail = db.sql[begin + 3 :]
    assert (
        tail[-1] == "COMMIT" and sum(s.startswith("INSERT INTO ess_load_ledger") for s in tail) == 2
    )
    # what Redshift would have loaded: the command's output of each file, in order
    expected = []
    for day in ("20140901", "20140902"):
        text = gzip.decompress((WOODWORKING / f"purchase_{day}.gz").read_bytes()).decode()
        expected.append("".join(",".join(x.split(",")[:2]) + "\n" for x in text.splitlines()[1:]))
    assert [s.decode() for s in db.staged] == expected
    assert _staged_objects() == []  # parts and manifest removed


def test_failed_copy_loads_nothing_and_cleans_up(rs_env: EssEnv) -> None:
    _register(rs_env)
    db = RecordingRedshift(fail_copy=True)
    ws = Workspace.from_env(rs_env.env)
    req = LoadRequest("purchase", "2014-09-01", "2014-09-01", "purchase")
    with pytest.raises(CommandFailed, match="Load into table 'purchase' failed"):
        load_stream(ws, req, connector=lambda reg, pw: db)
    assert db.sql[-1] == "ROLLBACK"
    assert not any(s.startswith("INSERT INTO ess_load_ledger") for s in db.sql)
    assert len(db.staged) == 1 and _staged_objects() == []
