"""Who may ask the CA for what: attestation of a caller down to its entitlement.

An :class:`Attestor` turns a request's credential — a join token, a
Kubernetes service account token, the mTLS peer of a renewal, an admin SVID,
or a node agent asking for an entry delegated to it — into the SPIFFE ID it
proved and the live entries (or agent record) that entitle it. It signs
nothing; the issuance pipeline (:mod:`ca.pipeline`) does that afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ca.attestation.caller import Caller
from ca.attestation.join_token import hash_token, looks_like_join_token
from ca.attestation.k8s import K8sAttestor
from ca.audit import Outcome, keep_deferred
from ca.entitlement import entry_is_live
from ca.errors import AttestationFailed, BadRequest, NotEntitled
from ca.store.protocol import AgentRecord, CaStore, Entry
from meshward.clock import Clock
from meshward.selectors import node_selector
from meshward.spiffe import CA_SERVER_PATH, SpiffeId, TrustDomain

__all__ = ["NODE_METHODS", "Attested", "Attestor"]

NODE_METHODS = frozenset({"join_token", "k8s"})  # attestations that make an agent record


@dataclass(frozen=True)
class Attested:
    """The SPIFFE ID a caller proved, its entries, and a join token hash to redeem.

    ``complete``: ``entries`` are all the entries of the ID (a join token, a
    renewal), not only those a Kubernetes token's selectors matched.
    """

    spiffe_id: SpiffeId
    entries: list[Entry]
    token_hash: str | None = None
    complete: bool = False

    @property
    def all_entries(self) -> list[Entry] | None:
        """Every entry of the ID when known here, else None (read them from the store)."""
        return self.entries if self.complete else None


@dataclass
class Attestor:
    """Attestation and entitlement rules over the CA store."""

    store: CaStore
    clock: Clock
    trust_domain: TrustDomain
    k8s: K8sAttestor | None = None

    def resolve(
        self, token: str | None, caller: Caller, requested: SpiffeId | None, outcome: Outcome
    ) -> Attested:
        """The SPIFFE ID the caller proved with a token or its peer certificate."""
        now = self.clock.now()
        if token:
            if looks_like_join_token(token):
                outcome.method = "join_token"
                token_hash = hash_token(token)
                record = self.store.get_token(token_hash)
                if record is None or record.used_at is not None or now >= record.expires_at:
                    raise AttestationFailed("join token unknown, used or expired", code="bad_token")
                outcome.spiffe_id = str(record.spiffe_id)
                return Attested(
                    record.spiffe_id, self.store.entries_for(record.spiffe_id), token_hash, True
                )
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
            return Attested(matched[0].spiffe_id, matched)
        if caller.peer_id is not None:
            outcome.method = "renewal"
            outcome.spiffe_id = str(caller.peer_id)
            if not caller.peer_id.member_of(self.trust_domain):
                raise NotEntitled("peer is from another trust domain", code="foreign_trust_domain")
            return Attested(caller.peer_id, self.store.entries_for(caller.peer_id), complete=True)
        raise AttestationFailed("no token and no client certificate", code="no_credential")

    def live(self, entries: Sequence[Entry]) -> list[Entry]:
        return [e for e in entries if entry_is_live(e, self.store.get_agent)]

    def entitled(
        self,
        spiffe_id: SpiffeId,
        entries: Sequence[Entry],
        method: str,
        jwt: bool,
        all_entries: Sequence[Entry] | None = None,
    ) -> tuple[list[Entry], AgentRecord | None]:
        """What stands behind an issuance: live entries and/or a node's agent record.

        Refused: an evicted node (``agent_evicted``); an ID with no live entry
        and no agent record (``no_entry``; a JWT-SVID always needs an entry);
        an admin X.509-SVID, which only ``ca admin login`` issues
        (``admin_needs_login``). ``all_entries``: every entry of the ID, if the
        caller has them already (else they are read for the admin check).
        """
        record = self.store.get_agent(spiffe_id)
        if record is not None and record.evicted:
            raise NotEntitled("this node has been evicted", code="agent_evicted")
        live = self.live(entries)
        if not jwt:
            self.check_not_admin(spiffe_id, all_entries)
        if live:
            return live, record
        if not jwt:
            if record is not None or method == "join_token":
                return [], record
            if method == "renewal" and self.delegated_to(spiffe_id):
                return [], None  # a node attested before agent records: adopted below
        raise NotEntitled("no live registration entry for this SPIFFE ID", code="no_entry")

    def delegated_to(self, node_id: SpiffeId) -> bool:
        selector = node_selector(node_id)
        return bool(self.live([e for e in self.store.list_entries() if selector in e.selectors]))

    def record_node(
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
        self._record(AgentRecord(spiffe_id, attestation, now, now, serial))

    def _record(self, record: AgentRecord) -> None:
        """Write an agent record now, or with the audit rows when the caller defers them."""
        if not keep_deferred(record):
            self.store.record_agent(record)

    def check_not_admin(
        self, spiffe_id: SpiffeId, all_entries: Sequence[Entry] | None = None
    ) -> None:
        """An admin X.509-SVID comes only from ``ca admin login`` (the passphrase, on the host).

        Whatever else stands behind the ID — a join token, a Kubernetes token
        matching another entry of the same ID, an entry delegated to a node,
        a renewal — is refused, or one of those would be a way to admin.
        """
        if all_entries is None:
            all_entries = self.store.entries_for(spiffe_id)
        if any(e.admin for e in all_entries):
            raise NotEntitled(
                "admin SVIDs come only from `meshward ca admin login`", code="admin_needs_login"
            )

    def check_not_reserved(self, spiffe_id: SpiffeId) -> None:
        """The CA's own server ID is never issued to anyone else (agents pin it)."""
        if spiffe_id == SpiffeId(self.trust_domain, CA_SERVER_PATH):
            raise NotEntitled("this SPIFFE ID is reserved for the CA", code="reserved_id")

    def check_in_domain(self, spiffe_id: SpiffeId) -> None:
        if not spiffe_id.member_of(self.trust_domain):
            raise BadRequest("the SPIFFE ID is not in this trust domain", code="foreign_id")

    def agent_node(self, caller: Caller, sync: bool = False) -> SpiffeId:
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
            if not self.delegated_to(caller.peer_id):
                raise NotEntitled("no agent record for this node", code="unknown_agent")
            self.record_node(caller.peer_id, "renewal", None, None, adopt=True)
        elif sync:
            self._record(replace(record, last_seen=self.clock.now()))
        return caller.peer_id

    def agent_entry(self, entry_id: object, caller: Caller, outcome: Outcome) -> Entry:
        """The entry a node's agent asks for, if it is delegated to that node."""
        outcome.method = "agent"
        node = self.agent_node(caller)
        if not isinstance(entry_id, str) or not entry_id:
            raise BadRequest("entry_id must be a string", code="bad_entry_id")
        entry = self.store.get_entry(entry_id)
        if entry is None or node_selector(node) not in entry.selectors:
            outcome.detail = f"entry={entry_id[:64]}"
            raise NotEntitled("the entry is not delegated to this node", code="not_delegated")
        outcome.spiffe_id = str(entry.spiffe_id)
        self.check_not_reserved(entry.spiffe_id)
        return entry

    def require_admin(self, caller: Caller) -> None:
        if caller.peer_id is None:
            raise AttestationFailed("admin calls need a client certificate", code="no_credential")
        if not any(e.admin for e in self.store.entries_for(caller.peer_id)):
            raise NotEntitled("caller is not an admin", code="not_admin")
