"""What the CA reports about itself (pure reads): status, and the SVIDs it issued that are live.

One document for ``meshward ca status`` and the admin API's
``GET /v1/ca/status``; :func:`live_svids` for ``GET /v1/svids`` (the
console's "SVIDs by expiry"), read from the audit log.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from ca.store.protocol import TokenListing
from meshward.clock import rfc3339
from meshward.svid_chain import certificate_summary

if TYPE_CHECKING:
    from ca.authority import Slot
    from ca.service import CertificateAuthority

__all__ = ["ca_status", "iso", "live_svids"]


def iso(when: dt.datetime | None) -> str | None:
    """:func:`meshward.clock.rfc3339`, or ``None``."""
    return None if when is None else rfc3339(when)


def ca_status(ca: CertificateAuthority, now: dt.datetime) -> dict[str, Any]:
    """Roots and signing CAs with expiry, the rotation stage, and counts."""
    authority = ca.authority
    stage = "steady"
    if authority.next is not None:
        stage = "prepared: next signing CA published, not yet signing"
    elif authority.should_prepare_next(now):
        stage = "due: the next signing CA is prepared on the next rotation step"

    def slot(s: Slot) -> dict[str, Any]:
        return {"id": s.id, **certificate_summary(s.ca_cert), "jwt_kid": s.jwt_kid}

    store = ca.store
    counts: dict[str, int | None] = {"entries": len(store.list_entries())}
    counts["join_tokens_unused"] = (
        sum(1 for t in store.list_tokens() if t.used_at is None and t.expires_at > now)
        if isinstance(store, TokenListing)
        else None
    )
    counts["agents"] = len(store.list_agents())
    return {
        "trust_domain": str(ca.trust_domain),
        "root": certificate_summary(authority.root_cert),
        "signing_ca": slot(authority.active),
        "next_signing_ca": slot(authority.next) if authority.next else None,
        "retired": [s.id for s in authority.retired],
        "rotation": {
            "stage": stage,
            "prepare_at": iso(authority.active.at_fraction(1 / 2)),
            "activate_at": iso(authority.active.at_fraction(5 / 6)),
        },
        "bundle_sequence": authority.sequence,
        "counts": counts,
    }


def live_svids(
    ca: CertificateAuthority, now: dt.datetime, scan: int = 5000
) -> list[dict[str, Any]]:
    """The X.509-SVIDs issued among the last ``scan`` audit records that are still valid.

    Newest issuance per SPIFFE ID, soonest expiry first.
    """
    newest: dict[str, dict[str, Any]] = {}
    for record in ca.store.list_audit(scan):
        if record.action != "x509_svid" or record.result != "ok" or record.spiffe_id is None:
            continue
        if record.not_after is None or record.not_after <= now:
            continue
        seen = newest.get(record.spiffe_id)
        if seen is None or seen["issued_at"] < iso(record.time):
            newest[record.spiffe_id] = {
                "spiffe_id": record.spiffe_id,
                "serial": record.serial,
                "issued_at": iso(record.time),
                "not_after": iso(record.not_after),
                "method": record.method,
            }
    return sorted(newest.values(), key=lambda row: row["not_after"])
