"""The CA on embedded defaults (``meshward up``): created once, reopened after."""

from __future__ import annotations

import json
from pathlib import Path

from ca.embedded import bundle_file, prepare_embedded_ca
from meshward.settings import load_settings
from meshward.spiffe import TrustDomain
from meshward.spiffe_bundle import SpiffeBundle


def test_first_start_creates_then_reopens(tmp_path: Path) -> None:
    settings = load_settings(
        overrides={"state_dir": str(tmp_path), "ca": {"trust_domain": "up.local"}}
    )
    ca = prepare_embedded_ca(settings, env={})
    assert (tmp_path / "ca-passphrase").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "admin" / "key.pem").stat().st_mode & 0o777 == 0o600
    doc = json.loads(bundle_file(settings).read_text())
    assert SpiffeBundle.from_jwks(doc, TrustDomain("up.local")) == ca.authority.bundle()
    again = prepare_embedded_ca(settings, env={})
    assert again.authority.bundle() == ca.authority.bundle()
    assert [e.admin for e in again.store.list_entries()] == [True]
