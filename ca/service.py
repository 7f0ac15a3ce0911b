"""The running CA: a thin facade over who may ask, how SVIDs are made, and rotation.

Shared by the HTTPS API (:mod:`ca.api`) and the ``meshward ca`` commands. It
decides nothing itself; it wires the parts that do:

- :mod:`ca.attestation.attestor` — who may ask: a join token, a Kubernetes
  token, a renewal, an admin, a node agent for a delegated entry → the SPIFFE
  ID and the entries (or agent record) that entitle the caller;
- :mod:`ca.pipeline` — one issuance pipeline for every X.509-SVID and
  JWT-SVID (TTL policy from :mod:`ca.entitlement`, signing only in the pure
  core :mod:`ca.issuance`, the same metrics on every path);
- :mod:`ca.audit` — the audit trail wrapped around every action;
- :mod:`ca.admin` — entries, join tokens and agent records;
- :mod:`ca.rotation` — the current authority and when its keys change.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import threading
from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca.admin import Registry
from ca.attestation.attestor import Attestor
from ca.attestation.caller import Caller
from ca.attestation.k8s import K8sAttestor
from ca.audit import Auditor, Outcome
from ca.authority import Authority, SerialSource, build_root, make_slot
from ca.errors import AttestationFailed, BadRequest, CaError
from ca.issuance import CsrRequest, IPAddress, IssuedJwt, IssuedX509
from ca.keystore import KeyKind, PrivateKey, generate_key
from ca.metrics import CaMetrics
from ca.pipeline import Grant, Issuer
from ca.rotation import Rotator
from ca.state import AuthorityHome
from ca.store.protocol import AgentRecord, CaStore, Entry
from meshward.clock import Clock
from meshward.ratelimit import Limiter, RateLimiter
from meshward.selectors import AGENT_SELECTOR_PREFIX, node_selector
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

ADMIN_PATH = "/meshward/admin"
SERVER_PATH = CA_SERVER_PATH


def random_serial() -> int:
    """A positive serial number with 128 random bits (>= 64 as the spec asks)."""
    return secrets.randbits(127) | (1 << 127)


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


class CertificateAuthority:
    """The CA at run time. Thread-safe; the API calls it from worker threads."""

    def __init__(
        self,
        authority: Authority,
        store: CaStore,
        settings: CaSettings,
        clock: Clock,
        serials: SerialSource = random_serial,
        random_bytes: Callable[[int], bytes] = os.urandom,
        files: AuthorityHome | None = None,
        passphrase: bytes | None = None,
        k8s: K8sAttestor | None = None,
        metrics: CaMetrics | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.metrics = metrics or CaMetrics()
        self.limiter = limiter or RateLimiter(settings.rate_per_second, settings.rate_burst)
        lock = threading.RLock()
        self.auditor = Auditor(store, clock)
        self.rotator = Rotator(
            authority, settings, clock, serials, self.metrics, self.auditor, lock, files, passphrase
        )
        self.attestor = Attestor(store, clock, authority.trust_domain, k8s)
        self.issuer = Issuer(
            settings,
            clock,
            serials,
            self.metrics,
            self.auditor,
            self.limiter,
            lambda: self.rotator.authority,
            lock,
        )
        self.registry = Registry(store, settings, clock, self.auditor, self.attestor, random_bytes)

    def __repr__(self) -> str:
        return f"CertificateAuthority({self.trust_domain})"

    @property
    def authority(self) -> Authority:
        return self.rotator.authority

    @property
    def files(self) -> AuthorityHome | None:
        return self.rotator.files

    @property
    def k8s(self) -> K8sAttestor | None:
        return self.attestor.k8s

    @k8s.setter
    def k8s(self, attestor: K8sAttestor | None) -> None:
        self.attestor.k8s = attestor

    @property
    def trust_domain(self) -> TrustDomain:
        return self.authority.trust_domain

    def audit_refusal(self, action: str, caller: Caller, exc: CaError) -> None:
        """Audit a request refused before it reached the CA (bad body, not admin)."""
        self.auditor.refusal(action, caller, exc)

    def was_audited(self, exc: CaError) -> bool:
        """True once ``exc`` is in the audit trail (raised inside an audited action)."""
        return self.auditor.is_recorded(exc)

    # -- issuance -----------------------------------------------------------

    def _redeem(self, token_hash: str | None) -> None:
        if token_hash is not None and not self.store.redeem_token(token_hash, self.clock.now()):
            raise AttestationFailed("join token already used", code="bad_token")

    def issue_x509(
        self,
        csr_pem: bytes | str,
        token: str | None,
        caller: Caller,
        ttl: int | None = None,
    ) -> IssuedX509:
        """Attest the caller, then sign an X.509-SVID for the CSR."""
        outcome = Outcome()
        a = self.attestor

        def attest(request: CsrRequest) -> Grant:
            found = a.resolve(token, caller, request.requested_id, outcome)
            outcome.spiffe_id = str(found.spiffe_id)
            a.check_not_reserved(found.spiffe_id)
            live, record = a.entitled(
                found.spiffe_id, found.entries, outcome.method, False, found.all_entries
            )
            seconds = self.issuer.x509_ttl(ttl, live)
            return Grant(found.spiffe_id, live, seconds, token_hash=found.token_hash, record=record)

        def commit(grant: Grant, issued: IssuedX509) -> None:
            self._redeem(grant.token_hash)
            # Renewing with neither a live entry nor a record passed entitlement only as a
            # node that attested before agent records existed: adopt it.
            adopt = grant.record is None and not grant.entries and outcome.method == "renewal"
            serial = format(issued.serial, "x")
            a.record_node(grant.spiffe_id, outcome.method, grant.record, serial, adopt)

        return self.issuer.x509(csr_pem, caller, outcome, attest, commit)

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
        outcome = Outcome(spiffe_id=str(spiffe_id), method=method)

        def attest(_request: CsrRequest) -> Grant:
            if method != "server":
                self.attestor.check_not_reserved(spiffe_id)
            entries = self.attestor.live(self.store.entries_for(spiffe_id))
            seconds = self.issuer.x509_ttl_local(ttl, entries)
            return Grant(spiffe_id, entries, seconds, dns_names, ip_addresses)

        return self.issuer.x509(csr_pem, Caller(address="local"), outcome, attest, rate_limit=False)

    def issue_jwt(
        self, audience: object, token: str | None, caller: Caller, ttl: int | None = None
    ) -> IssuedJwt:
        """Attest the caller, then sign a JWT-SVID for ``audience`` (checked here: wire input)."""
        outcome = Outcome()
        a = self.attestor

        def attest() -> Grant:
            found = a.resolve(token, caller, None, outcome)
            outcome.spiffe_id = str(found.spiffe_id)
            a.check_not_reserved(found.spiffe_id)
            live, _record = a.entitled(found.spiffe_id, found.entries, outcome.method, jwt=True)
            seconds = self.issuer.jwt_ttl(ttl, live)
            return Grant(found.spiffe_id, live, seconds, token_hash=found.token_hash)

        def commit(grant: Grant, _issued: IssuedJwt) -> None:
            self._redeem(grant.token_hash)

        return self.issuer.jwt(audience, caller, outcome, attest, commit)

    def issue_jwt_local(
        self, spiffe_id: SpiffeId, audience: Sequence[str], ttl: int | None
    ) -> IssuedJwt:
        """A JWT-SVID for an operator on the CA host (``meshward ca jwt mint``), audited."""
        outcome = Outcome(spiffe_id=str(spiffe_id), method="cli")

        def attest() -> Grant:
            self.attestor.check_in_domain(spiffe_id)
            self.attestor.check_not_reserved(spiffe_id)
            live = self.attestor.live(self.store.entries_for(spiffe_id))
            return Grant(spiffe_id, live, self.issuer.jwt_ttl(ttl, live))

        return self.issuer.jwt(audience, Caller(address="local"), outcome, attest, rate_limit=False)

    # -- node agents --------------------------------------------------------

    def agent_entries(self, caller: Caller) -> list[Entry]:
        """The entries delegated to the calling node (selector ``agent:id:<node ID>``)."""
        selector = node_selector(self.attestor.agent_node(caller, sync=True))
        return [e for e in self.store.list_entries() if selector in e.selectors]

    def agent_issue_x509(self, csr_pem: str, entry_id: object, caller: Caller) -> IssuedX509:
        """Sign for an entry delegated to the calling node (the node's agent attested it)."""
        outcome = Outcome(method="agent")

        def attest(_request: CsrRequest) -> Grant:
            entry = self.attestor.agent_entry(entry_id, caller, outcome)
            self.attestor.check_not_admin(entry.spiffe_id)
            return Grant(entry.spiffe_id, [entry], self.issuer.x509_ttl(None, [entry]))

        return self.issuer.x509(csr_pem, caller, outcome, attest)

    def agent_issue_jwt(self, entry_id: object, audience: object, caller: Caller) -> IssuedJwt:
        """A JWT-SVID for an entry delegated to the calling node."""
        outcome = Outcome(method="agent")

        def attest() -> Grant:
            entry = self.attestor.agent_entry(entry_id, caller, outcome)
            return Grant(entry.spiffe_id, [entry], self.issuer.jwt_ttl(None, [entry]))

        return self.issuer.jwt(audience, caller, outcome, attest)

    # -- admin --------------------------------------------------------------

    def require_admin(self, caller: Caller) -> None:
        self.attestor.require_admin(caller)

    def list_entries(self, caller: Caller) -> list[Entry]:
        return self.registry.list_entries(caller)

    def add_entry(self, entry: Entry, caller: Caller) -> Entry:
        return self.registry.add_entry(entry, caller)

    def update_entry(self, entry: Entry, caller: Caller) -> Entry:
        return self.registry.update_entry(entry, caller)

    def remove_entry(self, entry_id: str, caller: Caller) -> None:
        self.registry.remove_entry(entry_id, caller)

    def new_entry_id(self) -> str:
        return self.registry.new_entry_id()

    def create_join_token(self, spiffe_id: SpiffeId, ttl: int | None, caller: Caller) -> str:
        return self.registry.create_join_token(spiffe_id, ttl, caller)

    def revoke_join_token(self, token_hash: str, caller: Caller) -> None:
        self.registry.revoke_join_token(token_hash, caller)

    def list_agents(self, caller: Caller) -> list[AgentRecord]:
        return self.registry.list_agents(caller)

    def get_agent(self, spiffe_id: SpiffeId, caller: Caller) -> AgentRecord:
        return self.registry.get_agent(spiffe_id, caller)

    def evict_agent(self, spiffe_id: SpiffeId, caller: Caller) -> AgentRecord:
        return self.registry.evict_agent(spiffe_id, caller)

    # -- rotation -----------------------------------------------------------

    def rotate_prepare(self, caller: Caller) -> Authority:
        return self.rotator.prepare(caller)

    def rotate_activate(self, caller: Caller) -> Authority:
        return self.rotator.activate(caller)

    def reload_if_changed(self) -> bool:
        """Pick up a rotation made by another process (``meshward ca rotate``)."""
        return self.rotator.reload_if_changed()

    def tick(self) -> bool:
        """One step of the rotation state machine; True when the bundle changed."""
        return self.rotator.tick()
