"""One issuance pipeline for every path that yields an SVID.

Every X.509-SVID and JWT-SVID — attested over the API, renewed, asked for by
a node agent for a delegated entry, or minted by an operator on the CA host —
goes through :meth:`Issuer.x509` or :meth:`Issuer.jwt`:

    rate limit (remote callers) → check the request → attest (the caller's
    function: who may ask, see :mod:`ca.attestation.attestor`) → TTL policy
    (:mod:`ca.entitlement`) → sign (only in the pure core :mod:`ca.issuance`)
    → commit (redeem a token, record a node) → audit and metrics

The audit (:mod:`ca.audit`) wraps the whole pipeline, and every path records
the same metrics: one ``meshward_ca_issuance`` count per attempt (``ok`` or
the error code) and the granted lifetime on success.

A caller that has already asked the limiter (the API on the event loop asks
for the callers of one loop step together, :class:`ca.replicas.LoopRates`)
runs the pipeline inside :func:`rate_decided`: the rate-limit step then uses
that answer — allowed, refused, or the error asking raised — in the same
place, so it is audited and counted the same way.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from ca.attestation.caller import Caller
from ca.audit import Auditor, Outcome
from ca.authority import Authority, SerialSource
from ca.entitlement import grant_ttl
from ca.errors import RateLimited
from ca.issuance import (
    CsrRequest,
    IPAddress,
    IssuedJwt,
    IssuedX509,
    check_audience,
    issue_jwt_svid,
    issue_x509_svid,
    parse_csr,
)
from ca.metrics import CaMetrics
from ca.store.protocol import AgentRecord, Entry
from meshward.clock import Clock
from meshward.ratelimit import Limiter
from meshward.settings import CaSettings
from meshward.spiffe import SpiffeId

__all__ = ["Grant", "Issuer", "rate_decided"]

# The limiter's answer for the action running in this context, when its caller asked already.
_decided: contextvars.ContextVar[bool | BaseException | None] = contextvars.ContextVar(
    "meshward_ca_rate_decided", default=None
)


@contextmanager
def rate_decided(decision: bool | BaseException) -> Iterator[None]:
    """Run the pipeline (in this context) with the rate limiter's answer given in advance."""
    token = _decided.set(decision)
    try:
        yield
    finally:
        _decided.reset(token)


@dataclass(frozen=True)
class Grant:
    """What attestation entitles: an ID, the entries behind it, and the lifetime.

    ``token_hash`` (a join token to redeem) and ``record`` (the node's agent
    record) are for the caller's commit step.
    """

    spiffe_id: SpiffeId
    entries: Sequence[Entry]
    seconds: int
    dns_names: Sequence[str] = ()
    ip_addresses: Sequence[IPAddress] = ()
    token_hash: str | None = None
    record: AgentRecord | None = None


@dataclass
class Issuer:
    """Runs the pipeline; the authority is read under ``lock`` (rotation swaps it)."""

    settings: CaSettings
    clock: Clock
    serials: SerialSource
    metrics: CaMetrics
    auditor: Auditor
    limiter: Limiter | None
    authority: Callable[[], Authority]
    lock: threading.RLock

    # -- TTL policy ----------------------------------------------------------

    def x509_ttl(self, requested: int | None, entries: Sequence[Entry]) -> int:
        s = self.settings
        return grant_ttl(
            requested,
            [e.x509_ttl for e in entries],
            s.x509_svid_ttl,
            s.x509_svid_min_ttl,
            s.x509_svid_max_ttl,
        )

    def x509_ttl_local(self, requested: int | None, entries: Sequence[Entry]) -> int:
        """An operator on the CA host may ask up to the maximum; an entry's TTL still caps it."""
        s = self.settings
        return grant_ttl(
            requested or s.x509_svid_ttl,
            [e.x509_ttl for e in entries],
            s.x509_svid_max_ttl,
            s.x509_svid_min_ttl,
            s.x509_svid_max_ttl,
        )

    def jwt_ttl(self, requested: int | None, entries: Sequence[Entry]) -> int:
        s = self.settings
        return grant_ttl(
            requested,
            [e.jwt_ttl for e in entries],
            s.jwt_svid_ttl,
            s.jwt_svid_min_ttl,
            s.jwt_svid_max_ttl,
        )

    # -- the pipeline ----------------------------------------------------------

    @contextmanager
    def _stage(
        self, kind: str, caller: Caller, outcome: Outcome, rate_limit: bool
    ) -> Iterator[None]:
        def count(result: str) -> None:
            self.metrics.issued.labels(kind, outcome.method, result).inc()
            if result == "ok" and outcome.not_after is not None:
                lifetime = (outcome.not_after - self.clock.now()).total_seconds()
                self.metrics.svid_ttl.labels(kind).observe(lifetime)

        with self.auditor.audited(kind, caller, outcome, on_result=count):
            if rate_limit:
                self._rate_limit(caller)
            yield

    def _rate_limit(self, caller: Caller) -> None:
        decided = _decided.get()
        if isinstance(decided, BaseException):
            raise decided
        if decided is not None:
            allowed = decided
        else:
            allowed = self.limiter is not None and self.limiter.allow(
                str(caller), self.clock.monotonic()
            )
        if not allowed:
            self.metrics.rate_limited.inc()
            raise RateLimited("too many issuance requests from this caller")

    def x509(
        self,
        csr_pem: bytes | str,
        caller: Caller,
        outcome: Outcome,
        attest: Callable[[CsrRequest], Grant],
        commit: Callable[[Grant, IssuedX509], None] | None = None,
        rate_limit: bool = True,
    ) -> IssuedX509:
        """Check the CSR, attest, sign an X.509-SVID, commit; audited and counted."""
        with self._stage("x509_svid", caller, outcome, rate_limit):
            request = parse_csr(csr_pem)
            grant = attest(request)
            names = dict.fromkeys(n for e in grant.entries for n in e.dns_names)
            with self.lock:
                authority = self.authority()
            issued = issue_x509_svid(
                request,
                grant.spiffe_id,
                authority.active,
                authority.chain(),
                self.clock.now(),
                dt.timedelta(seconds=grant.seconds),
                self.serials,
                dns_names=(*names, *grant.dns_names),
                backdate=dt.timedelta(seconds=self.settings.backdate),
                ip_addresses=grant.ip_addresses,
            )
            if commit is not None:
                commit(grant, issued)
            outcome.serial = format(issued.serial, "x")
            outcome.not_after = issued.not_after
            return issued

    def jwt(
        self,
        audience: object,
        caller: Caller,
        outcome: Outcome,
        attest: Callable[[], Grant],
        commit: Callable[[Grant, IssuedJwt], None] | None = None,
        rate_limit: bool = True,
    ) -> IssuedJwt:
        """Check the audience, attest, sign a JWT-SVID, commit; audited and counted."""
        with self._stage("jwt_svid", caller, outcome, rate_limit):
            aud = check_audience(audience)
            grant = attest()
            with self.lock:
                slot = self.authority().active
            issued = issue_jwt_svid(
                grant.spiffe_id, aud, slot, self.clock.now(), dt.timedelta(seconds=grant.seconds)
            )
            if commit is not None:
                commit(grant, issued)
            outcome.not_after = issued.expires_at
            outcome.detail = f"kid={issued.kid}"
            return issued
