"""Bounded request bodies: nothing past the limit is read, a slow body times out."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request
from starlette.types import Message

from meshward.asgi import BodyTooLarge, read_body

CHUNK = b"x" * 1024


def _request(
    chunks: int | None, headers: list[tuple[bytes, bytes]] | None = None, stall: bool = False
) -> tuple[Request, list[int]]:
    """A request whose body is ``chunks`` KiB (``None``: never ends); counts the reads."""
    reads = [0]

    async def receive() -> Message:
        reads[0] += 1
        if stall:
            await asyncio.sleep(3600)
        more = chunks is None or reads[0] < chunks
        return {"type": "http.request", "body": CHUNK, "more_body": more}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers or []}
    return Request(scope, receive), reads


async def test_a_body_within_the_limit_is_read_whole() -> None:
    request, _ = _request(3)
    assert await read_body(request, 4096) == CHUNK * 3


async def test_an_endless_body_is_refused_at_the_limit() -> None:
    request, reads = _request(None)
    with pytest.raises(BodyTooLarge):
        await read_body(request, 4096)
    assert reads[0] == 5  # the first chunk past 4 KiB, and not one more


async def test_a_declared_length_over_the_limit_is_refused_unread() -> None:
    request, reads = _request(1, [(b"content-length", b"4097")])
    with pytest.raises(BodyTooLarge):
        await read_body(request, 4096)
    assert reads[0] == 0


async def test_a_body_that_never_arrives_times_out() -> None:
    request, _ = _request(1, stall=True)
    with pytest.raises(TimeoutError):
        await read_body(request, 4096, timeout=0.05)


@pytest.mark.parametrize("declared", [b"9" * 5000, "²".encode(), b"-1"])
async def test_a_strange_content_length_is_never_a_crash(declared: bytes) -> None:
    request, _ = _request(1, [(b"content-length", declared)])
    try:
        body = await read_body(request, 4096)
    except BodyTooLarge:
        return
    assert body == CHUNK
