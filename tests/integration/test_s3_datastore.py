"""An S3 datastore in a real moto server: select with credentials, categorize, summary, cat."""

from __future__ import annotations

import uuid

import boto3
import pytest

from tests.conftest import WOODWORKING, EssEnv

pytestmark = pytest.mark.slow

CSV = "User Name,Access Key Id,Secret Access Key\nanalyst,AKIATESTKEY,testsecret\n"


def make_bucket(endpoint: str, files: bool = True) -> str:
    name = f"ess-test-{uuid.uuid4().hex[:10]}"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIATESTKEY",
        aws_secret_access_key="testsecret",
    )
    s3.create_bucket(Bucket=name)
    if files:
        for path in sorted(WOODWORKING.iterdir()):
            s3.put_object(Bucket=name, Key=f"diy_woodworking/{path.name}", Body=path.read_bytes())
    return name


def test_s3_woodworking(aws_env: EssEnv, moto_endpoint: str) -> None:
    bucket = make_bucket(moto_endpoint)
    creds = aws_env.root / "creds.csv"
    creds.write_text(CSV)
    result = aws_env.ess("select", f"s3://{bucket}", f"--credentials={creds}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    for name in ("browse", "purchase"):
        added = aws_env.ess("category", "add", name, f"diy_woodworking/*{name}_*")
        assert added.returncode == 0, added.stderr
    summary = aws_env.ess("summary").stdout
    assert f" {bucket} ".center(72, "-") in summary
    assert "browse         30  1.9M    2014-09-01  2014-09-30\n" in summary
    assert "purchase       30  372.0K  2014-09-01  2014-09-30 \n" in summary
    assert aws_env.ess("summary", "browse", "columnspec").stdout == (
        "S:eventDate I:userID S:articleID\n"
    )
    text = aws_env.run(
        "cat", "--decompress", "diy_woodworking/purchase_20140901.gz", input=b""
    ).stdout
    assert text.startswith("purchaseDate,userID,articleID,price,refID\r\n")
    listing = aws_env.ess("ls", "diy_woodworking/*2014090[1-2]*").stdout.split("\n")
    assert [line.split("\t")[0] for line in listing if line] == [
        f"{bucket}/diy_woodworking/browse_20140901.gz",
        f"{bucket}/diy_woodworking/browse_20140902.gz",
        f"{bucket}/diy_woodworking/purchase_20140901.gz",
        f"{bucket}/diy_woodworking/purchase_20140902.gz",
    ]
    # Secrets stay out of every state file but the 0600 credentials file.
    for path in aws_env.cache_dir.rglob("*"):
        if path.is_file() and path.name != "credentials.json":
            assert "testsecret" not in path.read_text(errors="replace"), path
    secret = next(aws_env.cache_dir.rglob("credentials.json"))
    assert secret.stat().st_mode & 0o777 == 0o600
    # Later sessions select by label, without credentials.
    aws_env.ess("select", "local", check=True)
    assert aws_env.ess("select", bucket).returncode == 0
    assert "browse" in aws_env.ess("summary").stdout


def test_s3_bad_input(aws_env: EssEnv, moto_endpoint: str) -> None:
    creds = aws_env.root / "creds.csv"
    creds.write_text(CSV)
    missing = aws_env.ess("select", "s3://no-such-bucket-ess", f"--credentials={creds}")
    assert missing.returncode == 4
    assert "s3://no-such-bucket-ess: bucket does not exist" in missing.stderr
    broken = aws_env.root / "broken.csv"
    broken.write_text("just,some,columns\n1,2,3\n")
    bad = aws_env.ess("select", "s3://whatever", f"--credentials={broken}")
    assert bad.returncode == 3 and "expected columns 'Access Key Id'" in bad.stderr
    unreadable = aws_env.ess("select", "s3://x", f"--credentials={aws_env.root}")
    assert unreadable.returncode == 3 and "Is a directory" in unreadable.stderr
    bucket = make_bucket(moto_endpoint, files=False)
    no_creds = aws_env.ess("select", f"s3://{bucket}")
    assert no_creds.returncode == 3 and "no AWS credentials" in no_creds.stderr
    assert not (aws_env.cache_dir / "datastores.json").exists()
    aws_env.ess(
        "select",
        f"s3://{bucket}",
        "--aws_access_key",
        "AKIATESTKEY",
        "--aws_secret_access_key",
        "testsecret",
        check=True,
    )
    nothing = aws_env.ess("category", "add", "browse", "diy_woodworking/*browse*")
    assert nothing.returncode == 4 and "matches no file" in nothing.stderr
