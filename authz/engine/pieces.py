"""Parts of a prepared bundle that two versions can share, named by a digest of their content.

A new version of a large policy repository usually changes a few policies.
The checking child process answers with only the parts of the new bundle
that the serving process does not already hold; the others are named by
digest and taken from the version it holds
(:mod:`authz.sources.delta`). A part is a :class:`Piece`: a block of
policies (:mod:`authz.engine.policytable`) or a shard of the scope index
(:mod:`authz.engine.slicing`). Pieces are immutable once made, so two
versions — the active one and the one being built — can hold the same piece
without either seeing the other change.

A digest is BLAKE2b (128 bits) over a canonical encoding of the content:
equal digests mean equal content. Equal content that encodes differently
only costs sharing, never correctness.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod

__all__ = ["Piece", "content_digest"]


class Piece(ABC):
    """An immutable part of a prepared bundle; :attr:`digest` names its content."""

    __slots__ = ()

    @property
    @abstractmethod
    def digest(self) -> bytes:
        """The digest of this piece's content (:func:`content_digest`)."""


def content_digest(*parts: bytes) -> bytes:
    """The digest of ``parts`` (each length-prefixed, so no two sequences collide by joining)."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()
