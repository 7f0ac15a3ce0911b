"""The PDP's trust bundle followed from the CA's API, failing over between CA replicas.

``pdp.trust_bundle_url`` names the CA (several URLs, or a DNS name with
several addresses: :class:`~meshward.endpoints.Endpoints`); ``pdp.trust_bundle``
is the bundle that trusts it the first time. :class:`TrustBundleUrl` fetches
``GET /v1/bundle`` at most once per ``poll_seconds``, on use and in a short
background thread, so no decision ever waits for the network: a request is
judged against the last good bundle. A fetch that cannot connect, times out,
gets a non-200 answer or a bundle that does not parse tries the next URL
(after a jittered backoff); if none answers, the last good bundle stays.

The CA is verified like the node agent verifies it: its certificate must
chain to the bundle in force and name the CA's SPIFFE ID
(``spiffe://<td>/meshward/ca``). The request carries no credential, so the
identity is checked on the answer, before anything in it is used.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from authz.authn.trust import TrustBundles, TrustDomainBundle, TrustSource
from meshward.clock import Clock
from meshward.endpoints import Endpoints
from meshward.spiffe import CA_SERVER_PATH, SpiffeId, TrustDomain
from meshward.spiffe_bundle import InvalidBundle, SpiffeBundle
from meshward.x509_svid import InvalidSvid, spiffe_id_of

__all__ = ["TrustBundleUrl"]

log = logging.getLogger(__name__)

MAX_BUNDLE_BYTES = 1024 * 1024


class _NotTheCa(Exception):
    pass


class TrustBundleUrl:
    """``trust_domain``'s bundle from the CA; the other trust domains from ``bootstrap``."""

    def __init__(
        self,
        endpoints: Endpoints,
        bootstrap: TrustSource,
        trust_domain: TrustDomain,
        clock: Clock,
        poll_seconds: float = 2.0,
        timeout: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.endpoints = endpoints
        self.bootstrap = bootstrap
        self.trust_domain = trust_domain
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.timeout = timeout
        self.sleep = sleep
        self.last_error: str | None = None
        self._fetched: TrustDomainBundle | None = None
        self._bundles = bootstrap.current()
        self._checked_at = -float("inf")
        self._lock = threading.Lock()
        self._busy = False

    def current(self) -> TrustBundles:
        now = self.clock.monotonic()
        if now - self._checked_at >= self.poll_seconds:
            self._checked_at = now
            with self._lock:
                start, self._busy = not self._busy, True
            if start:
                threading.Thread(target=self._refresh_in_background, daemon=True).start()
        return self._bundles

    def _refresh_in_background(self) -> None:
        try:
            self.refresh()
        finally:
            with self._lock:
                self._busy = False

    def refresh(self) -> bool:
        """Fetch now (blocking), trying each URL in turn; True when a bundle was taken."""
        urls = self.endpoints.order()
        for attempt, url in enumerate(urls):
            try:
                bundle = self._fetch(url)
            except (httpx.HTTPError, ssl.SSLError, OSError, _NotTheCa, InvalidBundle) as exc:
                self.last_error = f"{url}: {type(exc).__name__}"
                log.warning(
                    "trust bundle not fetched; trying the next CA URL",
                    extra={"fields": {"url": url, "error": type(exc).__name__}},
                )
                if attempt + 1 < len(urls):
                    self.sleep(self.endpoints.delay(attempt))
                continue
            self.endpoints.worked(url)
            self._take(bundle)
            self.last_error = None
            return True
        return False

    def _take(self, bundle: SpiffeBundle) -> None:
        fetched = TrustDomainBundle(
            self.trust_domain, bundle.x509_authorities, bundle.jwt_authorities
        )
        if fetched == self._fetched:
            return
        self._fetched = fetched
        others = {
            td: b for td, b in self.bootstrap.current().bundles.items() if td != self.trust_domain
        }
        self._bundles = replace(self._bundles, bundles={**others, self.trust_domain: fetched})
        log.info(
            "trust bundle followed from the CA",
            extra={"fields": {"sequence": bundle.sequence, "x509": len(fetched.x509_authorities)}},
        )

    def _context(self) -> ssl.SSLContext:
        trusted = self._bundles.get(self.trust_domain)
        if trusted is None or not trusted.x509_authorities:
            raise _NotTheCa("no X.509 authority to verify the CA with")
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ctx.check_hostname = False  # the CA is verified by its SPIFFE ID, below
        ctx.verify_mode = ssl.CERT_REQUIRED
        pem = b"".join(c.public_bytes(Encoding.PEM) for c in trusted.x509_authorities)
        ctx.load_verify_locations(cadata=pem.decode("ascii"))
        return ctx

    def _fetch(self, url: str) -> SpiffeBundle:
        with (
            httpx.Client(verify=self._context(), timeout=self.timeout) as client,
            client.stream("GET", f"{url}/v1/bundle") as response,
        ):
            self._check_peer(response)
            if response.status_code != 200:
                raise httpx.HTTPStatusError("not 200", request=response.request, response=response)
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_BUNDLE_BYTES:
                    raise InvalidBundle("too_large")
        return SpiffeBundle.from_jwks(body, self.trust_domain)

    def _check_peer(self, response: httpx.Response) -> None:
        stream: Any = response.extensions.get("network_stream")
        ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
        der = ssl_object.getpeercert(True) if ssl_object is not None else None
        if not der:
            raise _NotTheCa("no peer certificate")
        try:
            peer = spiffe_id_of(x509.load_der_x509_certificate(der))
        except (InvalidSvid, ValueError) as exc:
            raise _NotTheCa("the peer names no SPIFFE ID") from exc
        if peer != SpiffeId(self.trust_domain, CA_SERVER_PATH):
            raise _NotTheCa("the server is not the CA of this trust domain")


_check: type[TrustSource] = TrustBundleUrl
