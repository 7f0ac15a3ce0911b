"""One-time join tokens: random, shown once, stored only as a SHA-256 hash.

A token is 32 random bytes (base64url), so a plain SHA-256 is a sound
one-way storage form; redemption is a conditional update in the store, so
a token works once even under concurrent redemption.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Callable

from ca.errors import BadRequest
from ca.store.protocol import JoinToken
from meshward.spiffe import SpiffeId

__all__ = ["PREFIX", "hash_token", "looks_like_join_token", "new_join_token"]

PREFIX = "mwjt."
TOKEN_BYTES = 32
MAX_TTL = dt.timedelta(days=7)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def looks_like_join_token(token: str) -> bool:
    return token.startswith(PREFIX) and len(token) < 128


def new_join_token(
    spiffe_id: SpiffeId,
    now: dt.datetime,
    ttl: dt.timedelta,
    random_bytes: Callable[[int], bytes],
) -> tuple[str, JoinToken]:
    """A fresh token (returned once, to print) and the record the store keeps."""
    if not dt.timedelta(0) < ttl <= MAX_TTL:
        raise BadRequest("join token TTL must be between 1 s and 7 days", code="bad_ttl")
    raw = random_bytes(TOKEN_BYTES)
    if len(raw) != TOKEN_BYTES:
        raise BadRequest("random source returned too few bytes", code="bad_random")
    token = PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    return token, JoinToken(hash_token(token), spiffe_id, now + ttl)
