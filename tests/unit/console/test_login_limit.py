"""Guessing the console's login token is slow: attempts per client address are limited."""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI

from console.app import ConsoleConfig, create_app
from console.sources import PdpApi
from meshward.clock import FixedClock

TOKEN = b"the-right-login-token"


def _client(app: FastAPI, address: str = "10.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 5000))
    return httpx.AsyncClient(transport=transport, base_url="http://console")


async def _attempt(client: httpx.AsyncClient, token: str) -> int:
    page = (await client.get("/login")).text
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match
    reply = await client.post("/login", data={"csrf": match.group(1), "token": token})
    return reply.status_code


async def test_after_the_burst_even_the_right_token_waits() -> None:
    clock = FixedClock()
    config = ConsoleConfig(PdpApi("http://127.0.0.1:1"), None, TOKEN)
    async with _client(create_app(config, clock)) as client:
        assert [await _attempt(client, f"guess-{i}") for i in range(5)] == [401] * 5
        assert await _attempt(client, TOKEN.decode()) == 429  # refused before comparing
        no_form_token = await client.post("/login", data={"token": TOKEN.decode()})
        assert no_form_token.status_code == 403  # refused before counting
        clock.advance(config.login_refill_seconds)  # one attempt back
        assert await _attempt(client, TOKEN.decode()) == 303
        assert await _attempt(client, "guess") == 429


async def test_the_limit_is_per_client_address() -> None:
    clock = FixedClock()
    app = create_app(ConsoleConfig(PdpApi("http://127.0.0.1:1"), None, TOKEN), clock)
    async with _client(app, "10.0.0.1") as first, _client(app, "10.0.0.2") as second:
        assert [await _attempt(first, "guess") for _ in range(6)][-1] == 429
        assert await _attempt(second, TOKEN.decode()) == 303
