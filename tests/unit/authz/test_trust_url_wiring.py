"""pdp.trust_bundle_url is wired only with a first trust, and follows that bundle's trust domain."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from authz.assembly import PdpError, build_authenticator
from authz.authn.trust_url import TrustBundleUrl
from meshward.clock import FixedClock
from meshward.settings import PdpSettings
from tests.support.certs import self_signed_ca


def test_a_followed_bundle_needs_a_first_trust() -> None:
    settings = PdpSettings(trust_bundle_url="https://ca-0:8443, https://ca-1:8443")
    assert settings.trust_bundle_url == "https://ca-0:8443,https://ca-1:8443"
    with pytest.raises(PdpError):
        build_authenticator(settings, FixedClock())


def test_the_followed_trust_domain_is_the_bundles(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(self_signed_ca("example.org")[0].public_bytes(Encoding.PEM))
    settings = PdpSettings(trust_bundle=bundle, trust_bundle_url="https://ca:8443")
    authenticator = build_authenticator(settings, FixedClock())
    source = authenticator.bundles
    assert isinstance(source, TrustBundleUrl)
    assert source.trust_domain.name == "example.org"
    assert source.endpoints.urls == ("https://ca:8443",)
