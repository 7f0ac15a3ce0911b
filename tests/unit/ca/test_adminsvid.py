"""The admin SVID on disk: usable only while valid, else a message naming the fix."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ca.adminsvid import AdminSvidError, admin_svid_files
from ca.embedded import ADMIN_SVID_TTL, write_admin_svid
from ca.errors import NotFound
from ca.service import ADMIN_PATH, Caller
from ca.store.protocol import Entry
from meshward.clock import FixedClock
from meshward.spiffe import SpiffeId
from tests.support.ca import in_process_ca


def test_valid_then_expired_one_second_either_side(tmp_path: Path) -> None:
    clock = FixedClock()
    ca = in_process_ca(tmp_path, clock)
    with pytest.raises(AdminSvidError, match="meshward ca admin login"):
        admin_svid_files(tmp_path / "admin", clock.now())
    with pytest.raises(NotFound):
        write_admin_svid(ca, tmp_path / "admin")  # no admin entry: no admin SVID
    admin = SpiffeId(ca.trust_domain, ADMIN_PATH)
    ca.add_entry(Entry("a", admin, admin=True), Caller(address="test"))
    issued = write_admin_svid(ca, tmp_path / "admin")
    assert issued.not_after == clock.now() + dt.timedelta(seconds=ADMIN_SVID_TTL)
    last = issued.not_after - dt.timedelta(seconds=1)
    assert admin_svid_files(tmp_path / "admin", last).not_after == issued.not_after
    with pytest.raises(AdminSvidError, match="expired"):
        admin_svid_files(tmp_path / "admin", issued.not_after)
