"""The per-cluster certificate authority and the TLS material of scheduler, workers and clients.

Every cluster gets its own CA. The scheduler, the workers and the clients each hold a certificate
signed by it; Dask's TLS contexts require and verify the peer's certificate on both sides
(``ssl.CERT_REQUIRED``), so a process without a certificate from this CA cannot connect.
Private keys are written 0600 inside a 0700 directory; the CA key stays on the master so that
later providers (EC2, SSH) can issue certificates for new nodes.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ess.errors import ClusterError
from ess.workspace import write_bytes_atomic, write_secret

ROLES = ("scheduler", "worker", "client")


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the TLS material of one cluster (all inside ``directory``)."""

    directory: Path
    #: The certificate a client connection presents. A command run on a remote worker connects
    #: as a client with that worker's own certificate ("worker"): it is signed by the same
    #: cluster CA and carries the clientAuth usage, so no client key ever leaves the master.
    client_identity: str = "client"
    #: Files of a cluster someone else runs (the dask platform): its CA certificate and this
    #: machine's client certificate and key, wherever the user keeps them.
    external: tuple[Path, Path, Path] | None = None

    @classmethod
    def of_files(cls, *, ca: Path, cert: Path, key: Path) -> TlsFiles:
        """The client side only, from three files given by the user."""
        return cls(key.parent, external=(ca, cert, key))

    @property
    def ca_cert(self) -> Path:
        return self.external[0] if self.external else self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    def cert(self, role: str) -> Path:
        if self.external and role == self.client_identity:
            return self.external[1]
        return self.directory / f"{role}.crt"

    def key(self, role: str) -> Path:
        if self.external and role == self.client_identity:
            return self.external[2]
        return self.directory / f"{role}.key"

    def exists(self) -> bool:
        return self.ca_cert.is_file() and all(
            self.cert(r).is_file() and self.key(r).is_file() for r in ROLES
        )

    def dask_security(self, role: str = "client") -> Any:
        """A ``distributed.Security`` that requires TLS and presents ``role``'s certificate."""
        # A node needs only the CA certificate and its own role's pair (cloud workers get no
        # other key).
        identity = self.client_identity if role == "client" else role
        pair = [self.cert(identity), self.key(identity)] if role in ROLES else []
        needed = [self.ca_cert, *pair]
        if not all(p.is_file() for p in needed):
            raise ClusterError(f"{self.directory}: the cluster's TLS certificates are missing")
        from distributed import Security

        kwargs: dict[str, Any] = {"tls_ca_file": str(self.ca_cert), "require_encryption": True}
        if role == "client":
            kwargs.update(
                tls_client_cert=str(self.cert(identity)), tls_client_key=str(self.key(identity))
            )
        elif role == "scheduler":
            kwargs.update(
                tls_scheduler_cert=str(self.cert("scheduler")),
                tls_scheduler_key=str(self.key("scheduler")),
            )
        elif role == "worker":
            kwargs.update(
                tls_worker_cert=str(self.cert("worker")), tls_worker_key=str(self.key("worker"))
            )
        else:
            raise ValueError(role)
        return Security(**kwargs)


def _key_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def create_tls(
    directory: Path, *, cluster_id: str, hosts: tuple[str, ...] = ("127.0.0.1",), days: int = 3650
) -> TlsFiles:
    """Create a fresh CA and the scheduler/worker/client certificates under ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    files = TlsFiles(directory)
    now = dt.datetime.now(dt.UTC)
    start, end = now - dt.timedelta(minutes=5), now + dt.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ess cluster CA {cluster_id}")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_secret(files.ca_key, _key_pem(ca_key))
    write_bytes_atomic(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))

    san: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for host in hosts:
        try:
            san.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            san.append(x509.DNSName(host))
    for role in ROLES:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ess-{role} {cluster_id}")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        write_secret(files.key(role), _key_pem(key))
        write_bytes_atomic(files.cert(role), cert.public_bytes(serialization.Encoding.PEM))
    return files
