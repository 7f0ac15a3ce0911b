"""``meshward up`` runs a node agent too: the example workload gets its SVID from it."""

from __future__ import annotations

import re

import pytest
from spiffe import WorkloadApiClient

from tests.support.up import running_up


def test_up_serves_the_example_svid_over_the_workload_api(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    tmp = tmp_path_factory.mktemp("up")
    with running_up(tmp, state=tmp / "s") as up:
        output = up.output()
        match = re.search(r"^meshward: agent workload API: (unix:\S+)$", output, re.M)
        assert match, output
        assert re.search(r"^meshward: agent SDS: unix:\S+$", output, re.M)
        with WorkloadApiClient(match.group(1), default_timeout=30) as client:
            svid = client.fetch_x509_context().default_svid
        assert str(svid.spiffe_id) == "spiffe://meshward.local/ns/shop/sa/frontend"
    assert up.process.returncode == 0, up.output()
    assert (up.state / "agent" / "node.pem").exists()
