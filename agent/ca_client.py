"""The agent's side of the CA's HTTPS API: attest once as the node, then act for its entries.

1. **Node attestation.** With a join token (or a Kubernetes projected
   service-account token) the agent asks ``POST /v1/svid/x509`` for its own
   node SVID and keeps it in ``<state>/agent/node.pem`` (key and chain in one
   0600 file, replaced atomically), so a restart needs no new token. The node
   SVID is renewed over mTLS (no token) at half its life.
2. **Entries.** ``GET /v1/agent/entries`` over mTLS lists the registration
   entries that carry the selector ``agent:id:<node SPIFFE ID>``; their other
   selectors (``unix:uid:…``) say which local workloads get them.
3. **SVIDs for entries.** ``POST /v1/agent/svid/x509`` ``{"csr", "entry_id"}``
   and ``POST /v1/agent/svid/jwt`` ``{"entry_id", "audience"}`` over mTLS; the
   CA signs only for entries of the calling node.

The CA's server certificate is an SVID without DNS names: it is verified
against the trust bundle and its SPIFFE ID (``spiffe://<td>/meshward/ca``),
not a host name. So the CA may be several replicas: a list of URLs and/or a
DNS name with several addresses (:class:`~meshward.endpoints.Endpoints`);
a request that fails to connect, times out or gets a 5xx/429 moves on to
the next one after a short jittered backoff, and the client stays with the
one that answered. The bootstrap bundle (``--ca-bundle``) is only needed until
the first ``GET /v1/bundle``; every bundle fetched is trusted from then on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent.errors import CaRejected, CaUnavailable
from agent.model import Bundle, Entry, HeldSvid
from agent.renewal import renew_at
from agent.source import JwtSvidToken
from meshward.clock import Clock
from meshward.endpoints import Endpoints, split_urls
from meshward.private_file import write_private_file
from meshward.selectors import AGENT_SELECTOR_PREFIX, node_selector
from meshward.spiffe import CA_SERVER_PATH, InvalidSpiffeId, SpiffeId, TrustDomain
from meshward.spiffe_bundle import InvalidBundle, SpiffeBundle
from meshward.x509_svid import InvalidSvid, build_csr, spiffe_id_of

__all__ = ["AGENT_SELECTOR_PREFIX", "CA_SERVER_PATH", "CaClient", "node_selector"]

log = logging.getLogger("meshward.agent.ca")

NODE_FILE = "node.pem"


def _uri_san(cert: x509.Certificate) -> str | None:
    try:
        return str(spiffe_id_of(cert))
    except InvalidSvid:
        return None


class NotTheCa(ssl.SSLCertVerificationError):
    """The TLS peer chains to the bundle but is not the CA's SPIFFE ID."""


