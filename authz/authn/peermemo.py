"""Peers already authenticated, remembered by the facts that proved them.

Envoy sends the same connection facts (``source.principal``, the URL-encoded
certificate chain, a trusted proxy's ``x-forwarded-client-cert``) with every
request of a connection, and a mesh has few peers. :class:`PeerMemo` runs
:func:`~authz.authn.peer.authenticate_peer` once per distinct facts and trust
bundle, and answers the next requests from what it found:

- the time is still checked on every request: a remembered peer is served only
  while its certificate chain is valid (:meth:`Peer.valid_at`, the same bounds
  the verification checks); outside them the facts are verified afresh, which
  fails as it must (``cert_expired``, ``cert_not_yet_valid``);
- a different trust bundle (rotation, a reloaded file, a new fetch) or peer
  policy empties the memo first: nothing proved against other anchors is reused;
- a failure is never remembered: the facts are verified again next time and
  fail again (fail closed);
- bounded: at most ``max_entries`` facts; long values (certificates, XFCC) are
  keyed by their BLAKE2b digest, so a key stays small.

Not thread-safe; used from the event loop like the rest of the decision path.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Hashable

from authz.authn.peer import Peer, PeerFacts, PeerPolicy, authenticate_peer
from authz.authn.trust import TrustBundles

__all__ = ["PeerMemo"]

_SHORT = 256  # longer values are keyed by digest


def _part(value: str) -> str | bytes:
    if len(value) <= _SHORT:
        return value
    return hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=32).digest()


def _key(facts: PeerFacts) -> Hashable:
    head = (_part(facts.principal), _part(facts.certificate))
    if facts.xfcc is None:
        return head  # the address matters only to trust a forwarded certificate
    return (*head, facts.address, _part(facts.xfcc))


class PeerMemo:
    """:func:`authenticate_peer` with its successes remembered (see the module docstring)."""

    def __init__(self, max_entries: int = 4096) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._found: dict[Hashable, Peer | None] = {}
        self._bundles: TrustBundles | None = None
        self._policy: PeerPolicy | None = None

    def __len__(self) -> int:
        return len(self._found)

    def authenticate(
        self, facts: PeerFacts, policy: PeerPolicy, bundles: TrustBundles, now: dt.datetime
    ) -> Peer | None:
        """What ``authenticate_peer(facts, policy, bundles, now)`` returns (or raises)."""
        if bundles is not self._bundles or policy is not self._policy:
            self._found.clear()
            self._bundles, self._policy = bundles, policy
        key = _key(facts)
        if key in self._found:
            peer = self._found[key]
            if peer is None or peer.valid_at(now):
                return peer
            del self._found[key]  # outside its validity: verified afresh below
        peer = authenticate_peer(facts, policy, bundles, now)  # a failure raises: not kept
        if len(self._found) >= self.max_entries:
            self._found.clear()
        self._found[key] = peer
        return peer
