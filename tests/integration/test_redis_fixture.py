from __future__ import annotations

import socket

from tests.support.redis import RedisServer


def _ping(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64)


def test_redis_fixture_runs_a_real_server(redis: RedisServer) -> None:
    assert _ping(redis.port) == b"+PONG\r\n"
    redis.restart()
    assert _ping(redis.port) == b"+PONG\r\n"
