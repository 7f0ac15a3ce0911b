"""Keys on disk: encrypted PKCS#8, 0600, refused when others can read them."""

from __future__ import annotations

from pathlib import Path

import pytest

from ca.errors import InsecureKeyFile, KeystoreError, WrongPassphrase
from ca.keystore import generate_key, load_key, save_key


@pytest.mark.parametrize("kind", ["ec-p256", "ec-p384", "ed25519", "rsa-2048"])
def test_round_trip_encrypted_0600(tmp_path: Path, kind: str) -> None:
    key = generate_key(kind)  # type: ignore[arg-type]
    path = tmp_path / "k.key"
    save_key(path, key, b"passphrase-1")
    assert path.stat().st_mode & 0o777 == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    loaded = load_key(path, b"passphrase-1")
    assert loaded.public_key() == key.public_key()


def test_wrong_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    save_key(path, generate_key(), b"passphrase-1")
    with pytest.raises(WrongPassphrase):
        load_key(path, b"passphrase-2")


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o640, 0o660])
def test_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k.key"
    save_key(path, generate_key(), b"passphrase-1")
    path.chmod(mode)
    with pytest.raises(InsecureKeyFile):
        load_key(path, b"passphrase-1")


def test_plain_key_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    path = tmp_path / "k.key"
    path.write_bytes(
        generate_key().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    with pytest.raises(KeystoreError):
        load_key(path, b"passphrase-1")
