"""JWT-SVID audience binding: a token is good only at the destination it names.

A JWT-SVID is a bearer credential. If every service accepted one mesh-wide
audience, the service a caller talks to could replay the caller's token to any
other service the caller may reach. So a JWT-SVID is accepted for destination
``D`` (the id of the Cedar resource, ``Service::"<D>"``: its SPIFFE ID, or the
service name or host the request was mapped to) only when its ``aud`` claim
names ``D`` itself or one of the aliases configured for ``D``
(``pdp.jwt_svid_audience_aliases``).

``pdp.jwt_svid_any_destination_audiences`` restores the old mesh-wide
behaviour for the audiences it lists: explicit, off by default, and
documented as allowing replay.

Pure: the check takes the token's audiences and the destination as values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from authz.errors import InvalidToken

__all__ = ["AudiencePolicy", "check_audience", "token_audiences"]

MAX_AUDIENCES = 64


@dataclass(frozen=True, slots=True)
class AudiencePolicy:
    """Which ``aud`` values a JWT-SVID may carry to be accepted at a destination."""

    # destination id -> audiences that also name it
    aliases: Mapping[str, frozenset[str]] = field(default_factory=lambda: MappingProxyType({}))
    # audiences accepted at every destination (opt-in; permits replay)
    any_destination: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        frozen = {str(k): frozenset(v) for k, v in self.aliases.items()}
        object.__setattr__(self, "aliases", MappingProxyType(frozen))
        object.__setattr__(self, "any_destination", frozenset(self.any_destination))

    @classmethod
    def build(
        cls, aliases: Mapping[str, Iterable[str]], any_destination: Iterable[str] = ()
    ) -> AudiencePolicy:
        return cls({k: frozenset(v) for k, v in aliases.items()}, frozenset(any_destination))

    def accepted_at(self, destination: str) -> frozenset[str]:
        """Every audience that names ``destination``."""
        names = {destination} if destination else set()
        return frozenset(names | self.aliases.get(destination, frozenset()) | self.any_destination)


def token_audiences(claim: Any) -> frozenset[str]:
    """The ``aud`` claim as a set (a string or a list of strings); raises on any other shape."""
    if isinstance(claim, str):
        values = [claim]
    elif isinstance(claim, list) and len(claim) <= MAX_AUDIENCES:
        values = claim
    else:
        raise InvalidToken("bad_aud")
    if not values or not all(isinstance(v, str) and v for v in values):
        raise InvalidToken("bad_aud")
    return frozenset(values)


def check_audience(audiences: frozenset[str], destination: str, policy: AudiencePolicy) -> None:
    """Raise :class:`InvalidToken` (``wrong_audience``) unless an audience names ``destination``."""
    if audiences.isdisjoint(policy.accepted_at(destination)):
        raise InvalidToken("wrong_audience", f"destination {destination[:200]!r}")
