"""`ess stream` over an S3 datastore (a real moto server): read from S3, --s3out back to S3."""

from __future__ import annotations

import uuid

import boto3
import pytest

from tests.conftest import WOODWORKING, EssEnv

pytestmark = pytest.mark.slow

CSV = "User Name,Access Key Id,Secret Access Key\nanalyst,AKIATESTKEY,testsecret\n"


def test_stream_reads_s3_and_writes_s3out(aws_env: EssEnv, moto_endpoint: str) -> None:
    bucket = f"ess-stream-{uuid.uuid4().hex[:10]}"
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIATESTKEY",
        aws_secret_access_key="testsecret",
    )
    s3.create_bucket(Bucket=bucket)
    for day in range(1, 4):
        name = f"browse_2014090{day}.gz"
        s3.put_object(Bucket=bucket, Key=f"logs/{name}", Body=(WOODWORKING / name).read_bytes())
    creds = aws_env.root / "creds.csv"
    creds.write_text(CSV)
    aws_env.ess("select", f"s3://{bucket}", f"--credentials={creds}", check=True)
    aws_env.ess("category", "add", "browse", "logs/*browse_*", check=True)
    r = aws_env.ess("stream", "browse", "*", "*", "wc -l", "--debug", check=True)
    lines = r.stdout.splitlines()
    assert lines[0] == f"set -o pipefail; localget -f  '{bucket}/logs/browse_20140901.gz' | wc -l"
    assert lines[1::2] == ["9896", "10120", "9692"]
    r = aws_env.ess(
        "stream",
        "browse",
        "*",
        "*",
        "wc -l",
        "--s3out",
        f"{bucket}:converted/%path/%file.count",
        check=True,
    )
    assert r.stdout == ""
    body = s3.get_object(Bucket=bucket, Key="converted/logs/browse_20140902.count")["Body"]
    assert body.read().strip() == b"10120"
    assert "testsecret" not in r.stderr
