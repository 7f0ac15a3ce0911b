"""The running CA: an :class:`Authority`, a store, a clock — and the rules.

This is the one place that decides who gets which identity. It is shared by
the HTTPS API and the ``meshward ca`` commands; the pure pieces it composes
are :mod:`ca.issuance`, :mod:`ca.authority` and :mod:`ca.attestation`.
Every issuance and admin action, successful or not, is audited: a row in the
store and a JSON log line (serial, SPIFFE ID, notAfter, method, caller),
never a key or a token.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca.attestation.join_token import hash_token, looks_like_join_token, new_join_token
from ca.attestation.k8s import K8sAttestor
from ca.authority import Authority, SerialSource, build_root, make_slot
from ca.entitlement import entry_is_live, grant_ttl
from ca.errors import (
    AttestationFailed,
    BadRequest,
    CaError,
    Conflict,
    NotEntitled,
    NotFound,
    RateLimited,
)
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
from ca.keystore import KeyKind, PrivateKey, generate_key
from ca.metrics import CaMetrics
from ca.ratelimit import Limiter, RateLimiter
from ca.state import AuthorityHome
from ca.store.protocol import AgentRecord, AuditRecord, CaStore, Entry
from meshward.clock import Clock
from meshward.selectors import (
    AGENT_SELECTOR_PREFIX,
    KNOWN_SELECTORS,
    InvalidSelector,
    node_selector,
    parse_selectors,
)
from meshward.settings import CaSettings
from meshward.spiffe import CA_SERVER_PATH, SpiffeId, TrustDomain

__all__ = [
    "ADMIN_PATH",
    "AGENT_SELECTOR_PREFIX",
    "CertificateAuthority",
    "Caller",
    "SERVER_PATH",
    "init_authority",
    "node_selector",
    "random_serial",
]

log = logging.getLogger("meshward.ca")
audit_log = logging.getLogger("meshward.ca.audit")

ADMIN_PATH = "/meshward/admin"
SERVER_PATH = CA_SERVER_PATH

NODE_METHODS = frozenset({"join_token", "k8s"})  # attestations that make an agent record


def random_serial() -> int:
    """A positive serial number with 128 random bits (>= 64 as the spec asks)."""
    return secrets.randbits(127) | (1 << 127)


@dataclass(frozen=True)
class Caller:
    """Who is asking: the verified mTLS peer, if any, and the network address."""

    peer_id: SpiffeId | None = None
    address: str = "local"

    def __str__(self) -> str:
        return str(self.peer_id) if self.peer_id else self.address


@dataclass
class _Outcome:
    spiffe_id: str | None = None
    serial: str | None = None
    not_after: dt.datetime | None = None
    method: str = "none"
    detail: str | None = None


def init_authority(
    trust_domain: TrustDomain,
    settings: CaSettings,
    now: dt.datetime,
    serials: SerialSource,
    upstream: tuple[x509.Certificate, PrivateKey] | None = None,
    label: str = "",
) -> Authority:
    """A new authority: a root (or the upstream CA) and the first signing slot.

    ``label`` names a replica in its signing CAs' subjects (shared database).
    """
    kind: KeyKind = settings.key_type
    if upstream is None:
        root_key = generate_key(kind)
        root_cert = build_root(
            trust_domain, root_key, now, dt.timedelta(seconds=settings.root_ttl), serials()
        )
    else:
        root_cert, root_key = upstream
        _check_upstream(root_cert, root_key, now)
    slot = make_slot(
        1,
        trust_domain,
        root_cert,
        root_key,
        generate_key(kind),
        generate_key(settings.jwt_key_type),
        now,
        dt.timedelta(seconds=settings.ca_ttl),
        serials(),
        label,
    )
    return Authority(
        trust_domain, root_cert, root_key, slot, refresh_hint=settings.refresh_hint, label=label
    )


def _check_upstream(cert: x509.Certificate, key: PrivateKey, now: dt.datetime) -> None:
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
        raise BadRequest("the upstream key does not match its certificate", code="bad_upstream")
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca or (bc.path_length is not None and bc.path_length < 1):
        raise BadRequest(
            "the upstream certificate must be a CA allowing one more level", code="bad_upstream"
        )
    if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
        raise BadRequest("the upstream certificate is not valid now", code="bad_upstream")


@dataclass
class CertificateAuthority:
    """The CA at run time. Thread-safe; the API calls it from worker threads."""

    authority: Authority
    store: CaStore
    settings: CaSettings
    clock: Clock
    serials: SerialSource = random_serial
    random_bytes: Callable[[int], bytes] = os.urandom
    files: AuthorityHome | None = None
    passphrase: bytes | None = field(default=None, repr=False)
    k8s: K8sAttestor | None = None
    metrics: CaMetrics = field(default_factory=CaMetrics)
    limiter: Limiter | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _loaded_mtime: float = 0.0

    def __post_init__(self) -> None:
        if self.limiter is None:
            self.limiter = RateLimiter(self.settings.rate_per_second, self.settings.rate_burst)
        if self.files is not None:
            self._loaded_mtime = self.files.mtime()
        self._publish_gauges()

    @property
    def trust_domain(self) -> TrustDomain:
        return self.authority.trust_domain

    # -- audit --------------------------------------------------------------

    def _audit(self, action: str, caller: Caller, result: str, outcome: _Outcome) -> None:
        record = AuditRecord(
            time=self.clock.now(),
            action=action,
            method=outcome.method,
            caller=str(caller),
            result=result,
            spiffe_id=outcome.spiffe_id,
            serial=outcome.serial,
            not_after=outcome.not_after,
            detail=outcome.detail,
        )
        try:
            self.store.append_audit(record)
        finally:
            audit_log.info("audit %s %s", action, result, extra={"fields": record.to_json()})

    @contextmanager
    def _audited(self, action: str, caller: Caller, outcome: _Outcome) -> Iterator[None]:
        try:
            yield
        except CaError as exc:
            outcome.detail = outcome.detail or getattr(exc, "reason", None)
            self._audit(action, caller, exc.code, outcome)
            exc.audited = True
            if action in ("x509_svid", "jwt_svid"):
                self.metrics.issued.labels(action, outcome.method, exc.code).inc()
            raise
        except Exception:
            self._audit(action, caller, "internal_error", outcome)
            raise
        self._audit(action, caller, "ok", outcome)

    def audit_refusal(self, action: str, caller: Caller, exc: CaError) -> None:
        """Audit a request refused before it reached the CA (bad body, not admin)."""
        self._audit(action, caller, exc.code, _Outcome(detail=getattr(exc, "reason", None)))
        exc.audited = True

    # -- identity -----------------------------------------------------------

    def _rate_limit(self, caller: Caller) -> None:
        if self.limiter is None or not self.limiter.allow(str(caller), self.clock.monotonic()):
            self.metrics.rate_limited.inc()
            raise RateLimited("too many issuance requests from this caller")

    def _resolve(
        self, token: str | None, caller: Caller, requested: SpiffeId | None, outcome: _Outcome
    ) -> tuple[SpiffeId, list[Entry], str | None]:
        """The SPIFFE ID the caller proved, its entries, and a join token hash to redeem."""
        now = self.clock.now()
        if token:
            if looks_like_join_token(token):
                outcome.method = "join_token"
                token_hash = hash_token(token)
                record = self.store.get_token(token_hash)
                if record is None or record.used_at is not None or now >= record.expires_at:
                    raise AttestationFailed("join token unknown, used or expired", code="bad_token")
                outcome.spiffe_id = str(record.spiffe_id)
                return record.spiffe_id, self.store.entries_for(record.spiffe_id), token_hash
            if self.k8s is None:
                raise AttestationFailed("unrecognised token", code="bad_token")
            outcome.method = "k8s"
            selectors = self.k8s.attest(token, now)
            matched = [e for e in self.store.list_entries() if e.matches(selectors)]
            if requested is not None:
                matched = [e for e in matched if e.spiffe_id == requested]
            ids = {e.spiffe_id for e in matched}
            if len(ids) != 1:
                outcome.detail = ",".join(sorted(selectors))
                raise NotEntitled(
                    "no single registration entry matches the attested selectors",
                    code="no_matching_entry",
                )
            return matched[0].spiffe_id, matched, None
        if caller.peer_id is not None:
            outcome.method = "renewal"
            outcome.spiffe_id = str(caller.peer_id)
            if not caller.peer_id.member_of(self.trust_domain):
                raise NotEntitled("peer is from another trust domain", code="foreign_trust_domain")
            return caller.peer_id, self.store.entries_for(caller.peer_id), None
        raise AttestationFailed("no token and no client certificate", code="no_credential")

    def _live(self, entries: Sequence[Entry]) -> list[Entry]:
        return [e for e in entries if entry_is_live(e, self.store.get_agent)]

    def _entitled(
        self, spiffe_id: SpiffeId, entries: Sequence[Entry], method: str, jwt: bool
    ) -> tuple[list[Entry], AgentRecord | None]:
        """What stands behind an issuance: live entries and/or a node's agent record.

        Refused: an evicted node (``agent_evicted``); an ID with no live entry
        and no agent record (``no_entry``; a JWT-SVID always needs an entry);
        an admin X.509-SVID, which only ``ca admin login`` issues
        (``admin_needs_login``).
        """
        record = self.store.get_agent(spiffe_id)
        if record is not None and record.evicted:
            raise NotEntitled("this node has been evicted", code="agent_evicted")
        live = self._live(entries)
        if not jwt:
            self._check_not_admin(spiffe_id)
        if live:
            return live, record
        if not jwt:
            if record is not None or method == "join_token":
                return [], record
            if method == "renewal" and self._delegated_to(spiffe_id):
                return [], None  # a node attested before agent records: adopted below
        raise NotEntitled("no live registration entry for this SPIFFE ID", code="no_entry")

    def _delegated_to(self, node_id: SpiffeId) -> bool:
        selector = node_selector(node_id)
        return bool(self._live([e for e in self.store.list_entries() if selector in e.selectors]))

    def _record_node(
        self,
        spiffe_id: SpiffeId,
        method: str,
        record: AgentRecord | None,
        serial: str | None,
        adopt: bool = False,
    ) -> None:
        """Keep the agent record of a node current (attestation, renewal, adoption)."""
        if record is None and method not in NODE_METHODS and not adopt:
            return  # a workload renewing on its entry: no agent record
        now = self.clock.now()
        if method in NODE_METHODS:
            attestation = method
        else:
            attestation = record.attestation if record is not None else "adopted"
        self.store.record_agent(AgentRecord(spiffe_id, attestation, now, now, serial))

    def _check_not_admin(self, spiffe_id: SpiffeId) -> None:
        """An admin X.509-SVID comes only from ``ca admin login`` (the passphrase, on the host).

        Whatever else stands behind the ID — a join token, a Kubernetes token
        matching another entry of the same ID, an entry delegated to a node,
        a renewal — is refused, or one of those would be a way to admin.
        """
        if any(e.admin for e in self.store.entries_for(spiffe_id)):
            raise NotEntitled(
                "admin SVIDs come only from `meshward ca admin login`", code="admin_needs_login"
            )

    def _check_not_reserved(self, spiffe_id: SpiffeId) -> None:
        """The CA's own server ID is never issued to anyone else (agents pin it)."""
        if spiffe_id == SpiffeId(self.trust_domain, SERVER_PATH):
            raise NotEntitled("this SPIFFE ID is reserved for the CA", code="reserved_id")

    def _x509_ttl(self, requested: int | None, entries: Sequence[Entry]) -> int:
        s = self.settings
        return grant_ttl(
            requested,
            [e.x509_ttl for e in entries],
            s.x509_svid_ttl,
            s.x509_svid_min_ttl,
            s.x509_svid_max_ttl,
        )

    def _jwt_ttl(self, requested: int | None, entries: Sequence[Entry]) -> int:
        s = self.settings
        return grant_ttl(
            requested,
            [e.jwt_ttl for e in entries],
            s.jwt_svid_ttl,
            s.jwt_svid_min_ttl,
            s.jwt_svid_max_ttl,
        )

    # -- issuance -----------------------------------------------------------

    def issue_x509(
        self,
        csr_pem: bytes | str,
        token: str | None,
        caller: Caller,
        ttl: int | None = None,
    ) -> IssuedX509:
        """Attest the caller, then sign an X.509-SVID for the CSR."""
        outcome = _Outcome()
        with self._audited("x509_svid", caller, outcome):
            self._rate_limit(caller)
            request = parse_csr(csr_pem)
            spiffe_id, entries, token_hash = self._resolve(
                token, caller, request.requested_id, outcome
            )
            outcome.spiffe_id = str(spiffe_id)
            self._check_not_reserved(spiffe_id)
            live, record = self._entitled(spiffe_id, entries, outcome.method, jwt=False)
            issued = self._sign_x509(request, spiffe_id, live, self._x509_ttl(ttl, live))
            if token_hash is not None and not self.store.redeem_token(token_hash, self.clock.now()):
                raise AttestationFailed("join token already used", code="bad_token")
            # Renewing with neither a live entry nor a record passed _entitled only as a node
            # that attested before agent records existed: adopt it.
            adopt = record is None and not live and outcome.method == "renewal"
            serial = format(issued.serial, "x")
            self._record_node(spiffe_id, outcome.method, record, serial, adopt)
            outcome.serial = format(issued.serial, "x")
            outcome.not_after = issued.not_after
            self.metrics.issued.labels("x509_svid", outcome.method, "ok").inc()
            self.metrics.svid_ttl.labels("x509_svid").observe(
                (issued.not_after - self.clock.now()).total_seconds()
            )
            return issued

    def _sign_x509(
        self,
        request: CsrRequest,
        spiffe_id: SpiffeId,
        entries: Sequence[Entry],
        seconds: int,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[IPAddress] = (),
    ) -> IssuedX509:
        s = self.settings
        names = dict.fromkeys(n for e in entries for n in e.dns_names)
        with self._lock:
            authority = self.authority
        return issue_x509_svid(
            request,
            spiffe_id,
            authority.active,
            authority.chain(),
            self.clock.now(),
            dt.timedelta(seconds=seconds),
            self.serials,
            dns_names=(*names, *dns_names),
            backdate=dt.timedelta(seconds=s.backdate),
            ip_addresses=ip_addresses,
        )

    def issue_x509_local(
        self,
        spiffe_id: SpiffeId,
        csr_pem: bytes,
        ttl: int | None,
        method: str = "cli",
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[IPAddress] = (),
    ) -> IssuedX509:
        """Issue for an operator on the CA host (``meshward ca issue``), audited."""
        outcome = _Outcome(spiffe_id=str(spiffe_id), method=method)
        with self._audited("x509_svid", Caller(address="local"), outcome):
            request = parse_csr(csr_pem)
            if method != "server":
                self._check_not_reserved(spiffe_id)
            entries = self._live(self.store.entries_for(spiffe_id))
            s = self.settings
            # An operator on the CA host may ask up to the maximum; an entry's TTL still caps it.
            limits = [e.x509_ttl for e in entries]
            seconds = grant_ttl(
                ttl or s.x509_svid_ttl, limits, s.x509_svid_max_ttl, s.x509_svid_min_ttl,
                s.x509_svid_max_ttl,
            )  # fmt: skip
            issued = self._sign_x509(request, spiffe_id, entries, seconds, dns_names, ip_addresses)
            outcome.serial = format(issued.serial, "x")
            outcome.not_after = issued.not_after
            return issued

    def issue_jwt_local(
        self, spiffe_id: SpiffeId, audience: Sequence[str], ttl: int | None
    ) -> IssuedJwt:
        """A JWT-SVID for an operator on the CA host (``meshward ca jwt mint``), audited."""
        outcome = _Outcome(spiffe_id=str(spiffe_id), method="cli")
        with self._audited("jwt_svid", Caller(address="local"), outcome):
            audience = check_audience(audience)
            if not spiffe_id.member_of(self.trust_domain):
                raise BadRequest("the SPIFFE ID is not in this trust domain", code="foreign_id")
            self._check_not_reserved(spiffe_id)
            seconds = self._jwt_ttl(ttl, self._live(self.store.entries_for(spiffe_id)))
            with self._lock:
                slot = self.authority.active
            issued = issue_jwt_svid(
                spiffe_id, audience, slot, self.clock.now(), dt.timedelta(seconds=seconds)
            )
            outcome.not_after = issued.expires_at
            outcome.detail = f"kid={issued.kid}"
            return issued

    def issue_jwt(
        self, audience: object, token: str | None, caller: Caller, ttl: int | None = None
    ) -> IssuedJwt:
        """Attest the caller, then sign a JWT-SVID for ``audience`` (checked here: wire input)."""
        outcome = _Outcome()
        with self._audited("jwt_svid", caller, outcome):
            self._rate_limit(caller)
            aud = check_audience(audience)
            spiffe_id, entries, token_hash = self._resolve(token, caller, None, outcome)
            outcome.spiffe_id = str(spiffe_id)
            self._check_not_reserved(spiffe_id)
            live, _record = self._entitled(spiffe_id, entries, outcome.method, jwt=True)
            seconds = self._jwt_ttl(ttl, live)
            with self._lock:
                slot = self.authority.active
            issued = issue_jwt_svid(
                spiffe_id, aud, slot, self.clock.now(), dt.timedelta(seconds=seconds)
            )
            if token_hash is not None and not self.store.redeem_token(token_hash, self.clock.now()):
                raise AttestationFailed("join token already used", code="bad_token")
            outcome.not_after = issued.expires_at
            outcome.detail = f"kid={issued.kid}"
            self.metrics.issued.labels("jwt_svid", outcome.method, "ok").inc()
            self.metrics.svid_ttl.labels("jwt_svid").observe(
                (issued.expires_at - self.clock.now()).total_seconds()
            )
            return issued

    # -- node agents --------------------------------------------------------

    def _agent_node(self, caller: Caller, sync: bool = False) -> SpiffeId:
        """The calling node, refused when evicted or unknown (``/v1/agent/*``).

        ``sync`` (the agent listing its entries, once per sync interval) also
        moves the record's ``last_seen``, so ``ca agent list`` shows live nodes.
        """
        if caller.peer_id is None:
            raise AttestationFailed("agent calls need the node's SVID", code="no_credential")
        record = self.store.get_agent(caller.peer_id)
        if record is not None and record.evicted:
            raise NotEntitled("this node has been evicted", code="agent_evicted")
        if record is None:
            if not self._delegated_to(caller.peer_id):
                raise NotEntitled("no agent record for this node", code="unknown_agent")
            self._record_node(caller.peer_id, "renewal", None, None, adopt=True)
        elif sync:
            self.store.record_agent(replace(record, last_seen=self.clock.now()))
        return caller.peer_id

    def _agent_entry(self, entry_id: object, caller: Caller, outcome: _Outcome) -> Entry:
        outcome.method = "agent"
        node = self._agent_node(caller)
        if not isinstance(entry_id, str) or not entry_id:
            raise BadRequest("entry_id must be a string", code="bad_entry_id")
        entry = self.store.get_entry(entry_id)
        if entry is None or node_selector(node) not in entry.selectors:
            outcome.detail = f"entry={entry_id[:64]}"
            raise NotEntitled("the entry is not delegated to this node", code="not_delegated")
        outcome.spiffe_id = str(entry.spiffe_id)
        self._check_not_reserved(entry.spiffe_id)
        return entry

    def agent_entries(self, caller: Caller) -> list[Entry]:
        """The entries delegated to the calling node (selector ``agent:id:<node ID>``)."""
        selector = node_selector(self._agent_node(caller, sync=True))
        return [e for e in self.store.list_entries() if selector in e.selectors]

    def agent_issue_x509(self, csr_pem: str, entry_id: object, caller: Caller) -> IssuedX509:
        """Sign for an entry delegated to the calling node (the node's agent attested it)."""
        outcome = _Outcome(method="agent")
        with self._audited("x509_svid", caller, outcome):
            self._rate_limit(caller)
            request = parse_csr(csr_pem)
            entry = self._agent_entry(entry_id, caller, outcome)
            self._check_not_admin(entry.spiffe_id)
            issued = self._sign_x509(
                request, entry.spiffe_id, [entry], self._x509_ttl(None, [entry])
            )
            outcome.serial = format(issued.serial, "x")
            outcome.not_after = issued.not_after
            self.metrics.issued.labels("x509_svid", "agent", "ok").inc()
            self.metrics.svid_ttl.labels("x509_svid").observe(
                (issued.not_after - self.clock.now()).total_seconds()
            )
            return issued

    def agent_issue_jwt(self, entry_id: object, audience: object, caller: Caller) -> IssuedJwt:
        outcome = _Outcome(method="agent")
        with self._audited("jwt_svid", caller, outcome):
            self._rate_limit(caller)
            aud = check_audience(audience)
            entry = self._agent_entry(entry_id, caller, outcome)
            seconds = self._jwt_ttl(None, [entry])
            with self._lock:
                slot = self.authority.active
            issued = issue_jwt_svid(
                entry.spiffe_id, aud, slot, self.clock.now(), dt.timedelta(seconds=seconds)
            )
            outcome.not_after = issued.expires_at
            outcome.detail = f"kid={issued.kid}"
            self.metrics.issued.labels("jwt_svid", "agent", "ok").inc()
            return issued

    # -- admin --------------------------------------------------------------

    def require_admin(self, caller: Caller) -> None:
        if caller.peer_id is None:
            raise AttestationFailed("admin calls need a client certificate", code="no_credential")
        if not any(e.admin for e in self.store.entries_for(caller.peer_id)):
            raise NotEntitled("caller is not an admin", code="not_admin")

    def list_entries(self, caller: Caller) -> list[Entry]:
        outcome = _Outcome(method="admin")
        with self._audited("entry_list", caller, outcome):
            entries = self.store.list_entries()
            outcome.detail = f"count={len(entries)}"
            return entries

    def add_entry(self, entry: Entry, caller: Caller) -> Entry:
        outcome = _Outcome(spiffe_id=str(entry.spiffe_id), method="admin", detail=entry.id)
        with self._audited("entry_add", caller, outcome):
            if not entry.spiffe_id.member_of(self.trust_domain):
                raise BadRequest("the SPIFFE ID is not in this trust domain", code="foreign_id")
            self._check_not_reserved(entry.spiffe_id)
            self._check_entry(entry)
            self.store.add_entry(entry)
        return entry

    def _check_entry(self, entry: Entry) -> None:
        try:
            parse_selectors(entry.selectors)
        except InvalidSelector as exc:
            message = str(exc)
            if exc.reason == "unknown_kind":
                known = ", ".join(sorted(f"{t}:{n}:" for t, n in KNOWN_SELECTORS))
                message += f"; known types: {known}"
            raise BadRequest(message, code="bad_selectors") from exc
        s = self.settings
        for value, minimum, maximum, name in (
            (entry.x509_ttl, s.x509_svid_min_ttl, s.x509_svid_max_ttl, "x509_ttl"),
            (entry.jwt_ttl, s.jwt_svid_min_ttl, s.jwt_svid_max_ttl, "jwt_ttl"),
        ):
            if value is not None and value < minimum:
                raise BadRequest(
                    f"{name} must be at least {minimum} seconds (the CA's minimum)",
                    code="ttl_too_short",
                )
            if value is not None and value > maximum:
                raise BadRequest(f"{name} must be at most {maximum} seconds", code="ttl_too_long")

    def update_entry(self, entry: Entry, caller: Caller) -> Entry:
        """Replace the entry with ``entry.id`` (same checks as :meth:`add_entry`)."""
        outcome = _Outcome(spiffe_id=str(entry.spiffe_id), method="admin", detail=entry.id)
        with self._audited("entry_update", caller, outcome):
            if not entry.spiffe_id.member_of(self.trust_domain):
                raise BadRequest("the SPIFFE ID is not in this trust domain", code="foreign_id")
            self._check_not_reserved(entry.spiffe_id)
            self._check_entry(entry)
            if self.store.get_entry(entry.id) is None or not self.store.remove_entry(entry.id):
                raise NotFound(f"no entry {entry.id}")
            self.store.add_entry(entry)
        return entry

    def revoke_join_token(self, token_hash: str, caller: Caller) -> None:
        """Make an unused join token unusable (it counts as used from now on)."""
        outcome = _Outcome(method="admin", detail=token_hash[:16])
        with self._audited("token_revoke", caller, outcome):
            token = self.store.get_token(token_hash)
            if token is None:
                raise NotFound("no such join token")
            outcome.spiffe_id = str(token.spiffe_id)
            if not self.store.redeem_token(token_hash, self.clock.now()):
                raise BadRequest("the join token is already used or expired", code="token_spent")

    def new_entry_id(self) -> str:
        return self.random_bytes(8).hex()

    def remove_entry(self, entry_id: str, caller: Caller) -> None:
        outcome = _Outcome(method="admin", detail=entry_id)
        with self._audited("entry_remove", caller, outcome):
            entry = self.store.get_entry(entry_id)
            if entry is None or not self.store.remove_entry(entry_id):
                raise NotFound(f"no entry {entry_id}")
            outcome.spiffe_id = str(entry.spiffe_id)
            # The ID's last entry is gone: if it also attested as a node (a join token for a
            # workload's ID), that record must not keep it renewing. Deleting revokes.
            record = self.store.get_agent(entry.spiffe_id)
            if (
                record is not None
                and not record.evicted
                and not self.store.entries_for(entry.spiffe_id)
                and self.store.evict_agent(entry.spiffe_id)
            ):
                outcome.detail = f"{entry_id} agent_evicted"

    def list_agents(self, caller: Caller) -> list[AgentRecord]:
        outcome = _Outcome(method="admin")
        with self._audited("agent_list", caller, outcome):
            agents = self.store.list_agents()
            outcome.detail = f"count={len(agents)}"
            return agents

    def get_agent(self, spiffe_id: SpiffeId, caller: Caller) -> AgentRecord:
        outcome = _Outcome(spiffe_id=str(spiffe_id), method="admin")
        with self._audited("agent_show", caller, outcome):
            record = self.store.get_agent(spiffe_id)
            if record is None:
                raise NotFound(f"no agent {spiffe_id}")
            return record

    def evict_agent(self, spiffe_id: SpiffeId, caller: Caller) -> AgentRecord:
        """Evict a node: from now on it renews nothing and gets no SVID for its entries."""
        outcome = _Outcome(spiffe_id=str(spiffe_id), method="admin")
        with self._audited("agent_evict", caller, outcome):
            if not self.store.evict_agent(spiffe_id):
                raise NotFound(f"no agent {spiffe_id}")
            record = self.store.get_agent(spiffe_id)
            if record is None:
                raise NotFound(f"no agent {spiffe_id}")
            outcome.serial = record.serial
            return record

    def create_join_token(self, spiffe_id: SpiffeId, ttl: int | None, caller: Caller) -> str:
        outcome = _Outcome(spiffe_id=str(spiffe_id), method="admin")
        with self._audited("token_create", caller, outcome):
            if not spiffe_id.member_of(self.trust_domain):
                raise BadRequest("the SPIFFE ID is not in this trust domain", code="foreign_id")
            self._check_not_reserved(spiffe_id)
            token, record = new_join_token(
                spiffe_id,
                self.clock.now(),
                dt.timedelta(seconds=ttl or self.settings.join_token_ttl),
                self.random_bytes,
            )
            self.store.add_token(record)
            outcome.not_after = record.expires_at
            return token

    # -- rotation -----------------------------------------------------------

    def _save(self, authority: Authority) -> None:
        if self.files is not None and self.passphrase is not None:
            authority = self.files.save(authority, self.passphrase)
            self._loaded_mtime = self.files.mtime()
        self.authority = authority
        self._publish_gauges()

    def _publish_gauges(self) -> None:
        self.metrics.signing_ca_not_after.set(self.authority.active.not_after.timestamp())
        self.metrics.bundle_sequence.set(self.authority.sequence)

    @contextmanager
    def _rotation_lease(self) -> Iterator[bool]:
        """Hold the rotation lease (other processes/replicas on the same state or database)."""
        if self.files is None:
            yield True
            return
        with self.files.lease(self.clock.now()) as held:
            if held:
                self.reload_if_changed()  # start from what the previous holder did
            yield held

    def _rotate_by_hand(self, step: Callable[[Caller], Authority], caller: Caller) -> Authority:
        with self._lock, self._rotation_lease() as held:
            if not held:
                raise Conflict("another process is rotating; try again", code="rotation_busy")
            return step(caller)

    def rotate_prepare(self, caller: Caller) -> Authority:
        return self._rotate_by_hand(self._rotate_prepare, caller)

    def rotate_activate(self, caller: Caller) -> Authority:
        return self._rotate_by_hand(self._rotate_activate, caller)

    def _rotate_prepare(self, caller: Caller) -> Authority:
        outcome = _Outcome(method="admin")
        with self._audited("rotate_prepare", caller, outcome), self._lock:
            current = self.authority
            next_id = max(s.id for s in current.slots) + 1
            slot = make_slot(
                next_id,
                current.trust_domain,
                current.root_cert,
                current.root_key,
                generate_key(self.settings.key_type),
                generate_key(self.settings.jwt_key_type),
                self.clock.now(),
                dt.timedelta(seconds=self.settings.ca_ttl),
                self.serials(),
                current.label,
            )
            self._save(current.prepare(slot))
            outcome.detail = f"slot={next_id} sequence={self.authority.sequence}"
            outcome.not_after = slot.not_after
            return self.authority

    def _rotate_activate(self, caller: Caller) -> Authority:
        outcome = _Outcome(method="admin")
        with self._audited("rotate_activate", caller, outcome), self._lock:
            self._save(self.authority.activate())
            outcome.detail = f"slot={self.authority.active.id} sequence={self.authority.sequence}"
            outcome.not_after = self.authority.active.not_after
            return self.authority

    def reload_if_changed(self) -> bool:
        """Pick up a rotation made by another process (``meshward ca rotate``)."""
        if self.files is None or self.passphrase is None:
            return False
        mtime = self.files.mtime()
        if mtime == self._loaded_mtime:
            return False
        with self._lock:
            loaded = self.files.load(self.passphrase)
            self._loaded_mtime = mtime
            if loaded.sequence <= self.authority.sequence:
                return False
            self.authority = loaded
            self._publish_gauges()
        log.info("CA state reloaded", extra={"fields": {"sequence": loaded.sequence}})
        return True

    def tick(self) -> bool:
        """One step of the rotation state machine; True when the bundle changed."""
        changed = self.reload_if_changed()
        system = Caller(address="rotator")
        now = self.clock.now()
        with self._lock:
            due = self.authority
            if not (
                due.should_prune(now)
                or due.should_prepare_next(now)
                or due.should_activate_next(now)
            ):
                return changed
            with self._rotation_lease() as held:
                if not held:  # another replica is rotating: next tick
                    return changed
                changed = self._rotation_steps(now, system) or changed
        return changed

    def _rotation_steps(self, now: dt.datetime, system: Caller) -> bool:
        changed = False
        if self.authority.should_prune(now):
            outcome = _Outcome(method="auto")
            with self._audited("rotate_prune", system, outcome):
                self._save(self.authority.prune(now))
            changed = True
        if self.authority.should_prepare_next(now):
            self._rotate_prepare(system)
            changed = True
        if self.authority.should_activate_next(now):
            self._rotate_activate(system)
            changed = True
        return changed
