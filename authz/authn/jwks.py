"""JSON Web Key Sets: parsing (pure) and the sources that hold them.

A :class:`KeySource` hands out the current :class:`KeySet` synchronously and
refreshes it on demand (an unknown ``kid``, or the set growing old), never more
often than ``min_refresh_seconds``: a flood of tokens with made-up ``kid``
values cannot turn into a flood of fetches.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import httpx

from authz.errors import KeySourceError
from meshward.clock import Clock
from meshward.jwk import ASYMMETRIC_ALGORITHMS, InvalidJwk, Jwk, parse_jwk_set
from meshward.logs import redact_url

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "FileJwks",
    "Jwk",
    "KeySet",
    "KeySource",
    "StaticJwks",
    "UrlJwks",
    "parse_jwks",
]

log = logging.getLogger(__name__)

MAX_JWKS_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class KeySet:
    """Public verification keys by ``kid``."""

    keys: Mapping[str, Jwk] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", MappingProxyType(dict(self.keys)))

    def get(self, kid: str) -> Jwk | None:
        return self.keys.get(kid)


def parse_jwks(doc: Any, use: str | None = None) -> KeySet:
    """Keep the usable asymmetric keys of a JWKS document.

    Symmetric (``oct``) keys, keys without ``kid``, keys whose ``use`` is not
    ``use`` (when the key states one) and keys PyJWT cannot load are skipped.
    """
    try:
        keys, skipped = parse_jwk_set(doc, use)
    except InvalidJwk as exc:
        raise KeySourceError("jwks_invalid", exc.detail) from exc
    for problem in skipped:
        log.warning("skipping unusable JWK", extra={"fields": {"error": str(problem)}})
    return KeySet(keys)


def _parse_bytes(data: bytes, where: str) -> KeySet:
    if len(data) > MAX_JWKS_BYTES:
        raise KeySourceError("jwks_too_large", where)
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise KeySourceError("jwks_invalid", f"{where}: not JSON") from exc
    return parse_jwks(doc)


@runtime_checkable
class KeySource(Protocol):
    """Where an issuer's keys come from."""

    def current(self) -> KeySet:
        """The keys held now (no I/O)."""
        ...

    async def refresh(self) -> bool:
        """Fetch again unless rate-limited; ``True`` if the set was replaced."""
        ...


class StaticJwks:
    """A fixed key set (tests, and keys given inline in the configuration)."""

    def __init__(self, keys: KeySet) -> None:
        self._keys = keys

    def current(self) -> KeySet:
        return self._keys

    async def refresh(self) -> bool:
        return False


class _Refreshing(abc.ABC):
    def __init__(self, clock: Clock, min_refresh_seconds: float) -> None:
        self._clock = clock
        self._min = min_refresh_seconds
        self._keys = KeySet()
        self._last: float | None = None
        self._lock = asyncio.Lock()

    def current(self) -> KeySet:
        return self._keys

    def _due(self) -> bool:
        return self._last is None or self._clock.monotonic() - self._last >= self._min

    async def refresh(self) -> bool:
        if not self._due():
            return False
        async with self._lock:
            if not self._due():  # someone else refreshed while we waited
                return False
            self._last = self._clock.monotonic()
            try:
                self._keys = await self._fetch()
            except KeySourceError as exc:
                log.warning(
                    "key set refresh failed; keeping the old keys",
                    extra={"fields": {"reason": exc.code, "detail": exc.detail}},
                )
                return False
            return True

    @abc.abstractmethod
    async def _fetch(self) -> KeySet:
        """Read the key set from its origin."""


class FileJwks(_Refreshing):
    """A JWKS file, re-read on refresh (so rotated keys are picked up)."""

    def __init__(self, path: Path, clock: Clock, min_refresh_seconds: float = 30.0) -> None:
        super().__init__(clock, min_refresh_seconds)
        self.path = path

    def load(self) -> None:
        """Read the file now; a start-up error is a configuration error."""
        self._keys = self._read()
        self._last = self._clock.monotonic()

    def _read(self) -> KeySet:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise KeySourceError("jwks_unreadable", f"{self.path}: {exc.strerror}") from exc
        return _parse_bytes(data, str(self.path))

    async def _fetch(self) -> KeySet:
        return await asyncio.to_thread(self._read)


class UrlJwks(_Refreshing):
    """A JWKS at an HTTPS URL, fetched on start and refreshed on unknown ``kid``."""

    def __init__(
        self,
        url: str,
        clock: Clock,
        min_refresh_seconds: float = 30.0,
        timeout: float = 5.0,
        ca_file: Path | None = None,
    ) -> None:
        super().__init__(clock, min_refresh_seconds)
        # What errors and logs show: the URL without a password or secret query value.
        self.shown = redact_url(url)
        if not url.startswith("https://"):
            raise KeySourceError("jwks_url_not_https", self.shown[:200])
        self.url = url
        self._timeout = timeout
        # The system CAs, or the one bundle the issuer's certificate chains to.
        self._tls = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)

    async def _fetch(self) -> KeySet:
        try:
            async with httpx.AsyncClient(timeout=self._timeout, verify=self._tls) as client:
                response = await client.get(self.url, headers={"accept": "application/json"})
        except httpx.HTTPError as exc:
            raise KeySourceError(
                "jwks_fetch_failed", f"{self.shown}: {type(exc).__name__}"
            ) from exc
        if response.status_code != 200:
            raise KeySourceError("jwks_fetch_failed", f"{self.shown}: HTTP {response.status_code}")
        return _parse_bytes(response.content, self.shown)
