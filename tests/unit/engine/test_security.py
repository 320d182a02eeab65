"""The per-cluster CA: key permissions and a chain that verifies (and only with its own CA)."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from ess.engine.security import ROLES, create_tls


def _verify(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        ca.public_key().verify(  # type: ignore[union-attr,call-arg]
            cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm)
        )
    except Exception:
        return False
    return True


def test_keys_are_private_and_certs_chain_to_the_cluster_ca(tmp_path: Path) -> None:
    tls = create_tls(tmp_path / "tls", cluster_id="c1")
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700
    assert stat.S_IMODE(tls.ca_key.stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
    other = create_tls(tmp_path / "other", cluster_id="c2")
    other_ca = x509.load_pem_x509_certificate(other.ca_cert.read_bytes())
    for role in ROLES:
        assert stat.S_IMODE(tls.key(role).stat().st_mode) == 0o600
        cert = x509.load_pem_x509_certificate(tls.cert(role).read_bytes())
        assert _verify(cert, ca)
        assert not _verify(cert, other_ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "127.0.0.1" in [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    assert tls.exists()
