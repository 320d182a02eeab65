"""The bootstrap files of a cloud cluster: a private S3 bucket holding the wheel of this build
and the worker's TLS material, handed to instances as presigned URLs that expire."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ess.cluster import aws
from ess.cluster.bootstrap import BootConfig, build_id, build_wheel
from ess.cluster.daemons import host_port
from ess.cluster.ec2_state import TAG_KEY, CloudState
from ess.engine.security import TlsFiles


def _missing(exc: BaseException) -> bool:
    return aws.error_code(exc) in ("NoSuchBucket", "404")


def ensure_bucket(s3: Any, state: CloudState) -> None:
    import botocore.exceptions

    try:
        s3.head_bucket(Bucket=state.bucket)
        return
    except botocore.exceptions.ClientError as exc:
        if aws.error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            with aws.aws_errors(f"checking bucket {state.bucket}"):
                raise
    kwargs: dict[str, Any] = {"Bucket": state.bucket}
    if state.region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": state.region}
    with aws.aws_errors(f"creating bootstrap bucket {state.bucket}"):
        s3.create_bucket(**kwargs)
        s3.put_bucket_tagging(Bucket=state.bucket, Tagging={"TagSet": aws.tags(state.id)})
        s3.put_public_access_block(
            Bucket=state.bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )


def boot_config(
    s3: Any, state: CloudState, *, tls: TlsFiles, wheels: Path, url_ttl: int, worker_port: int
) -> BootConfig:
    """Upload this build and the worker's TLS material; presigned URLs for the user-data."""
    ensure_bucket(s3, state)
    build = build_id()
    wheel = build_wheel(wheels / build)
    prefix = f"{state.id}/{build}"
    objects = {
        "wheel": (f"{prefix}/{wheel.name}", wheel),
        "ca": (f"{prefix}/tls/ca.crt", tls.ca_cert),
        "cert": (f"{prefix}/tls/worker.crt", tls.cert("worker")),
        "key": (f"{prefix}/tls/worker.key", tls.key("worker")),
    }
    urls: dict[str, str] = {}
    with aws.aws_errors(f"uploading the bootstrap files to s3://{state.bucket}"):
        for name, (key, path) in objects.items():
            s3.put_object(
                Bucket=state.bucket,
                Key=key,
                Body=path.read_bytes(),
                ServerSideEncryption="AES256",
                Tagging=f"{TAG_KEY}={state.id}",
            )
            urls[name] = s3.generate_presigned_url(
                "get_object", Params={"Bucket": state.bucket, "Key": key}, ExpiresIn=url_ttl
            )
    return BootConfig(
        cluster_id=state.id,
        scheduler=f"tls://{host_port(state.scheduler_host, state.scheduler_port)}",
        build=build,
        wheel_file=wheel.name,
        wheel_url=urls["wheel"],
        ca_url=urls["ca"],
        cert_url=urls["cert"],
        key_url=urls["key"],
        worker_port=worker_port,
    )


def empty_bucket(s3: Any, state: CloudState) -> None:
    import botocore.exceptions

    try:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=state.bucket)
        for page in pages:
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=state.bucket, Delete={"Objects": keys})
    except botocore.exceptions.ClientError as exc:
        if not _missing(exc):
            with aws.aws_errors(f"emptying bucket {state.bucket}"):
                raise


def delete_bucket(s3: Any, state: CloudState) -> None:
    import botocore.exceptions

    empty_bucket(s3, state)
    try:
        s3.delete_bucket(Bucket=state.bucket)
    except botocore.exceptions.ClientError as exc:
        if not _missing(exc):
            with aws.aws_errors(f"deleting bucket {state.bucket}"):
                raise
