"""Several URLs for one service, and the order to try them in (CA replicas behind clients).

A client is given its CA as a list (a repeated option, or one comma-separated
value) and/or a DNS name with several addresses; :class:`Endpoints` turns
that into the URLs to try, the one that last worked first, and says how long
to wait before the next try. The node agent, ``meshward agent run`` and the
PDP's trust-bundle fetcher use it, so they fail over the same way.

Expanding a name into one URL per address is only right for a client that
verifies the server by something other than its host name (the agent
verifies the CA's SPIFFE ID): :attr:`Endpoints.expand_dns` is off otherwise.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["Endpoints", "split_urls"]

Resolver = Callable[[str, int], Sequence[str]]


def split_urls(values: str | Iterable[str]) -> tuple[str, ...]:
    """``"https://a:8443, https://b:8443"`` (or a list of such) -> distinct URLs, in order."""
    items = [values] if isinstance(values, str) else list(values)
    out: list[str] = []
    for item in items:
        for raw in item.split(","):
            url = raw.strip().rstrip("/")
            if not url:
                continue
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("https", "http") or not parts.hostname:
                raise ValueError(f"not an http(s) URL: {url!r}")
            if url not in out:
                out.append(url)
    if not out:
        raise ValueError("no URL given")
    return tuple(out)


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _with_host(url: str, address: str) -> str:
    parts = urllib.parse.urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


@dataclass
class Endpoints:
    """The URLs of one service; sticky to the last one that worked."""

    urls: tuple[str, ...]
    expand_dns: bool = False
    resolve: Resolver = _system_resolver
    backoff_base: float = 0.1
    backoff_max: float = 2.0
    jitter: Callable[[], float] = random.random
    _preferred: str | None = field(default=None, repr=False)

    def _expanded(self, url: str) -> list[str]:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        try:
            ipaddress.ip_address(host)
            return [url]
        except ValueError:
            pass
        try:
            addresses = self.resolve(host, parts.port or 443)
        except OSError:
            return [url]  # let the request itself report the failure
        out: list[str] = []
        for address in addresses:
            candidate = _with_host(url, address)
            if candidate not in out:
                out.append(candidate)
        return out or [url]

    def order(self) -> list[str]:
        """Every URL to try, the preferred (last good) one first."""
        urls: list[str] = []
        for url in self.urls:
            for candidate in self._expanded(url) if self.expand_dns else [url]:
                if candidate not in urls:
                    urls.append(candidate)
        if self._preferred in urls:
            i = urls.index(self._preferred)
            urls = urls[i:] + urls[:i]
        return urls

    def worked(self, url: str) -> None:
        self._preferred = url

    def delay(self, attempt: int) -> float:
        """Seconds to wait before try ``attempt + 1`` (exponential, jittered, capped)."""
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** min(attempt, 30))
        return ceiling * (0.5 + self.jitter() / 2)
