from __future__ import annotations

import json

import pytest

from authz.engine.model import EntityUid
from authz.engine.requestdoc import MAX_DOCUMENT_BYTES, parse_request, parse_request_json
from authz.errors import AuthzError, RequestError

GOOD = {
    "principal": 'Workload::"spiffe://td/a"',
    "action": 'Action::"GET"',
    "resource": {"type": "Service", "id": "s"},
    "context": {"http": {"path": "/"}},
    "parents": ['Group::"g"'],
}


def test_parses_the_contract_document() -> None:
    request = parse_request_json(json.dumps(GOOD))
    assert request.principal == EntityUid("Workload", "spiffe://td/a")
    assert request.identity.parents == (EntityUid("Group", "g"),)
    assert request.resource == EntityUid("Service", "s")
    assert request.context["http"] == {
        "method": "GET",
        "host": "",
        "path": "/",
        "raw_path": "/",
        "query": "",
        "headers": {},
    }


BAD = [
    "not json",
    "[]",
    json.dumps({**GOOD, "extra": 1}),
    json.dumps({k: v for k, v in GOOD.items() if k != "action"}),
    json.dumps({**GOOD, "principal": "User:alice"}),
    json.dumps({**GOOD, "resource": {"type": 1, "id": "x"}}),
    json.dumps({**GOOD, "context": []}),
    json.dumps({**GOOD, "parents": 'Group::"g"'}),
    b"\xff\xfe",
    " " * (MAX_DOCUMENT_BYTES + 1),
]


@pytest.mark.parametrize("text", BAD)
def test_bad_documents_raise_request_error(text) -> None:
    with pytest.raises(RequestError) as info:
        parse_request_json(text)
    assert isinstance(info.value, AuthzError)
    assert info.value.code == "bad_request"


def test_null_context_is_empty() -> None:
    assert dict(parse_request({**GOOD, "context": None}).context) == {}


def test_deeply_nested_json_is_a_request_error() -> None:
    from authz.engine.requestdoc import load_document
    from authz.errors import RequestError

    with pytest.raises(RequestError):
        load_document(b"[" * 30_000 + b"]" * 30_000)
    assert load_document(b'{"context": {"a": [[1]]}}') == {"context": {"a": [[1]]}}
