"""AWS access for cloud clusters: credentials, boto3 clients, and error translation.

Credentials come, in this order, from ``--credentials CSV``, ``--aws_access_key`` +
``--aws_secret_access_key``, or boto3's default chain (environment, profiles, IAM instance
role). They live only in memory: nothing here prints them or writes them to a file.

``AWS_ENDPOINT_URL`` (and the per-service ``AWS_ENDPOINT_URL_EC2`` / ``..._S3``) is honoured
by boto3 itself, which is how the tests point everything at a moto server.

Clients are made by a :data:`ClientFactory` so a test can hand the provider a client that fails
in a controlled way (the instance-limit test does); production code always uses
:func:`session_factory`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from ess.cluster.provider import CloudAuth
from ess.errors import ClusterError, CredentialsError

#: ``factory("ec2")`` -> a boto3 client. Clients are thread-safe; sessions are not, so a factory
#: builds all its clients up front or under its own lock.
ClientFactory = Callable[[str], Any]

DEFAULT_REGION = "us-east-1"

#: Error codes AWS (and moto in auth mode) use when it does not accept the caller's identity.
AUTH_CODES = frozenset(
    {
        "AuthFailure",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "ExpiredToken",
        "RequestExpired",
    }
)
#: Capacity and quota errors: the cloud refused more instances.
LIMIT_CODES = frozenset(
    {
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
        "InsufficientInstanceCapacity",
        "MaxSpotInstanceCountExceeded",
        "InsufficientCapacity",
    }
)


def resolve_credentials(auth: CloudAuth) -> tuple[str, str] | None:
    """Explicit keys from the command line, or None for boto3's default chain."""
    from ess.datastore.registry import credentials_from_args

    creds = credentials_from_args(
        str(auth.credentials_file) if auth.credentials_file else None,
        auth.access_key,
        auth.secret_key,
    )
    if creds is None:
        return None
    return creds.access_key, creds.secret_key


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def session_factory(auth: CloudAuth, *, region_name: str | None = None) -> ClientFactory:
    """A factory of boto3 clients for ``auth`` (clients cached: one per service)."""
    import threading

    import boto3
    from botocore.config import Config

    keys = resolve_credentials(auth)
    kwargs: dict[str, Any] = {"region_name": region_name or region()}
    if keys is not None:
        kwargs.update(aws_access_key_id=keys[0], aws_secret_access_key=keys[1])
    session = boto3.session.Session(**kwargs)
    # Big enough for the parallel calls of a 50-node create/status; standard retry mode backs
    # off on throttling instead of failing the command.
    config = Config(max_pool_connections=32, retries={"mode": "standard", "max_attempts": 5})
    clients: dict[str, Any] = {}
    lock = threading.Lock()

    def factory(service: str) -> Any:
        with lock:
            if service not in clients:
                clients[service] = session.client(service, config=config)  # type: ignore[call-overload]
            return clients[service]

    return factory


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """Turn botocore failures into ess errors that say what was being done.

    The message carries the AWS error code and message, never a key.
    """
    import botocore.exceptions as bx

    try:
        yield
    except (bx.NoCredentialsError, bx.PartialCredentialsError) as exc:
        raise CredentialsError(
            f"{action}: no AWS credentials (give --credentials FILE, --aws_access_key and "
            "--aws_secret_access_key, or configure the AWS credential chain / an IAM role)"
        ) from exc
    except bx.ClientError as exc:
        code = error_code(exc)
        if code in AUTH_CODES:
            raise CredentialsError(
                f"{action}: AWS rejected the credentials ({code}); check the access key and "
                "secret, and that the identity may use EC2 and S3 (see docs/ec2.md)"
            ) from exc
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        raise ClusterError(f"{action}: {code}: {message}") from exc
    except bx.EndpointConnectionError as exc:
        raise ClusterError(f"{action}: cannot reach AWS ({exc})") from exc
    except bx.BotoCoreError as exc:
        raise ClusterError(f"{action}: {exc}") from exc


def tags(cluster_id: str, **extra: str) -> list[dict[str, str]]:
    from ess.cluster.ec2_state import TAG_KEY

    pairs = {TAG_KEY: cluster_id, **extra}
    return [{"Key": k, "Value": v} for k, v in pairs.items()]


def tag_spec(resource: str, cluster_id: str, **extra: str) -> dict[str, Any]:
    """A ``TagSpecifications`` entry: tags applied atomically with the resource's creation, so
    an interrupted create can never leave an untagged resource behind."""
    return {"ResourceType": resource, "Tags": tags(cluster_id, **extra)}
