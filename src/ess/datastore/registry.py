"""Registered datastores (``ess select``/``repository``/``purge``) and their credentials.

Layout under ``ESS_CACHE_DIR``::

    datastores.json            {label: {"kind", "root", "region"}}   -- no secrets, ever
    current                    label of the selected datastore
    <label>/credentials.json   access key + secret, mode 0600, only when given to select
    <label>/categories.json    category definitions (see category.py)
    <label>/files/<name>.json  each category's file list

With nothing selected (or the selected datastore purged), ``local`` is used: Essentia's own
scripts run ``ess purge local`` and then add categories without selecting again.
"""

from __future__ import annotations

import csv
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ess.datastore.store import StoreSpec
from ess.errors import CredentialsError, DatastoreError, NotSupportedError
from ess.workspace import (
    Workspace,
    locked,
    read_json,
    update_json,
    write_bytes_atomic,
    write_secret,
)

LOCAL = "local"


@dataclass(frozen=True)
class Datastore:
    label: str
    kind: str  # "local" | "s3"
    root: str  # "/" for local, "bucket[/prefix]" for s3
    region: str | None = None

    def describe(self) -> str:
        return "local disk" if self.kind == "local" else f"s3://{self.root}"


@dataclass(frozen=True)
class Credentials:
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)


@dataclass(frozen=True)
class SelectResult:
    datastore: Datastore
    warnings: list[str]


def read_credentials_csv(path: str) -> Credentials:
    """Parse the AWS console CSV (``User Name,Access Key Id,Secret Access Key``) by header."""
    file = Path(path).expanduser()
    try:
        with open(file, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise CredentialsError(f"credentials file {file}: {exc.strerror or exc}") from exc
    if len(rows) < 2:
        raise CredentialsError(f"credentials file {file}: expected a header line and one row")
    header = [h.strip().lower() for h in rows[0]]
    try:
        key_col = header.index("access key id")
        secret_col = header.index("secret access key")
    except ValueError:
        raise CredentialsError(
            f"credentials file {file}, line 1: expected columns 'Access Key Id' and "
            "'Secret Access Key'"
        ) from None
    row = rows[1]
    if (
        len(row) <= max(key_col, secret_col)
        or not row[key_col].strip()
        or not row[secret_col].strip()
    ):
        raise CredentialsError(f"credentials file {file}, line 2: missing access key or secret")
    return Credentials(row[key_col].strip(), row[secret_col].strip())


def credentials_from_args(
    credentials_file: str | None, access_key: str | None, secret_key: str | None
) -> Credentials | None:
    if credentials_file:
        return read_credentials_csv(credentials_file)
    if access_key or secret_key:
        if not (access_key and secret_key):
            raise CredentialsError("--aws_access_key and --aws_secret_access_key go together")
        return Credentials(access_key, secret_key)
    return None


class Registry:
    """The datastores known to this ``ESS_CACHE_DIR``."""

    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace
        self.index_path = workspace.cache_dir / "datastores.json"
        self.current_path = workspace.cache_dir / "current"

    # ------------------------------------------------------------------ lookups
    def all(self) -> dict[str, Datastore]:
        raw = read_json(self.index_path, {}) or {}
        stores = {label: Datastore(label=label, **entry) for label, entry in raw.items()}
        stores.setdefault(LOCAL, Datastore(LOCAL, "local", "/"))
        return stores

    def current_label(self) -> str:
        try:
            label = self.current_path.read_text().strip()
        except FileNotFoundError:
            return LOCAL
        return label if label in self.all() else LOCAL

    def get(self, label: str | None) -> Datastore:
        stores = self.all()
        name = label or self.current_label()
        if name not in stores:
            known = ", ".join(sorted(stores))
            raise DatastoreError(f"unknown datastore {name!r} (known: {known})")
        return stores[name]

    def directory(self, label: str) -> Path:
        return self.ws.cache_dir / label

    # ------------------------------------------------------------------ select
    def select(
        self,
        source: str,
        *,
        credentials: Credentials | None = None,
        label: str | None = None,
        overwrite: bool = False,
        region: str | None = None,
    ) -> SelectResult:
        warnings: list[str] = []
        known = self.all()
        if source == LOCAL or (source in known and not source.startswith("s3://")):
            chosen = known[source]
            if credentials is not None and chosen.kind == "local":
                warnings.append("credentials are not used by the local datastore")
            elif credentials is not None:
                self._store_credentials(chosen, credentials, overwrite, warnings)
            self._make_current(chosen)
            return SelectResult(chosen, warnings)
        if source.startswith(("blob://", "wasb://")):
            raise NotSupportedError("Azure blob datastores")
        if not source.startswith("s3://"):
            raise DatastoreError(
                f"unknown datastore {source!r}: give local, s3://bucket[/prefix] or a label "
                f"({', '.join(sorted(known))})"
            )
        root = source[len("s3://") :].strip("/")
        if not root:
            raise DatastoreError(f"{source}: no bucket name")
        name = label or root.split("/", 1)[0]
        wanted = Datastore(name, "s3", root, region)
        existing = known.get(name)
        if existing is not None and existing != wanted and not overwrite:
            raise DatastoreError(
                f"datastore {name!r} already registered for {existing.describe()}; "
                "use --overwrite or another --label"
            )
        stored = self.credentials(name)
        use = credentials if (credentials is not None and (overwrite or stored is None)) else stored
        if credentials is not None and stored is not None and not overwrite:
            warnings.append(
                f"kept the credentials stored for {name!r} (use --overwrite to replace)"
            )
        check_bucket(wanted, use)
        update_json(self.index_path, lambda d: {**(d or {}), name: _entry(wanted)}, default={})
        if credentials is not None and use is credentials:
            self._write_credentials(name, credentials)
        self._make_current(wanted)
        return SelectResult(wanted, warnings)

    def _store_credentials(
        self, store: Datastore, creds: Credentials, overwrite: bool, warnings: list[str]
    ) -> None:
        if self.credentials(store.label) is not None and not overwrite:
            warnings.append(f"kept the credentials stored for {store.label!r} (use --overwrite)")
            return
        check_bucket(store, creds)
        self._write_credentials(store.label, creds)

    def _write_credentials(self, label: str, creds: Credentials) -> None:
        import json

        payload = json.dumps({"access_key": creds.access_key, "secret_key": creds.secret_key})
        write_secret(self.directory(label) / "credentials.json", payload.encode())

    def credentials(self, label: str) -> Credentials | None:
        raw = read_json(self.directory(label) / "credentials.json")
        if not raw:
            return None
        return Credentials(raw["access_key"], raw["secret_key"])

    def _make_current(self, store: Datastore) -> None:
        with locked(self.current_path):
            write_bytes_atomic(self.current_path, (store.label + "\n").encode())

    # ------------------------------------------------------------------ purge
    def purge(self, label: str) -> None:
        stores = self.all()
        if label not in stores:
            raise DatastoreError(f"unknown datastore {label!r}")

        def drop(index: dict[str, Any] | None) -> dict[str, Any]:
            return {k: v for k, v in (index or {}).items() if k != label}

        update_json(self.index_path, drop, default={})
        directory = self.directory(label)
        if directory.exists():
            with locked(directory / "categories.json"):
                trash = directory.with_name(f".{label}.purged.{os.getpid()}")
                directory.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)

    # ------------------------------------------------------------------ specs
    def spec(self, store: Datastore) -> StoreSpec:
        if store.kind == "local":
            return StoreSpec("local", "/")
        return StoreSpec("s3", store.root, s3_options(store, self.credentials(store.label)))


