"""ASGI plumbing shared by the HTTP servers: quiet uvicorn, bounded request bodies."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn
from starlette.requests import Request

__all__ = ["BodyTooLarge", "QuietUvicorn", "read_body"]


class QuietUvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the caller sets ``should_exit``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class BodyTooLarge(ValueError):
    """A request body longer than the endpoint's limit (nothing past it was read)."""


async def read_body(request: Request, limit: int, timeout: float | None = None) -> bytes:
    """The request body, read chunk by chunk and refused once it passes ``limit`` bytes.

    ``Request.body()`` buffers whatever the client sends before anyone can
    look at its size; this stops at the first chunk past the limit (or at a
    ``Content-Length`` that announces one). ``timeout`` (seconds) bounds the
    whole read: ``TimeoutError`` when the body has not arrived by then.
    """
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise BodyTooLarge(f"request body over {limit} bytes")
    size = 0
    chunks: list[bytes] = []
    # asyncio's own timeout: the servers run on asyncio, and anyio's cancel scope
    # cost a tenth of the HTTP overhead of a CA issuance.
    async with asyncio.timeout(timeout):
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"request body over {limit} bytes")
            chunks.append(chunk)
    return b"".join(chunks)
