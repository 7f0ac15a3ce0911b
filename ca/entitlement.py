"""Who may still hold an identity, and for how long (pure rules the CA applies).

An SVID is issued, renewed included, only while something live stands behind
its SPIFFE ID:

- a **live registration entry** for the ID: one that is not delegated to a
  node agent (no ``agent:id:`` selector), or delegated to at least one node
  whose agent record is not evicted; or
- for a **node identity** (attested with a join token, or adopted on renewal
  because live entries are delegated to it): an agent record that is not
  evicted. A JWT-SVID always needs a live entry.

Lifetimes: a request's ``ttl`` can only shorten what the entry (or the CA
default) grants, never stretch it, and nothing shorter than the CA's minimum
is issued (a too-short TTL makes a renewal loop).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ca.errors import BadRequest
from ca.store.protocol import AgentRecord, Entry
from meshward.selectors import delegating_nodes
from meshward.spiffe import SpiffeId

__all__ = ["entry_is_live", "grant_ttl"]


def entry_is_live(entry: Entry, agent: Callable[[SpiffeId], AgentRecord | None]) -> bool:
    """True unless every node the entry is delegated to has been evicted."""
    nodes = delegating_nodes(entry.selectors)
    if not nodes:
        return True
    return any((record := agent(n)) is None or not record.evicted for n in nodes)


def grant_ttl(
    requested: int | None, granted: Iterable[int | None], default: int, minimum: int, maximum: int
) -> int:
    """The lifetime to issue: the request shortens the grant, never stretches it.

    ``granted`` are the TTLs of the entries behind the ID (``None``: the CA
    default); the shortest wins. Raises :class:`BadRequest` (``bad_ttl``,
    ``ttl_too_short``) for a request that is not positive or below ``minimum``.
    """
    if requested is not None and requested <= 0:
        raise BadRequest("the TTL must be positive", code="bad_ttl")
    if requested is not None and requested < minimum:
        raise BadRequest(f"the TTL must be at least {minimum} seconds", code="ttl_too_short")
    limits = [t or default for t in granted] or [default]
    limit = max(min(*limits, maximum), minimum)
    return limit if requested is None else min(requested, limit)
