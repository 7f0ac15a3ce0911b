"""SPIFFE identifiers, validated exactly as the SPIFFE-ID specification says.

A :class:`TrustDomain` or :class:`SpiffeId` cannot hold an invalid value: it is
checked once, when built, and compares equal only to its own kind.

Errors::

    SpiffeError
     ├── InvalidSpiffeId
     └── InvalidBundle      (meshward.spiffe_bundle)
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from meshward.errors import MeshwardError

__all__ = ["CA_SERVER_PATH", "InvalidSpiffeId", "SpiffeError", "SpiffeId", "TrustDomain"]

CA_SERVER_PATH = "/meshward/ca"  # the CA's own SVID path: agents and the PDP check it
SCHEME = "spiffe://"
_TD_CHARS = frozenset(string.ascii_lowercase + string.digits + ".-_")
_PATH_CHARS = frozenset(string.ascii_letters + string.digits + ".-_")
MAX_ID_LENGTH = 2048


class SpiffeError(MeshwardError):
    """Root of the errors raised by the SPIFFE toolkit."""

    code = "spiffe_error"


class InvalidSpiffeId(SpiffeError, ValueError):
    """A string is not a valid SPIFFE ID or trust domain name.

    ``reason`` is a short machine-readable code (for metrics and tests).
    """

    def __init__(self, value: str, reason: str) -> None:
        super().__init__(f"invalid SPIFFE ID {value[:200]!r}: {reason.replace('_', ' ')}")
        self.value = value
        self.reason = reason


def _check_trust_domain(name: str, original: str) -> None:
    if not name:
        raise InvalidSpiffeId(original, "empty_trust_domain")
    if not _TD_CHARS.issuperset(name):
        raise InvalidSpiffeId(original, "bad_trust_domain_char")


def _check_path(path: str, original: str) -> None:
    if not path:
        return
    if not path.startswith("/"):
        raise InvalidSpiffeId(original, "path_not_absolute")
    for segment in path[1:].split("/"):
        if segment == "":
            raise InvalidSpiffeId(original, "empty_segment")
        if segment in (".", ".."):
            raise InvalidSpiffeId(original, "dot_segment")
        if not _PATH_CHARS.issuperset(segment):
            raise InvalidSpiffeId(original, "bad_path_segment_char")


@dataclass(frozen=True, slots=True)
class TrustDomain:
    """A SPIFFE trust domain name such as ``meshward.local``."""

    name: str

    def __post_init__(self) -> None:
        _check_trust_domain(self.name, self.name)

    @classmethod
    def parse(cls, value: str) -> TrustDomain:
        """Accept a bare name or a ``spiffe://name`` ID with no path."""
        if value.startswith(SCHEME):
            sid = SpiffeId.parse(value)
            if sid.path:
                raise InvalidSpiffeId(value, "trust_domain_has_path")
            return sid.trust_domain
        return cls(value)

    @property
    def id(self) -> SpiffeId:
        """The trust domain's own SPIFFE ID, ``spiffe://<name>``."""
        return SpiffeId(self, "")

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class SpiffeId:
    """``spiffe://<trust-domain><path>``; ``path`` is empty or starts with ``/``."""

    trust_domain: TrustDomain
    path: str

    def __post_init__(self) -> None:
        _check_path(self.path, str(self))

    @classmethod
    def parse(cls, value: str) -> SpiffeId:
        if not isinstance(value, str):
            raise InvalidSpiffeId(repr(value), "not_a_string")
        if not value:
            raise InvalidSpiffeId(value, "empty")
        if len(value) > MAX_ID_LENGTH:
            raise InvalidSpiffeId(value, "too_long")
        if not value.startswith(SCHEME):
            # The scheme is case-insensitive in URIs, but the spec requires
            # lowercase "spiffe" in a SPIFFE ID.
            raise InvalidSpiffeId(value, "wrong_scheme")
        rest = value[len(SCHEME) :]
        for char, reason in (("?", "has_query"), ("#", "has_fragment")):
            if char in rest:
                raise InvalidSpiffeId(value, reason)
        slash = rest.find("/")
        td, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
        if "@" in td:
            raise InvalidSpiffeId(value, "has_userinfo")
        if ":" in td:
            raise InvalidSpiffeId(value, "has_port")
        _check_trust_domain(td, value)
        _check_path(path, value)
        return cls(TrustDomain(td), path)

    def member_of(self, trust_domain: TrustDomain) -> bool:
        return self.trust_domain == trust_domain

    def __str__(self) -> str:
        return f"{SCHEME}{self.trust_domain.name}{self.path}"
