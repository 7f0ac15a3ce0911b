"""The agent's errors sit under the shared root and never pass for the CA's own."""

from __future__ import annotations

import re

import pytest

import agent.errors as agent_errors
from agent.errors import AgentError, CaRejected, CaRequestFailed, CaUnavailable
from agent.jwt_validate import InvalidJwtSvid
from agent.run import AgentStartupError
from ca.errors import CaError
from meshward.errors import MeshwardError

ERRORS = [getattr(agent_errors, name) for name in agent_errors.__all__]


@pytest.mark.parametrize("error", [*ERRORS, InvalidJwtSvid, AgentStartupError])
def test_every_agent_error_is_an_agent_error_with_a_snake_case_code(error: type) -> None:
    assert issubclass(error, AgentError)
    assert issubclass(error, MeshwardError)
    assert not issubclass(error, CaError)
    assert re.fullmatch(r"[a-z]+(_[a-z]+)*", error.code), error.code


def test_a_failed_ca_call_is_not_a_ca_error() -> None:
    assert issubclass(CaUnavailable, CaRequestFailed)
    assert issubclass(CaRejected, CaRequestFailed)
    assert CaRequestFailed.__name__ != CaError.__name__
    refused = CaRejected("no", status=403, code="not_entitled")
    assert (refused.code, refused.status) == ("not_entitled", 403)
