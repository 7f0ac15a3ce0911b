"""One published :class:`~agent.model.Snapshot` and the streams that follow it.

The agent's renewal task is the only writer; every server stream is a reader
that wakes on each new version. Readers always see whole snapshots.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from agent.model import Bundle, HeldSvid, Snapshot

__all__ = ["SnapshotHub"]


class SnapshotHub:
    """Holds the current snapshot; :meth:`watch` yields it and then every change."""

    def __init__(self) -> None:
        self._current = Snapshot(version=0, bundle=None)
        self._changed = asyncio.Event()

    @property
    def current(self) -> Snapshot:
        return self._current

    def publish(
        self, bundle: Bundle | None, svids: Iterable[HeldSvid], partial: bool = False
    ) -> Snapshot:
        """Replace the snapshot (version + 1) and wake every watcher."""
        self._current = Snapshot(self._current.version + 1, bundle, tuple(svids), partial)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return self._current

    async def wait_newer(self, version: int) -> Snapshot:
        """Return the first snapshot whose version is above ``version``."""
        while self._current.version <= version:
            await self._changed.wait()
        return self._current

    async def watch(self) -> AsyncIterator[Snapshot]:
        """The current snapshot, then each newer one (intermediate ones may be skipped)."""
        snapshot = self._current
        yield snapshot
        while True:
            snapshot = await self.wait_newer(snapshot.version)
            yield snapshot
