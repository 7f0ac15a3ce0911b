"""The checking child's answer as a delta against the version the serving process holds.

A one-policy change to a 10,000-policy repository used to cross from the
checking child to the serving process as the whole prepared bundle (~11 MB),
and unpickling it held the GIL the serving checks need for milliseconds. A
prepared bundle is made of :class:`~authz.engine.pieces.Piece` values —
blocks of policies, shards of the scope index — each named by a digest of
its content. The serving process says, with every request, which pieces it
holds (the digests of the last bundle it built, :func:`pieces_of`); the
child's answer is pickled with every piece the serving process holds
replaced by its digest (:func:`dumps`), and the serving process puts its own
piece back in (:func:`loads`). A one-policy change is then one block of
policies, kilobytes.

There is one encoding: a full answer is the delta against nothing. The held
set is whatever the serving process says in the request, so there is no
shared state to get out of step: a restarted child, a rejected or failed
version, a version built but never activated change nothing. A digest the
serving process cannot resolve (it never should) raises
:class:`~authz.errors.PrepareBaseMismatch`, and the caller asks again for a
full answer. The pieces taken from the held version are immutable, so the
new bundle is built beside the active one without touching it.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Collection, Mapping
from typing import Any

from authz.engine.bundle import BundleData
from authz.engine.pieces import Piece
from authz.errors import PrepareBaseMismatch

__all__ = ["dumps", "loads", "pieces_of"]


class _Writer(pickle.Pickler):
    def __init__(self, file: io.BytesIO, held: Collection[bytes]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._held = held

    def persistent_id(self, obj: Any) -> bytes | None:
        if isinstance(obj, Piece):
            digest = obj.digest
            if digest in self._held:
                return digest
        return None


class _Reader(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, held: Mapping[bytes, Piece]) -> None:
        super().__init__(file)
        self._held = held

    def persistent_load(self, pid: Any) -> Piece:
        piece = self._held.get(pid) if isinstance(pid, bytes) else None
        if piece is None:
            raise PrepareBaseMismatch("the answer names a piece this process does not hold")
        return piece


def dumps(value: Any, held: Collection[bytes]) -> bytes:
    """``value`` pickled, each piece whose digest is in ``held`` sent as its digest only."""
    buffer = io.BytesIO()
    _Writer(buffer, held).dump(value)
    return buffer.getvalue()


def loads(data: bytes | bytearray, held: Mapping[bytes, Piece]) -> Any:
    """What :func:`dumps` pickled, each digest replaced by the piece in ``held``.

    Raises :class:`~authz.errors.PrepareBaseMismatch` for a digest ``held`` lacks.
    """
    return _Reader(io.BytesIO(data), held).load()  # our own child, over a private pipe


def pieces_of(data: BundleData) -> dict[bytes, Piece]:
    """The pieces of a prepared bundle by digest: what a delta against it may name."""
    pieces: list[Piece] = [*data.policies.blocks]
    if data.index is not None:
        pieces.extend(data.index.shards)
    return {piece.digest: piece for piece in pieces}
