"""The authority on disk: certificates in the clear, keys encrypted (0600).

Layout under ``<state-dir>/ca/``::

    authority.json        trust domain, sequence, active/next/retired slot ids
    root.crt root.key     the root (or the imported upstream CA)
    slot-<n>.crt          a signing CA; slot-<n>.key its key; slot-<n>.jwt.key its JWT key
    ca.db                 the SQLite store (entries, join tokens, audit)

``authority.json`` is replaced atomically and written last, so a crash leaves
either the old or the new authority, never a mix.

:class:`AuthorityHome` is what the running CA needs from wherever its
authority lives: these files, or the database replicas share
(:class:`ca.replicas.DbAuthority`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca.authority import Authority, Slot
from ca.errors import KeystoreError, NotInitialized
from ca.keystore import load_key, save_key, write_private_file
from meshward.spiffe import TrustDomain

__all__ = ["AuthorityHome", "CaFiles"]


class AuthorityHome(Protocol):
    """Where the authority is kept, and how rotations by several processes take turns."""

    def exists(self) -> bool: ...

    def mtime(self) -> float:
        """A marker that changes whenever the stored authority does."""
        ...

    def init(self, authority: Authority, passphrase: bytes) -> None:
        """Store a new authority (nothing is there yet)."""
        ...

    def save(self, authority: Authority, passphrase: bytes) -> Authority:
        """Store ``authority``; it as stored (the sequence may be the store's)."""
        ...

    def load(self, passphrase: bytes) -> Authority: ...

    def lease(self, now: dt.datetime) -> contextlib.AbstractContextManager[bool]:
        """Hold the right to rotate while the block runs; yields False if another holds it."""
        ...


@dataclass(frozen=True)
class CaFiles:
    """Reads and writes one CA's files under ``root``."""

    root: Path

    @property
    def meta(self) -> Path:
        return self.root / "authority.json"

    @property
    def db(self) -> Path:
        return self.root / "ca.db"

    def exists(self) -> bool:
        return self.meta.is_file()

    def mtime(self) -> float:
        try:
            return self.meta.stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def init(self, authority: Authority, passphrase: bytes) -> None:
        self.save(authority, passphrase)

    @contextlib.contextmanager
    def lease(self, now: dt.datetime) -> Iterator[bool]:
        """An exclusive ``flock`` on ``rotation.lock`` (processes on one state dir)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "rotation.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def save(self, authority: Authority, passphrase: bytes) -> Authority:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        self._save_cert(self.root / "root.crt", authority.root_cert)
        self._save_key_once(self.root / "root.key", authority.root_key, passphrase)
        for slot in authority.slots:
            self._save_cert(self.root / f"slot-{slot.id}.crt", slot.ca_cert)
            self._save_key_once(self.root / f"slot-{slot.id}.key", slot.ca_key, passphrase)
            self._save_key_once(self.root / f"slot-{slot.id}.jwt.key", slot.jwt_key, passphrase)
        meta = {
            "trust_domain": authority.trust_domain.name,
            "sequence": authority.sequence,
            "refresh_hint": authority.refresh_hint,
            "active": authority.active.id,
            "next": authority.next.id if authority.next else None,
            "retired": [s.id for s in authority.retired],
        }
        write_private_file(self.meta, json.dumps(meta, indent=2).encode("utf-8"))
        self._remove_pruned(min(s.id for s in authority.slots))
        return authority

    def _remove_pruned(self, oldest: int) -> None:
        """Delete the files of slots that left the bundle (older than every kept one)."""
        for path in self.root.glob("slot-*"):
            number = path.name.split(".")[0].removeprefix("slot-")
            if number.isdigit() and int(number) < oldest:
                path.unlink(missing_ok=True)

    def load(self, passphrase: bytes) -> Authority:
        if not self.exists():
            raise NotInitialized(f"no CA in {self.root}; run `meshward ca init` first")
        try:
            meta: dict[str, Any] = json.loads(self.meta.read_text(encoding="utf-8"))
            td = TrustDomain(meta["trust_domain"])
            root_cert = self._load_cert(self.root / "root.crt")
            root_key = load_key(self.root / "root.key", passphrase)

            def slot(n: int) -> Slot:
                return Slot(
                    int(n),
                    self._load_cert(self.root / f"slot-{n}.crt"),
                    load_key(self.root / f"slot-{n}.key", passphrase),
                    load_key(self.root / f"slot-{n}.jwt.key", passphrase),
                )

            return Authority(
                trust_domain=td,
                root_cert=root_cert,
                root_key=root_key,
                active=slot(meta["active"]),
                next=slot(meta["next"]) if meta.get("next") is not None else None,
                retired=tuple(slot(n) for n in meta.get("retired", [])),
                sequence=int(meta["sequence"]),
                refresh_hint=int(meta.get("refresh_hint", 300)),
            )
        except (KeyError, TypeError, ValueError, OSError) as exc:
            if isinstance(exc, KeystoreError):
                raise
            raise KeystoreError(f"CA state in {self.root} is unreadable: {exc}") from exc

    @staticmethod
    def _save_cert(path: Path, cert: x509.Certificate) -> None:
        if not path.exists():
            write_private_file(path, cert.public_bytes(serialization.Encoding.PEM))
            path.chmod(0o644)

    @staticmethod
    def _save_key_once(path: Path, key: Any, passphrase: bytes) -> None:
        if not path.exists():
            save_key(path, key, passphrase)

    @staticmethod
    def _load_cert(path: Path) -> x509.Certificate:
        return x509.load_pem_x509_certificate(path.read_bytes())
