"""An X.509-SVID written as files, for an operator or a program that reads files.

``svid.pem`` (chain, leaf first) and ``bundle.pem`` are public (0644);
``key.pem`` is the private key, unencrypted PKCS#8, readable by the owner only
(0600). Each file is written atomically.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization

from ca.issuance import IssuedX509, build_csr
from ca.keystore import generate_key, write_private_file
from ca.service import CertificateAuthority
from meshward.spiffe import SpiffeId

__all__ = ["pem_chain", "write_svid_files"]


def pem_chain(issued: IssuedX509) -> bytes:
    """The issued chain as concatenated PEM, leaf first."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in issued.chain)


def write_svid_files(
    ca: CertificateAuthority, spiffe_id: SpiffeId, out: Path, ttl: int | None
) -> IssuedX509:
    """Issue an SVID for ``spiffe_id`` with a fresh P-256 key and write it to ``out``."""
    key = generate_key("ec-p256")
    issued = ca.issue_x509_local(spiffe_id, build_csr(key), ttl)
    out.mkdir(parents=True, exist_ok=True)
    write_private_file(out / "svid.pem", pem_chain(issued))
    write_private_file(
        out / "key.pem",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    write_private_file(out / "bundle.pem", ca.authority.bundle().to_pem())
    (out / "svid.pem").chmod(0o644)
    (out / "bundle.pem").chmod(0o644)
    return issued
