"""Trust anchors per trust domain: X.509 authorities and JWT-SVID keys.

A :class:`TrustBundles` value is what authentication verifies against.
Authentication asks a :class:`TrustSource` for the current value on each use:
a :class:`TrustBundles` is its own (static) source; a :class:`TrustBundleFile`
follows ``--trust-bundle`` as the CA rewrites it (signing CA and JWT key
rotation), keeping the last good bundle when the file becomes unreadable or
invalid. Nothing here reads files except :func:`load_trust_bundles` and
:meth:`TrustBundleFile.current`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from cryptography import x509

from authz.errors import KeySourceError
from meshward.clock import Clock
from meshward.spiffe import SpiffeError, TrustDomain
from meshward.spiffe_bundle import load_bundle

__all__ = [
    "TrustBundleFile",
    "TrustBundles",
    "TrustDomainBundle",
    "TrustSource",
    "load_trust_bundles",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TrustDomainBundle:
    """One trust domain's X.509 authorities and JWT-SVID keys (``kid`` -> public key)."""

    trust_domain: TrustDomain
    x509_authorities: tuple[x509.Certificate, ...] = ()
    jwt_keys: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "x509_authorities", tuple(self.x509_authorities))
        object.__setattr__(self, "jwt_keys", MappingProxyType(dict(self.jwt_keys)))


@dataclass(frozen=True, slots=True)
class TrustBundles:
    """The trust domains we accept credentials from."""

    bundles: Mapping[TrustDomain, TrustDomainBundle] = field(
        default_factory=lambda: MappingProxyType({})
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "bundles", MappingProxyType(dict(self.bundles)))

    @classmethod
    def of(cls, *bundles: TrustDomainBundle) -> TrustBundles:
        return cls({b.trust_domain: b for b in bundles})

    def get(self, trust_domain: TrustDomain) -> TrustDomainBundle | None:
        return self.bundles.get(trust_domain)

    def x509_authorities(self, trust_domain: TrustDomain) -> tuple[x509.Certificate, ...]:
        """The X.509 authorities of ``trust_domain`` (none when it is not trusted)."""
        bundle = self.bundles.get(trust_domain)
        return () if bundle is None else bundle.x509_authorities

    def __bool__(self) -> bool:
        return bool(self.bundles)

    def current(self) -> TrustBundles:
        """A fixed value is its own :class:`TrustSource`."""
        return self


class TrustSource(Protocol):
    """Where authentication gets the trust bundles it verifies against, per use."""

    def current(self) -> TrustBundles: ...


_Signature = tuple[int, int, int, int]


def _signature(path: Path) -> _Signature | None:
    """What changes when the file is rewritten or atomically replaced."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class TrustBundleFile:
    """A trust bundle file, re-read when its stat signature changes.

    At most one ``stat`` per ``poll_seconds`` (measured with the injected
    clock's monotonic time), done on use, so there is no thread or task to
    manage. A new file that cannot be read or parsed is logged (with its error
    code) and ignored: the last good bundle stays in force until the file is
    valid again. The swap is one attribute assignment, so every request sees
    either the old bundle or the new one, never a mix.
    """

    def __init__(
        self,
        path: Path,
        clock: Clock,
        trust_domain: str | None = None,
        poll_seconds: float = 2.0,
    ) -> None:
        self.path = path
        self.clock = clock
        self.trust_domain = trust_domain
        self.poll_seconds = poll_seconds
        self.last_error: KeySourceError | None = None
        self._bundles = TrustBundles()
        self._signature: _Signature | None = None
        self._checked_at = -float("inf")

    def load(self) -> TrustBundles:
        """The first read, at start-up; raises :class:`KeySourceError` if unusable."""
        signature = _signature(self.path)
        self._bundles = load_trust_bundles(self.path, self.trust_domain)
        self._signature = signature
        self._checked_at = self.clock.monotonic()
        return self._bundles

    def current(self) -> TrustBundles:
        now = self.clock.monotonic()
        if now - self._checked_at >= self.poll_seconds:
            self._checked_at = now
            self._reload_if_changed()
        return self._bundles

    def _reload_if_changed(self) -> None:
        signature = _signature(self.path)
        if signature == self._signature:
            return
        self._signature = signature
        try:
            bundles = load_trust_bundles(self.path, self.trust_domain)
        except KeySourceError as exc:
            self.last_error = exc
            log.error(
                "trust bundle %s not reloaded, keeping the last good one: %s",
                self.path,
                exc.code,
                extra={"fields": {"path": str(self.path), "reason": exc.code}},
            )
            return
        self._bundles = bundles
        self.last_error = None
        log.info(
            "trust bundle %s reloaded",
            self.path,
            extra={"fields": {"path": str(self.path), "trust_domains": len(bundles.bundles)}},
        )


def load_trust_bundles(path: Path, trust_domain: str | None = None) -> TrustBundles:
    """Read a SPIFFE bundle (JWK Set document or PEM) with :mod:`meshward.spiffe_bundle`.

    The trust domain is ``trust_domain`` when given, else the SPIFFE ID in the
    X.509 authorities' URI SAN.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeySourceError("bundle_unreadable", f"{path}: {exc.strerror}") from exc
    try:
        td = TrustDomain.parse(trust_domain) if trust_domain else None
        bundle = load_bundle(data, td)
    except SpiffeError as exc:
        reason = getattr(exc, "reason", "invalid")
        raise KeySourceError(f"bundle_{reason}", str(path)) from exc
    return TrustBundles.of(
        TrustDomainBundle(bundle.trust_domain, bundle.x509_authorities, bundle.jwt_authorities)
    )
