"""Registration admin: entries, join tokens and node agents, every action audited.

The HTTPS admin API and the ``meshward ca`` commands call these through
:class:`ca.service.CertificateAuthority`; who is an admin is decided before
(:meth:`ca.attestation.attestor.Attestor.require_admin`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from ca.attestation.attestor import Attestor
from ca.attestation.caller import Caller
from ca.attestation.join_token import new_join_token
from ca.audit import Auditor, Outcome
from ca.errors import BadRequest, NotFound
from ca.store.protocol import AgentRecord, CaStore, Entry
from meshward.clock import Clock
from meshward.selectors import KNOWN_SELECTORS, InvalidSelector, parse_selectors
from meshward.settings import CaSettings
from meshward.spiffe import SpiffeId

__all__ = ["Registry"]


@dataclass
class Registry:
    """Entries, join tokens and agent records, changed by admins."""

    store: CaStore
    settings: CaSettings
    clock: Clock
    auditor: Auditor
    attestor: Attestor
    random_bytes: Callable[[int], bytes]

    def list_entries(self, caller: Caller) -> list[Entry]:
        outcome = Outcome(method="admin")
        with self.auditor.audited("entry_list", caller, outcome):
            entries = self.store.list_entries()
            outcome.detail = f"count={len(entries)}"
            return entries

    def add_entry(self, entry: Entry, caller: Caller) -> Entry:
        outcome = Outcome(spiffe_id=str(entry.spiffe_id), method="admin", detail=entry.id)
        with self.auditor.audited("entry_add", caller, outcome):
            self._check_entry(entry)
            self.store.add_entry(entry)
        return entry

    def update_entry(self, entry: Entry, caller: Caller) -> Entry:
        """Replace the entry with ``entry.id`` (same checks as :meth:`add_entry`)."""
        outcome = Outcome(spiffe_id=str(entry.spiffe_id), method="admin", detail=entry.id)
        with self.auditor.audited("entry_update", caller, outcome):
            self._check_entry(entry)
            if self.store.get_entry(entry.id) is None or not self.store.remove_entry(entry.id):
                raise NotFound(f"no entry {entry.id}")
            self.store.add_entry(entry)
        return entry

    def _check_entry(self, entry: Entry) -> None:
        self.attestor.check_in_domain(entry.spiffe_id)
        self.attestor.check_not_reserved(entry.spiffe_id)
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

    def new_entry_id(self) -> str:
        return self.random_bytes(8).hex()

    def remove_entry(self, entry_id: str, caller: Caller) -> None:
        outcome = Outcome(method="admin", detail=entry_id)
        with self.auditor.audited("entry_remove", caller, outcome):
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

    def create_join_token(self, spiffe_id: SpiffeId, ttl: int | None, caller: Caller) -> str:
        outcome = Outcome(spiffe_id=str(spiffe_id), method="admin")
        with self.auditor.audited("token_create", caller, outcome):
            self.attestor.check_in_domain(spiffe_id)
            self.attestor.check_not_reserved(spiffe_id)
            token, record = new_join_token(
                spiffe_id,
                self.clock.now(),
                dt.timedelta(seconds=ttl or self.settings.join_token_ttl),
                self.random_bytes,
            )
            self.store.add_token(record)
            outcome.not_after = record.expires_at
            return token

    def revoke_join_token(self, token_hash: str, caller: Caller) -> None:
        """Make an unused join token unusable (it counts as used from now on)."""
        outcome = Outcome(method="admin", detail=token_hash[:16])
        with self.auditor.audited("token_revoke", caller, outcome):
            token = self.store.get_token(token_hash)
            if token is None:
                raise NotFound("no such join token")
            outcome.spiffe_id = str(token.spiffe_id)
            if not self.store.redeem_token(token_hash, self.clock.now()):
                raise BadRequest("the join token is already used or expired", code="token_spent")

    def list_agents(self, caller: Caller) -> list[AgentRecord]:
        outcome = Outcome(method="admin")
        with self.auditor.audited("agent_list", caller, outcome):
            agents = self.store.list_agents()
            outcome.detail = f"count={len(agents)}"
            return agents

    def get_agent(self, spiffe_id: SpiffeId, caller: Caller) -> AgentRecord:
        outcome = Outcome(spiffe_id=str(spiffe_id), method="admin")
        with self.auditor.audited("agent_show", caller, outcome):
            record = self.store.get_agent(spiffe_id)
            if record is None:
                raise NotFound(f"no agent {spiffe_id}")
            return record

    def evict_agent(self, spiffe_id: SpiffeId, caller: Caller) -> AgentRecord:
        """Evict a node: from now on it renews nothing and gets no SVID for its entries."""
        outcome = Outcome(spiffe_id=str(spiffe_id), method="admin")
        with self.auditor.audited("agent_evict", caller, outcome):
            if not self.store.evict_agent(spiffe_id):
                raise NotFound(f"no agent {spiffe_id}")
            record = self.store.get_agent(spiffe_id)
            if record is None:
                raise NotFound(f"no agent {spiffe_id}")
            outcome.serial = record.serial
            return record