def _ca_socket_class(expected: str) -> type[ssl.SSLSocket]:
    """An SSLSocket that refuses, right after the handshake, any peer but ``expected``."""

    class _CaSocket(ssl.SSLSocket):
        def do_handshake(self, block: bool = False) -> None:
            super().do_handshake(block)
            der = self.getpeercert(True)
            if not der or _uri_san(x509.load_der_x509_certificate(der)) != expected:
                raise NotTheCa("the server is not the CA of this trust domain")

    return _CaSocket


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _parse_rfc3339(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError("expires_at is not a string")
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("expires_at has no time zone")
    return parsed


class CaClient:
    """An :class:`~agent.source.IdentitySource` backed by ``meshward ca serve``.

    ``token`` is called each time the agent must attest (a projected
    Kubernetes token is rotated on disk, so it is read anew every time).
    """

    def __init__(
        self,
        url: str | Sequence[str],
        trust_domain: TrustDomain,
        bootstrap_bundle: bytes,
        state_dir: Path,
        clock: Clock,
        token: Callable[[], str | None] | None = None,
        timeout: float = 10.0,
        endpoints: Endpoints | None = None,
    ) -> None:
        self.endpoints = endpoints or Endpoints(split_urls(url), expand_dns=True)
        self.url = self.endpoints.urls[0]
        self.trust_domain = trust_domain
        self.state_dir = state_dir
        self.clock = clock
        self.token = token
        self.timeout = timeout
        self._trusted_pem = bootstrap_bundle
        self._node: tuple[list[x509.Certificate], ec.EllipticCurvePrivateKey] | None = None
        self._client: httpx.Client | None = None

    # -- node identity ------------------------------------------------------------------

    @property
    def node_file(self) -> Path:
        return self.state_dir / NODE_FILE

    @property
    def node_id(self) -> SpiffeId | None:
        if self._node is None:
            return None
        uri = _uri_san(self._node[0][0])
        return SpiffeId.parse(uri) if uri else None

    def _load_node(self) -> None:
        try:
            data = self.node_file.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("cannot read the node SVID", extra={"fields": {"error": exc.strerror}})
            return
        try:
            key = serialization.load_pem_private_key(data, password=None)
            chain = x509.load_pem_x509_certificates(data)
        except ValueError:
            log.warning("ignoring an unreadable node SVID file")
            return
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not chain:
            return
        if self.clock.now() >= chain[0].not_valid_after_utc:
            log.info("stored node SVID has expired; attesting again")
            return
        self._node = (chain, key)

    def _store_node(self, chain: list[x509.Certificate], key: ec.EllipticCurvePrivateKey) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ) + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
        write_private_file(self.node_file, data)
        self._node = (chain, key)

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        # The CA's certificate names a SPIFFE ID, not a host: the socket class
        # checks it at the handshake, before a byte of a request (or a token) is sent.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.sslsocket_class = _ca_socket_class(str(SpiffeId(self.trust_domain, CA_SERVER_PATH)))
        ctx.load_verify_locations(cadata=self._trusted_pem.decode("ascii"))
        if self._node is not None:
            ctx.load_cert_chain(self.node_file)
        return ctx

    async def _reconnect(self) -> httpx.Client:
        if self._client is not None:
            await asyncio.to_thread(self._client.close)
        self._client = httpx.Client(
            base_url=self.url, verify=self._ssl_context(), timeout=self.timeout
        )
        return self._client

    async def _ensure_node(self) -> None:
        """Have a valid node SVID (attesting or renewing as needed) and a client using it."""
        if self._node is None:
            self._load_node()
            if self._node is not None:
                await self._reconnect()
        if self._client is None:
            await self._reconnect()
        now = self.clock.now()
        if self._node is not None:
            leaf = self._node[0][0]
            due = renew_at(leaf.not_valid_before_utc, leaf.not_valid_after_utc, 0.0, 0.0)
            if now < due:
                return
            if now < leaf.not_valid_after_utc:
                await self._attest(token=None)
                return
            self._node = None
            await self._reconnect()
        token = self.token() if self.token is not None else None
        if not token:
            raise CaRejected("no node SVID and no token to attest with", 401, "no_credential")
        await self._attest(token=token)

    async def _attest(self, token: str | None) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        csr = build_csr(key)
        body: dict[str, Any] = {"csr": csr.public_bytes(serialization.Encoding.PEM).decode()}
        if token is not None:
            body["token"] = token
        doc = await self._post("/v1/svid/x509", body)
        chain = self._chain(doc)
        if SpiffeId.parse(_uri_san(chain[0]) or "").trust_domain != self.trust_domain:
            raise CaRejected("node SVID from another trust domain", 502, "foreign_trust_domain")
        self._store_node(chain, key)
        log.info(
            "node SVID obtained",
            extra={"fields": {"spiffe_id": _uri_san(chain[0]), "renewal": token is None}},
        )
        await self._reconnect()

    # -- HTTP ----------------------------------------------------------------------------

    async def _request(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        """``_request_at`` the current URL, failing over to the next ones in turn."""
        urls = self.endpoints.order()
        for attempt, url in enumerate(urls):
            if url != self.url or self._client is None:
                self.url = url
                await self._reconnect()
            try:
                doc = await self._request_at(method, path, body)
            except CaUnavailable as exc:
                if attempt + 1 == len(urls):
                    raise
                log.warning(
                    "CA endpoint failed; trying the next",
                    extra={"fields": {"url": url, "code": exc.code}},
                )
                await asyncio.sleep(self.endpoints.delay(attempt))
                continue
            self.endpoints.worked(url)
            return doc
        raise CaUnavailable("no CA URL to try")

    async def _request_at(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        client = self._client or await self._reconnect()
        try:
            response = await asyncio.to_thread(client.request, method, path, json=body)
        except httpx.TimeoutException as exc:
            raise CaUnavailable("the CA did not answer in time", "ca_timeout") from exc
        except (httpx.TransportError, ssl.SSLError, OSError) as exc:
            if _caused_by(exc, NotTheCa):
                raise CaUnavailable(
                    "the server is not the CA of this trust domain", "ca_identity"
                ) from exc
            raise CaUnavailable(f"cannot reach the CA: {type(exc).__name__}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise CaUnavailable(f"CA answered {response.status_code}", "ca_unavailable")
        try:
            doc = response.json()
        except ValueError as exc:
            if response.status_code >= 400:  # a refusal, even without a JSON body
                raise CaRejected(f"CA refused {path}", response.status_code, "ca_rejected") from exc
            raise CaUnavailable("CA answered with something that is not JSON") from exc
        if response.status_code >= 400:
            code = doc.get("error") if isinstance(doc, dict) else None
            raise CaRejected(
                f"CA refused {path}: {code}", response.status_code, str(code or "ca_rejected")
            )
        return doc

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        return await self._request("POST", path, body)

    @staticmethod
    def _chain(doc: Any) -> list[x509.Certificate]:
        try:
            chain = x509.load_pem_x509_certificates(doc["svid"].encode("ascii"))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise CaUnavailable("CA answer has no usable SVID chain") from exc
        return chain

    # -- IdentitySource --------------------------------------------------------------------

    async def fetch_bundle(self) -> Bundle:
        await self._ensure_node()
        doc = await self._request("GET", "/v1/bundle", None)
        try:
            bundle = SpiffeBundle.from_jwks(doc, self.trust_domain)
        except InvalidBundle as exc:
            raise CaUnavailable(f"CA bundle is invalid: {exc.reason}") from exc
        if not bundle.x509_authorities:
            raise CaUnavailable("CA bundle has no X.509 authorities")
        pem = bundle.to_pem()
        if pem not in self._trusted_pem:
            self._trusted_pem += pem
            await self._reconnect()
        return Bundle(bundle)

    async def fetch_entries(self) -> Sequence[Entry]:
        await self._ensure_node()
        doc = await self._request("GET", "/v1/agent/entries", None)
        out = []
        for raw in doc.get("entries", []) if isinstance(doc, dict) else []:
            try:
                selectors = frozenset(
                    s for s in raw["selectors"] if not s.startswith(AGENT_SELECTOR_PREFIX)
                )
                ttl = raw.get("x509_ttl")
                out.append(
                    Entry(
                        entry_id=str(raw["id"]),
                        spiffe_id=SpiffeId.parse(raw["spiffe_id"]),
                        selectors=selectors,
                        ttl_seconds=ttl if isinstance(ttl, int) else None,
                    )
                )
            except (KeyError, TypeError, InvalidSpiffeId):
                log.warning("skipping a malformed entry from the CA")
        return out

    async def sign_x509(
        self, entry: Entry, csr: x509.CertificateSigningRequest, current: HeldSvid | None
    ) -> Sequence[x509.Certificate]:
        await self._ensure_node()
        doc = await self._post(
            "/v1/agent/svid/x509",
            {
                "csr": csr.public_bytes(serialization.Encoding.PEM).decode("ascii"),
                "entry_id": entry.entry_id,
            },
        )
        chain = self._chain(doc)
        if _uri_san(chain[0]) != str(entry.spiffe_id):
            raise CaUnavailable("CA signed an SVID for another SPIFFE ID", "ca_wrong_id")
        if chain[0].public_key() != csr.public_key():
            raise CaUnavailable("CA signed another key", "ca_wrong_key")
        return chain

    async def sign_jwt(self, svid: HeldSvid, audience: Sequence[str]) -> JwtSvidToken:
        await self._ensure_node()
        doc = await self._post(
            "/v1/agent/svid/jwt", {"entry_id": svid.entry.entry_id, "audience": list(audience)}
        )
        try:
            return JwtSvidToken(str(doc["token"]), _parse_rfc3339(doc["expires_at"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CaUnavailable("CA answer has no usable JWT-SVID") from exc

    async def aclose(self) -> None:
        if self._client is not None:
            await asyncio.to_thread(self._client.close)
            self._client = None
