"""The mTLS peer: Envoy's ``source.principal``, its certificate, and XFCC.

Pure: every function takes the time and the trust anchors as values.

- Envoy's mTLS peer is believed only when :attr:`PeerPolicy.trust_principal`
  is set, and then only as proven: ``source.certificate`` (Envoy's
  ``include_peer_certificate``) is verified against the trust bundle, and
  ``source.principal``, when also sent, must equal its URI SAN. A principal
  that comes without a certificate is refused (``principal_without_certificate``)
  unless :attr:`PeerPolicy.trust_bare_principal` explicitly allows it.
- ``x-forwarded-client-cert`` (Envoy's XFCC format) is read only when the
  immediate sender is a configured trusted proxy: by the socket peer's address
  (:attr:`PeerFacts.address`, which adapters take from the connection, never
  from a header) or by its verified SPIFFE ID; otherwise it is ignored. Either
  way adapters strip it from what policies see.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from cryptography import x509

from authz.authn.trust import TrustBundles
from authz.errors import InvalidPeer
from meshward import svid_chain
from meshward.spiffe import InvalidSpiffeId, SpiffeId
from meshward.x509_svid import InvalidSvid

__all__ = [
    "MAX_XFCC_BYTES",
    "Peer",
    "PeerFacts",
    "PeerPolicy",
    "authenticate_peer",
    "parse_spiffe_id",
    "parse_xfcc",
    "verify_svid_chain",
]

# Envoy sends the same few principals over and over: parse each once.
parse_spiffe_id = functools.lru_cache(maxsize=4096)(SpiffeId.parse)
MAX_XFCC_BYTES = 32 * 1024
MAX_CERT_BYTES = 64 * 1024

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Peer:
    """An authenticated mTLS peer.

    ``valid_from`` and ``valid_until`` bound when the facts that proved it prove
    it again (its certificate chain's validity); ``None``: no certificate, no bound.
    """

    spiffe_id: SpiffeId
    expires_at: dt.datetime | None
    via: str  # "mtls" (Envoy's own handshake) or "xfcc" (a trusted proxy's)
    valid_from: dt.datetime | None = field(default=None, compare=False)
    valid_until: dt.datetime | None = field(default=None, compare=False)

    def valid_at(self, now: dt.datetime) -> bool:
        """Whether the facts that proved this peer still prove it at ``now``."""
        if self.valid_from is not None and now < self.valid_from:
            return False
        return self.valid_until is None or now <= self.valid_until

    def context(self) -> dict[str, str]:
        """``context.peer`` for policies."""
        return {"spiffe_id": str(self.spiffe_id), "trust_domain": self.spiffe_id.trust_domain.name}


class PeerFacts(NamedTuple):
    """What a proxy told us about the connection (strings as received; immutable)."""

    principal: str = ""
    certificate: str = ""  # URL-encoded PEM, as Envoy sends it
    address: str = ""  # the immediate peer: the socket's address (or Envoy's source.address)
    xfcc: str | None = None


@dataclass(frozen=True, slots=True)
class PeerPolicy:
    """Which connection facts to believe."""

    trust_principal: bool = False
    trusted_proxy_ids: frozenset[SpiffeId] = frozenset()
    trusted_proxy_networks: tuple[_Network, ...] = ()
    trust_bare_principal: bool = False

    @classmethod
    def build(
        cls,
        trust_principal: bool,
        trusted_proxies: Sequence[str],
        *,
        trust_bare_principal: bool = False,
    ) -> PeerPolicy:
        """``trusted_proxies`` holds SPIFFE IDs and IP networks (``10.0.0.0/8``)."""
        ids: set[SpiffeId] = set()
        nets: list[_Network] = []
        for entry in trusted_proxies:
            if entry.startswith("spiffe://"):
                ids.add(SpiffeId.parse(entry))
            else:
                nets.append(ipaddress.ip_network(entry, strict=False))
        return cls(trust_principal, frozenset(ids), tuple(nets), trust_bare_principal)

    def is_trusted_proxy(self, address: str, peer: Peer | None) -> bool:
        if peer is not None and peer.spiffe_id in self.trusted_proxy_ids:
            return True
        if not self.trusted_proxy_networks or not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted_proxy_networks)


def verify_svid_chain(
    chain: Sequence[x509.Certificate], bundles: TrustBundles, now: dt.datetime
) -> tuple[SpiffeId, dt.datetime]:
    """Verify an X.509-SVID chain (leaf first); return its SPIFFE ID and expiry.

    :func:`meshward.svid_chain.verify_svid_chain` against ``bundles``; its
    reasons become :class:`InvalidPeer` codes unchanged.
    """
    verified = _verify(chain, bundles, now)
    return verified.spiffe_id, verified.expires_at


def _verify(
    chain: Sequence[x509.Certificate], bundles: TrustBundles, now: dt.datetime
) -> svid_chain.VerifiedSvid:
    try:
        return svid_chain.verify_svid(chain, bundles.x509_authorities, now)
    except InvalidSvid as exc:
        raise InvalidPeer(exc.reason, exc.detail) from exc


def _verified_peer(text: str, bundles: TrustBundles, now: dt.datetime, via: str) -> Peer:
    """The peer a (URL-encoded) PEM chain proves."""
    verified = _verify(parse_pem_chain(text), bundles, now)
    return Peer(
        verified.spiffe_id, verified.expires_at, via, verified.valid_from, verified.valid_until
    )


def parse_pem_chain(text: str, url_encoded: bool = True) -> list[x509.Certificate]:
    """Certificates from (URL-encoded) PEM, leaf first."""
    if len(text) > MAX_CERT_BYTES:
        raise InvalidPeer("cert_too_large")
    raw = urllib.parse.unquote(text) if url_encoded else text
    try:
        certs = x509.load_pem_x509_certificates(raw.encode("utf-8", "strict"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise InvalidPeer("cert_malformed") from exc
    return certs


def parse_xfcc(value: str) -> list[dict[str, list[str]]]:
    """Parse ``x-forwarded-client-cert``: elements by ``,``, pairs by ``;``.

    Values may be double-quoted (with ``\\"`` escapes) to hold ``,;=``. Keys are
    case-insensitive and returned lower-case; a key may repeat (``URI``, ``DNS``).
    """
    if len(value) > MAX_XFCC_BYTES:
        raise InvalidPeer("xfcc_too_large")
    elements: list[dict[str, list[str]]] = []
    pairs: dict[str, list[str]] = {}
    key: str | None = None
    buf: list[str] = []
    i, n = 0, len(value)

    def end_pair() -> None:
        nonlocal key
        text = "".join(buf).strip()
        buf.clear()
        if key is None:
            if text:
                raise InvalidPeer("xfcc_malformed", "pair without '='")
            return
        if not key:
            raise InvalidPeer("xfcc_malformed", "empty key")
        pairs.setdefault(key, []).append(text)
        key = None

    while i < n:
        ch = value[i]
        if ch == '"':
            i += 1
            while i < n and value[i] != '"':
                if value[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(value[i])
                i += 1
            if i >= n:
                raise InvalidPeer("xfcc_malformed", "unterminated quote")
        elif ch == "=" and key is None:
            key = "".join(buf).strip().lower()
            buf.clear()
        elif ch == ";":
            end_pair()
        elif ch == ",":
            end_pair()
            if pairs:
                elements.append(pairs)
            pairs = {}
        else:
            buf.append(ch)
        i += 1
    end_pair()
    if pairs:
        elements.append(pairs)
    return elements


def _peer_from_xfcc(value: str, bundles: TrustBundles, now: dt.datetime) -> Peer | None:
    elements = parse_xfcc(value)
    if not elements:
        return None
    # The proxy closest to us appends last: the last element is its client.
    element = elements[-1]
    uris = [u for u in element.get("uri", []) if u]
    certs = [c for c in element.get("cert", []) if c]
    if not uris and not certs:
        return None  # the proxy's client presented no certificate
    if certs:
        peer = _verified_peer(certs[0], bundles, now, "xfcc")
        if uris and any(u != str(peer.spiffe_id) for u in uris):
            raise InvalidPeer("xfcc_uri_mismatch")
        return peer
    if len(uris) != 1:
        raise InvalidPeer("xfcc_uri_count", f"{len(uris)} URIs")
    try:
        spiffe_id = SpiffeId.parse(uris[0])
    except InvalidSpiffeId as exc:
        raise InvalidPeer("xfcc_not_spiffe", exc.reason) from exc
    if bundles and bundles.get(spiffe_id.trust_domain) is None:
        raise InvalidPeer("foreign_trust_domain", spiffe_id.trust_domain.name)
    return Peer(spiffe_id, None, "xfcc")


def _direct_peer(
    facts: PeerFacts, policy: PeerPolicy, bundles: TrustBundles, now: dt.datetime
) -> Peer | None:
    principal = facts.principal
    if not principal and not facts.certificate:
        return None
    claimed: SpiffeId | None = None
    if principal:
        try:
            claimed = parse_spiffe_id(principal)
        except InvalidSpiffeId as exc:
            raise InvalidPeer("principal_not_spiffe", exc.reason) from exc
    if facts.certificate:
        peer = _verified_peer(facts.certificate, bundles, now, "mtls")
        if claimed is not None and claimed != peer.spiffe_id:
            raise InvalidPeer("principal_mismatch")
        return peer
    if claimed is None:
        return None
    if not policy.trust_bare_principal:
        # A principal string proves nothing by itself: anyone who can reach the
        # gRPC port can send one. Only a certificate that chains to the bundle does.
        raise InvalidPeer("principal_without_certificate")
    if bundles and bundles.get(claimed.trust_domain) is None:
        raise InvalidPeer("foreign_trust_domain", claimed.trust_domain.name)
    return _bare_peer(claimed)


@functools.lru_cache(maxsize=4096)
def _bare_peer(spiffe_id: SpiffeId) -> Peer:
    """The (immutable) peer a trusted bare principal names; the same few recur."""
    return Peer(spiffe_id, None, "mtls")


def authenticate_peer(
    facts: PeerFacts, policy: PeerPolicy, bundles: TrustBundles, now: dt.datetime
) -> Peer | None:
    """The calling workload, or ``None`` when no trusted mTLS fact names one.

    Raises :class:`InvalidPeer` when a trusted fact is present but wrong: the
    caller is then unauthenticated, never silently anonymous.
    """
    direct = _direct_peer(facts, policy, bundles, now) if policy.trust_principal else None
    if facts.xfcc is not None and policy.is_trusted_proxy(facts.address, direct):
        forwarded = _peer_from_xfcc(facts.xfcc, bundles, now)
        if forwarded is None or direct is None:
            return forwarded
        # The direct peer's chain was verified too: the answer holds only while both do.
        return replace(
            forwarded,
            valid_from=_latest(forwarded.valid_from, direct.valid_from),
            valid_until=_earliest(forwarded.valid_until, direct.valid_until),
        )
    return direct


def _latest(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    return b if a is None else a if b is None else max(a, b)


def _earliest(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    return b if a is None else a if b is None else min(a, b)
