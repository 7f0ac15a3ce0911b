"""uvicorn for a process that owns its own shutdown (several servers in one loop)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import uvicorn

__all__ = ["QuietUvicorn"]


class QuietUvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the caller sets ``should_exit``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
