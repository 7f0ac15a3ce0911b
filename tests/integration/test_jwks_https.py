"""OIDC keys from a real HTTPS JWKS endpoint: fetched, cached, refreshed with a rate limit."""

from __future__ import annotations

import datetime as dt
import json
import logging
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from authz.authn.jwks import UrlJwks
from authz.authn.jwt import JwtPolicy, JwtVerifier, OidcIssuer
from authz.authn.trust import TrustBundles
from authz.engine.model import EntityUid
from authz.errors import KeySourceError, UnknownKey
from meshward.clock import FixedClock
from tests.support.certs import TestPki, pem
from tests.support.net import free_port
from tests.support.tokens import SigningKey

ISS = "https://idp.test"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@dataclass
class Idp:
    url: str
    ca_file: Path
    keys: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    fetches: int = 0


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[Idp]:
    pki = TestPki("idp.test")
    leaf = pki.leaf(
        "spiffe://idp.test/jwks",
        not_before=NOW - dt.timedelta(hours=1),
        not_after=NOW + dt.timedelta(hours=1),
        ip_addresses=["127.0.0.1"],  # for the client's hostname check
    )
    (tmp_path / "server.pem").write_text(pem(*pki.chain(leaf)))
    (tmp_path / "server.key").write_text(leaf.key_pem)
    (tmp_path / "ca.pem").write_text(pki.bundle_pem)
    state = Idp(f"https://127.0.0.1:{free_port()}/jwks.json", tmp_path / "ca.pem")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.fetches += 1
            body = json.dumps({"keys": state.keys}).encode()
            self.send_response(state.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    port = int(state.url.split(":")[2].split("/")[0])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _claims() -> dict[str, Any]:
    return {"iss": ISS, "sub": "erin", "aud": "shop", "exp": int(NOW.timestamp()) + 300}


async def test_fetch_refresh_and_rate_limit(idp: Idp) -> None:
    old, new = SigningKey("old", "rsa"), SigningKey("new", "rsa")
    idp.keys = [old.jwk]
    clock = FixedClock(NOW)
    source = UrlJwks(idp.url, clock, min_refresh_seconds=30, ca_file=idp.ca_file)
    assert await source.refresh()
    verifier = JwtVerifier(
        JwtPolicy(),
        TrustBundles(),
        [OidcIssuer(ISS, frozenset({"shop"}), source, frozenset({"RS256"}))],
    )
    assert (await verifier.authenticate(old.sign(_claims()), NOW)).identity.principal == EntityUid(
        "User", f"{ISS}|erin"
    )
    # The issuer rotates; tokens with the new kid arrive before 30 s have passed.
    idp.keys = [old.jwk, new.jwk]
    clock.advance(5)
    for _ in range(5):
        with pytest.raises(UnknownKey):
            await verifier.authenticate(new.sign(_claims()), NOW)
    assert idp.fetches == 1  # rate-limited: no fetch per unknown kid
    clock.advance(30)
    assert (await verifier.authenticate(new.sign(_claims()), NOW)).identity.method.value == "oidc"
    assert idp.fetches == 2


async def test_failed_fetch_keeps_old_keys(idp: Idp) -> None:
    key = SigningKey("k", "rsa")
    idp.keys = [key.jwk]
    clock = FixedClock(NOW)
    source = UrlJwks(idp.url, clock, min_refresh_seconds=0, ca_file=idp.ca_file)
    assert await source.refresh()
    idp.status = 500
    assert not await source.refresh()
    assert source.current().get("k") is not None


async def test_untrusted_server_certificate_is_a_failed_fetch(idp: Idp) -> None:
    source = UrlJwks(idp.url, FixedClock(NOW), min_refresh_seconds=0)  # system CAs
    assert not await source.refresh()
    assert idp.fetches == 0
    assert source.current().keys == {}


def test_plain_http_is_refused() -> None:
    with pytest.raises(KeySourceError) as info:
        UrlJwks("http://idp.test/jwks.json", FixedClock(NOW))
    assert info.value.code == "jwks_url_not_https"


async def test_a_password_in_the_jwks_url_never_reaches_errors_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(KeySourceError) as info:
        UrlJwks("http://idp:s3cret@idp.test/jwks.json", FixedClock(NOW))
    assert "s3cret" not in str(info.value)
    port = free_port()  # nothing listens: the fetch fails and is logged
    source = UrlJwks(f"https://idp:s3cret@127.0.0.1:{port}/jwks?token=t0k", FixedClock(NOW), 0)
    with caplog.at_level(logging.DEBUG):
        assert not await source.refresh()
    logged = " ".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    assert "jwks_fetch_failed" in logged
    assert "s3cret" not in logged and "t0k" not in logged
