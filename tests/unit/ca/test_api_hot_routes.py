"""The issuance routes called straight from the ASGI entry answer exactly as FastAPI's routes,
and run on the event loop (``inline``) exactly as on the thread pool."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from ca.api import HotRoutes, create_app
from ca.replicas import DbRateLimiter, LoopRates
from ca.service import Caller, CertificateAuthority
from ca.store.sqlite import SqliteStore
from meshward.spiffe import SpiffeId
from tests.support.ca import in_process_ca, new_csr, register

# (method, path, body): refusals and answers both entry points must give alike.
CASES: list[tuple[str, str, bytes | None]] = [
    ("POST", "/v1/svid/x509", b"not json"),
    ("POST", "/v1/svid/x509", b"[1]"),
    ("POST", "/v1/svid/x509", b"[" * 40 + b"]" * 40),
    ("POST", "/v1/svid/x509", b'{"csr": 1}'),
    ("POST", "/v1/svid/x509", b'{"csr": "x", "token": 5}'),
    ("POST", "/v1/svid/x509", b'{"csr": "-----BEGIN CERTIFICATE REQUEST-----"}'),
    ("POST", "/v1/svid/x509", json.dumps({"csr": "A" * 70_000}).encode()),
    ("POST", "/v1/svid/jwt", b'{"audience": ["x"]}'),
    ("POST", "/v1/agent/svid/x509", b'{"csr": "x"}'),
    ("POST", "/v1/agent/svid/jwt", b"{}"),
    ("GET", "/v1/agent/entries", None),
    ("GET", "/v1/svid/x509", None),  # another method: FastAPI's 405 either way
    ("POST", "/v1/svid/x509/", b"{}"),  # another path: FastAPI's redirect either way
]


async def _call(app: Any, method: str, path: str, body: bytes | None) -> tuple[int, bytes, str]:
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 4567))
    async with httpx.AsyncClient(transport=transport, base_url="https://ca.test") as client:
        resp = await client.request(
            method, path, content=body, headers={"content-type": "application/json"}
        )
    return resp.status_code, resp.content, resp.headers.get("content-type", "")


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return in_process_ca(tmp_path)


@pytest.mark.parametrize("inline", [False, True], ids=["threads", "inline"])
@pytest.mark.parametrize(("method", "path", "body"), CASES)
async def test_same_answer_as_fastapi(
    ca: CertificateAuthority, method: str, path: str, body: bytes | None, inline: bool
) -> None:
    hot = create_app(ca, inline=inline)
    assert isinstance(hot, HotRoutes)
    before = len(ca.store.list_audit(1000))
    direct = await _call(hot, method, path, body)
    after_direct = ca.store.list_audit(1000)[before:]
    routed = await _call(hot.app, method, path, body)  # FastAPI alone
    after_routed = ca.store.list_audit(1000)[before + len(after_direct) :]
    assert direct == routed
    # ... and the same audit rows (a refusal is audited once, by whichever answered).
    key = [(r.action, r.result, r.caller) for r in after_direct]
    assert key == [(r.action, r.result, r.caller) for r in after_routed]
    if method == "POST" and path.endswith(("/x509", "/jwt")):
        assert key and all(r.caller == "10.1.2.3" for r in after_direct)


async def test_an_svid_through_the_direct_route_is_issued_and_audited(
    ca: CertificateAuthority,
) -> None:
    web = SpiffeId.parse("spiffe://example.org/web")
    register(ca, web, "unix:uid:1")
    token = ca.create_join_token(web, 600, Caller(address="cli"))
    request = json.dumps({"csr": new_csr()[0].decode(), "token": token}).encode()
    status, body, kind = await _call(create_app(ca), "POST", "/v1/svid/x509", request)
    assert status == 200 and kind == "application/json"
    answer = json.loads(body)
    assert answer["spiffe_id"] == "spiffe://example.org/web"
    assert set(answer) == {"spiffe_id", "svid", "expires_at"}
    last = ca.store.list_audit(1)[0]
    assert (last.action, last.result, last.method) == ("x509_svid", "ok", "join_token")


def _audit_key(ca: CertificateAuthority, since: int) -> list[tuple[str, str, str, str | None]]:
    return [(r.action, r.result, r.method, r.spiffe_id) for r in ca.store.list_audit(1000)[since:]]


async def test_inline_issuance_answers_and_audits_as_the_thread_pool(
    ca: CertificateAuthority,
) -> None:
    web = SpiffeId.parse("spiffe://example.org/web")
    register(ca, web, "unix:uid:1")
    answers, audits = [], []
    for inline in (False, True):
        before = len(ca.store.list_audit(1000))
        results = []
        for path, body in [
            ("/v1/svid/x509", {"csr": new_csr()[0].decode(), "token": ca.create_join_token(
                web, 600, Caller(address="cli"))}),
            ("/v1/svid/x509", {"csr": new_csr()[0].decode(), "token": "used-or-unknown"}),
            ("/v1/svid/jwt", {"audience": ["db"]}),
            ("/v1/svid/x509", {"csr": "not a csr", "token": "x"}),
        ]:  # fmt: skip
            status, content, _kind = await _call(
                create_app(ca, inline=inline), "POST", path, json.dumps(body).encode()
            )
            answer = json.loads(content)
            # What differs by design between two issuances: the certificate itself.
            results.append((status, sorted(answer), answer.get("spiffe_id"), answer.get("code")))
        answers.append(results)
        audits.append(_audit_key(ca, before + 1))  # after the join token's own row
        # The node's agent record (join token) went in with the audit rows, serial and all.
        record = ca.store.get_agent(web)
        issued = [r for r in ca.store.list_audit(1000)[before:] if r.action == "x509_svid"]
        issued = [r for r in issued if r.result == "ok"]
        assert record is not None and record.attestation == "join_token"
        assert [r.serial for r in issued] == [record.serial]
    assert answers[0] == answers[1]
    assert answers[0][0][:3] == (200, ["expires_at", "spiffe_id", "svid"], str(web))
    assert audits[0] == audits[1] and len(audits[0]) == 4  # each answer audited once


async def test_inline_issuance_with_the_database_locked_is_503_and_recovers(
    tmp_path: Path,
) -> None:
    """A database that cannot be written (locked past the busy timeout) answers 503 on the
    event loop too: no SVID leaves without its audit row; once free, issuance resumes."""
    ca = in_process_ca(tmp_path)
    ca.store.close()
    ca = CertificateAuthority(
        ca.authority, SqliteStore(tmp_path / "ca.db", busy_timeout=0.05), ca.settings, ca.clock
    )
    web = SpiffeId.parse("spiffe://example.org/web")
    register(ca, web, "unix:uid:1")
    app = create_app(ca, inline=True)
    request = json.dumps(
        {"csr": new_csr()[0].decode(), "token": ca.create_join_token(web, 600, Caller())}
    ).encode()
    before = len(ca.store.list_audit(1000))
    other = sqlite3.connect(tmp_path / "ca.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        status, content, _kind = await _call(app, "POST", "/v1/svid/x509", request)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert status == 503
    assert json.loads(content)["code"] == "store_unavailable"
    assert len(ca.store.list_audit(1000)) == before  # nothing issued, nothing half-written
    assert ca.store.get_agent(web) is None  # the node's record went with its audit row
    status, content, _kind = await _call(app, "POST", "/v1/svid/x509", request)
    assert status == 200 and json.loads(content)["spiffe_id"] == str(web)


async def test_shared_rate_buckets_on_the_loop_refuse_as_on_the_thread_pool(
    tmp_path: Path,
) -> None:
    """``ca serve --workers N`` on SQLite: the buckets are in the database, and the loop asks
    for one step's callers together; a caller past its burst gets 429, audited, either way."""
    answers, audits = [], []
    for inline in (False, True):
        base = in_process_ca(tmp_path / str(inline))
        store = base.store
        limiter = DbRateLimiter(store, rate=0.001, burst=2, clock=base.clock)  # type: ignore[arg-type]
        ca = CertificateAuthority(base.authority, store, base.settings, base.clock, limiter=limiter)
        web = SpiffeId.parse("spiffe://example.org/web")
        register(ca, web, "unix:uid:1")
        app = create_app(ca, inline=inline)
        tokens = [ca.create_join_token(web, 600, Caller(address="cli")) for _ in range(3)]
        before = len(ca.store.list_audit(1000))
        bodies = [json.dumps({"csr": new_csr()[0].decode(), "token": t}).encode() for t in tokens]
        results = [await _call(app, "POST", "/v1/svid/x509", b) for b in bodies]
        answers.append([(status, json.loads(body).get("code")) for status, body, _ in results])
        audits.append(_audit_key(ca, before))
    assert answers[0] == answers[1] == [(200, None), (200, None), (429, "rate_limited")]
    assert audits[0] == audits[1]
    assert [a[1] for a in audits[1]] == ["ok", "ok", "rate_limited"]


async def test_concurrent_callers_on_the_loop_share_one_bucket_transaction(
    tmp_path: Path,
) -> None:
    base = in_process_ca(tmp_path)
    limiter = DbRateLimiter(base.store, rate=0.001, burst=3, clock=base.clock)  # type: ignore[arg-type]
    rates = LoopRates(limiter, base.store)  # type: ignore[arg-type]
    got = await asyncio.gather(*(rates.allow(k) for k in ["a", "a", "b", "a", "a"]))
    assert got == [True, True, True, True, False]
    assert rates._batch.flushes == 1
