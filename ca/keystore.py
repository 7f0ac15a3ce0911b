"""Private keys on disk: PKCS#8 encrypted with the CA passphrase, mode 0600.

Where the passphrase comes from is one rule, :func:`ca.passphrase.ca_passphrase`.
A key file that group or others may read is refused, as ssh refuses such identity files.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ca.errors import InsecureKeyFile, KeystoreError, WrongPassphrase
from meshward.private_file import write_private_file

__all__ = [
    "KeyKind",
    "PASSPHRASE_ENV",
    "PrivateKey",
    "decrypt_key",
    "encrypt_key",
    "generate_key",
    "load_key",
    "save_key",
    "write_private_file",
]

PASSPHRASE_ENV = "MESHWARD_CA_PASSPHRASE"  # noqa: S105 (a variable name)
MIN_PASSPHRASE = 8

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
KeyKind = Literal["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "ed25519"]


def generate_key(kind: KeyKind = "ec-p256") -> PrivateKey:
    """A new private key of ``kind``."""
    if kind == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    bits = 2048 if kind == "rsa-2048" else 3072
    return rsa.generate_private_key(65537, bits)


def encrypt_key(key: PrivateKey, passphrase: bytes) -> bytes:
    """``key`` as encrypted PKCS#8 PEM (on disk, or in the replicas' database)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )


def decrypt_key(data: bytes, passphrase: bytes, where: str) -> PrivateKey:
    """Read encrypted PKCS#8 PEM; ``where`` names it in errors (never the key)."""
    if b"ENCRYPTED PRIVATE KEY" not in data:
        raise KeystoreError(f"key {where} is not an encrypted PKCS#8 key")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except ValueError as exc:
        raise WrongPassphrase(f"cannot decrypt {where}: wrong CA passphrase") from exc
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise KeystoreError(f"key {where} has an unsupported type")
    return key


def save_key(path: Path, key: PrivateKey, passphrase: bytes) -> None:
    """Write ``key`` as encrypted PKCS#8 PEM, mode 0600."""
    write_private_file(path, encrypt_key(key, passphrase))


def load_key(path: Path, passphrase: bytes) -> PrivateKey:
    """Read an encrypted PKCS#8 key, refusing one that others can read."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise KeystoreError(f"cannot read key {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InsecureKeyFile(
            f"key {path} has mode {stat.S_IMODE(mode):04o}; it must be 0600 (chmod 600 {path})"
        )
    return decrypt_key(path.read_bytes(), passphrase, str(path))