def _entry(store: Datastore) -> dict[str, Any]:
    entry = asdict(store)
    entry.pop("label")
    return entry


def _endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def s3_options(store: Datastore, creds: Credentials | None) -> dict[str, Any]:
    """fsspec options: explicit keys when given, else the boto credential chain."""
    client: dict[str, Any] = {}
    if _endpoint():
        client["endpoint_url"] = _endpoint()
    if store.region:
        client["region_name"] = store.region
    options: dict[str, Any] = {"client_kwargs": client} if client else {}
    if creds is not None:
        options.update(key=creds.access_key, secret=creds.secret_key)
    return options


def check_bucket(store: Datastore, creds: Credentials | None) -> None:
    """Fail early, naming the bucket, when it does not exist or the credentials are refused."""
    import boto3
    import botocore.exceptions

    kwargs: dict[str, Any] = {}
    if _endpoint():
        kwargs["endpoint_url"] = _endpoint()
    if store.region:
        kwargs["region_name"] = store.region
    if creds is not None:
        kwargs.update(aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key)
    bucket = store.root.split("/", 1)[0]
    try:
        boto3.client("s3", **kwargs).head_bucket(Bucket=bucket)
    except botocore.exceptions.NoCredentialsError as exc:
        raise CredentialsError(
            f"s3://{bucket}: no AWS credentials (give --credentials FILE, "
            "--aws_access_key/--aws_secret_access_key, or configure the AWS credential chain)"
        ) from exc
    except botocore.exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket"):
            raise DatastoreError(f"s3://{bucket}: bucket does not exist") from exc
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise CredentialsError(f"s3://{bucket}: access denied with these credentials") from exc
        raise DatastoreError(f"s3://{bucket}: {code or exc}") from exc
    except botocore.exceptions.EndpointConnectionError as exc:
        raise DatastoreError(f"s3://{bucket}: cannot reach S3 ({exc})") from exc
