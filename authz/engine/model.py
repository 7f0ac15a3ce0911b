"""The request model: what is asked, by whom, and what was decided.

Frozen value objects with no I/O. Adapters build an :class:`AccessRequest`;
the engine returns a :class:`Decision`; adapters map it back to the wire.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

__all__ = [
    "ANONYMOUS",
    "AccessRequest",
    "AuthMethod",
    "Decision",
    "Effect",
    "EntityUid",
    "Identity",
    "InvalidEntityUid",
    "issuer_group",
]

_UID_RE = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*)::"(.*)"\s*$', re.S)


class InvalidEntityUid(ValueError):
    """A string is not a Cedar entity reference of the form ``Type::"id"``."""


@dataclass(frozen=True, slots=True, order=True)
class EntityUid:
    """A Cedar entity reference: ``type`` (may be namespaced) and ``id``."""

    type: str
    id: str

    @classmethod
    def parse(cls, text: str) -> EntityUid:
        """Parse ``Type::"id"`` (with ``\\"`` and ``\\\\`` escapes in the id)."""
        if not isinstance(text, str):
            raise InvalidEntityUid(f'expected a string like Type::"id", got {type(text).__name__}')
        match = _UID_RE.match(text)
        if not match:
            raise InvalidEntityUid(f'expected Type::"id", got {text[:200]!r}')
        raw = match.group(2)
        out: list[str] = []
        i = 0
        while i < len(raw):
            ch = raw[i]
            if ch == "\\" and i + 1 < len(raw):
                out.append(raw[i + 1])
                i += 2
                continue
            if ch == '"':
                raise InvalidEntityUid(f"unescaped quote in entity id: {text[:200]!r}")
            out.append(ch)
            i += 1
        return cls(match.group(1), "".join(out))

    def to_cedar(self) -> dict[str, str]:
        """The JSON form cedarpy takes: ``{"type": ..., "id": ...}``."""
        return {"type": self.type, "id": self.id}

    def __str__(self) -> str:
        escaped = self.id.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.type}::"{escaped}"'


def issuer_group(issuer: str, group: str) -> EntityUid:
    """Group ``group`` of token issuer ``issuer``: ``Group::"<issuer>|<group>"``.

    Groups are scoped by issuer as users are (``User::"<issuer>|<sub>"``), so
    one issuer's tokens can never put a user in another issuer's groups: the
    ``admins`` of the staff IdP are not the ``admins`` of a partner IdP.
    """
    return EntityUid("Group", f"{issuer}|{group}")


class AuthMethod(StrEnum):
    """How the principal was authenticated."""

    NONE = "none"
    MTLS = "mtls"
    JWT_SVID = "jwt-svid"
    OIDC = "oidc"
    ASSERTED = "asserted"  # given directly (decision API, `meshward check`)


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling: the Cedar principal with its parents and attributes.

    ``expires_at`` is when the credential stops being valid (``None`` when it
    never was a credential): nothing derived from it may outlive it.
    """

    principal: EntityUid
    parents: tuple[EntityUid, ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=lambda: _frozen(None))
    method: AuthMethod = AuthMethod.ASSERTED
    expires_at: dt.datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "attributes", _frozen(self.attributes))
        object.__setattr__(self, "parents", tuple(self.parents))

    @property
    def authenticated(self) -> bool:
        return self.method is not AuthMethod.NONE

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable (a bundle's test cases cross to the gate's child process and back).
        return (
            Identity,
            (self.principal, self.parents, dict(self.attributes), self.method, self.expires_at),
        )


ANONYMOUS = Identity(EntityUid("Anonymous", "anonymous"), method=AuthMethod.NONE)


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """One question for the engine: may ``identity`` do ``action`` on ``resource``?

    ``context`` is the Cedar context record (``http``, ``peer``, ``token``,
    ``grpc`` as DESIGN.md describes); it is copied and must not be mutated.
    """

    identity: Identity
    action: EntityUid
    resource: EntityUid
    context: Mapping[str, Any] = field(default_factory=lambda: _frozen(None))

    def __post_init__(self) -> None:
        object.__setattr__(self, "context", _frozen(self.context))

    def __reduce__(self) -> tuple[Any, ...]:
        return (AccessRequest, (self.identity, self.action, self.resource, dict(self.context)))

    @property
    def principal(self) -> EntityUid:
        return self.identity.principal


class Effect(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer: the effect, the policy ids that determined it, and any errors.

    Any error on the way to a decision yields ``Effect.DENY`` (fail closed).
    """

    effect: Effect
    reasons: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    policy_version: str = ""

    @property
    def allowed(self) -> bool:
        return self.effect is Effect.ALLOW

    @classmethod
    def deny(cls, *errors: str, policy_version: str = "") -> Decision:
        return cls(Effect.DENY, (), tuple(errors), policy_version)

    def to_json(self) -> dict[str, Any]:
        """The contract's decision document (``meshward check``, ``/v1/authorize``)."""
        return {
            "decision": self.effect.value,
            "reasons": list(self.reasons),
            "errors": list(self.errors),
        }
