"""Redshift: the cluster's endpoint from the AWS API, and loads through S3 staging.

Redshift has no ``COPY ... FROM STDIN``. Each worker writes its file's output as one gzip part
under ``STAGING/<run id>/`` (:func:`put_part`); the master then writes a manifest naming every
part and runs, in ONE transaction on its connection: ``LOCK ess_load_ledger``, ``COPY table
FROM 's3://.../manifest' IAM_ROLE '...' MANIFEST GZIP CSV <options>`` and the files' ledger
rows; then it removes the parts and the manifest (also when the load failed). A run killed
before the commit loads nothing and the next run loads the same files again: the ledger only
ever names files whose rows committed with it.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlsplit

from ess.errors import UsageError
from ess.load.ledger import LEDGER, FileKey, insert_many
from ess.load.options import CopyOptions, literal


@dataclass(frozen=True)
class ClusterInfo:
    cluster_id: str
    host: str
    port: int
    dbname: str
    status: str
    node_type: str
    nodes: int


def _client(service: str) -> Any:
    from ess.cluster.aws import session_factory
    from ess.cluster.provider import CloudAuth

    return session_factory(CloudAuth())(service)


def list_clusters() -> list[ClusterInfo]:
    from ess.cluster.aws import aws_errors

    out = []
    with aws_errors("listing Redshift clusters"):
        pages = _client("redshift").get_paginator("describe_clusters").paginate()
        for page in pages:
            for c in page.get("Clusters", []):
                endpoint = c.get("Endpoint") or {}
                out.append(
                    ClusterInfo(
                        cluster_id=c["ClusterIdentifier"],
                        host=endpoint.get("Address", ""),
                        port=int(endpoint.get("Port") or 5439),
                        dbname=c.get("DBName", ""),
                        status=c.get("ClusterStatus", ""),
                        node_type=c.get("NodeType", ""),
                        nodes=int(c.get("NumberOfNodes") or 1),
                    )
                )
    return out


def describe_cluster(cluster_id: str) -> ClusterInfo:
    import botocore.exceptions as bx

    from ess.cluster.aws import aws_errors, error_code

    try:
        found = _client("redshift").describe_clusters(ClusterIdentifier=cluster_id)
    except bx.ClientError as exc:
        if error_code(exc) == "ClusterNotFound":
            raise UsageError(f"no Redshift cluster {cluster_id!r} in this account/region") from None
        with aws_errors(f"looking up Redshift cluster {cluster_id}"):
            raise
    except bx.BotoCoreError:
        with aws_errors(f"looking up Redshift cluster {cluster_id}"):
            raise
    c = found["Clusters"][0]
    endpoint = c.get("Endpoint") or {}
    if not endpoint.get("Address"):
        raise UsageError(f"Redshift cluster {cluster_id} has no endpoint yet (still creating?)")
    return ClusterInfo(
        cluster_id=cluster_id,
        host=endpoint["Address"],
        port=int(endpoint.get("Port") or 5439),
        dbname=c.get("DBName", ""),
        status=c.get("ClusterStatus", ""),
        node_type=c.get("NodeType", ""),
        nodes=int(c.get("NumberOfNodes") or 1),
    )


def split_s3(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise UsageError(f"expected an s3://bucket/prefix location, got {url!r}")
    return parts.netloc, parts.path.lstrip("/")


def put_part(url: str, stream: IO[bytes]) -> int:
    """Gzip ``stream`` into the object ``url``; returns its number of lines."""
    bucket, key = split_s3(url)
    data = stream.read()
    _client("s3").put_object(Bucket=bucket, Key=key, Body=gzip.compress(data, 6))
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def manifest(urls: Sequence[str]) -> bytes:
    entries = [{"url": u, "mandatory": True} for u in urls]
    return json.dumps({"entries": entries}, indent=1).encode()


def copy_sql(table: str, manifest_url: str, iam_role: str, opts: CopyOptions) -> str:
    rest = opts.redshift_sql()
    tail = f" {rest}" if rest else ""
    return (
        f"COPY {table} FROM {literal(manifest_url)} IAM_ROLE {literal(iam_role)} "
        f"MANIFEST GZIP CSV{tail}"
    )


def commit_staged(
    conn: Any,
    *,
    table: str,
    staging: str,
    iam_role: str,
    opts: CopyOptions,
    keys: Sequence[FileKey],
    parts: Sequence[str],
    rows: Sequence[int],
) -> None:
    """The manifest, then one transaction: lock the ledger, COPY, ledger rows; the staged
    objects are removed afterwards whatever happened."""
    if not parts:
        return
    bucket, prefix = split_s3(staging)
    manifest_url = f"{staging.rstrip('/')}/manifest"
    s3 = _client("s3")
    s3.put_object(Bucket=bucket, Key=f"{prefix.rstrip('/')}/manifest", Body=manifest(parts))
    try:
        with conn.transaction():
            conn.execute(f"LOCK {LEDGER}")
            conn.execute(copy_sql(table, manifest_url, iam_role, opts))
            insert_many(conn, keys, rows)
    finally:
        for url in [*parts, manifest_url]:
            b, k = split_s3(url)
            s3.delete_object(Bucket=b, Key=k)
