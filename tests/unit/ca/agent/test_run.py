"""Start-up checks of ``meshward agent run`` that need no CA."""

from __future__ import annotations

import pytest

from ca.agent.run import AgentStartupError, check_sds_listener
from ca.agent.sds import parse_sds_address


@pytest.mark.parametrize(
    ("address", "selectors"),
    [
        ("unix:/run/meshward/agent/sds.sock", ()),
        ("127.0.0.1:8234", ("unix:uid:101",)),
        ("[::1]:8234", ("unix:uid:101",)),
        ("localhost:8234", ("unix:uid:101", "unix:gid:101")),
        ("", ()),  # SDS off
    ],
)
def test_listeners_that_tell_callers_apart_are_accepted(
    address: str, selectors: tuple[str, ...]
) -> None:
    check_sds_listener(address, selectors)


@pytest.mark.parametrize(
    ("address", "selectors"),
    [
        ("127.0.0.1:8234", ()),  # TCP without selectors
        ("0.0.0.0:8234", ("unix:uid:101",)),  # not loopback
        ("10.0.0.5:8234", ("unix:uid:101",)),
        ("[::]:8234", ("unix:uid:101",)),
        ("unix:/tmp/sds.sock", ("unix:uid:101",)),  # selectors on a Unix socket
        ("sds.sock", ()),  # neither form
    ],
)
def test_listeners_that_cannot_are_refused(address: str, selectors: tuple[str, ...]) -> None:
    with pytest.raises(AgentStartupError):
        check_sds_listener(address, selectors)


def test_addresses_parse() -> None:
    assert parse_sds_address("[::1]:80") == (None, "[::1]", 80)
