"""The playground's JSON fields: deep nesting is a form error (400), never a crash (500)."""

from __future__ import annotations

import pytest

from authz.engine.requestdoc import MAX_DOCUMENT_DEPTH
from console.app import _form_document
from console.whatif import EditError


def test_context_json_is_parsed() -> None:
    doc = _form_document({"principal": " P ", "context": '{"a": [1]}'})
    assert doc["principal"] == "P"
    assert doc["context"] == {"a": [1]}


@pytest.mark.parametrize("field", ["context", "parents"])
def test_nesting_past_the_limit_is_an_edit_error(field: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000  # json.loads alone raises RecursionError
    with pytest.raises(EditError):
        _form_document({field: deep})
    at_limit = "[" * MAX_DOCUMENT_DEPTH + "]" * MAX_DOCUMENT_DEPTH
    assert field in _form_document({field: at_limit})


def test_bad_json_is_an_edit_error() -> None:
    with pytest.raises(EditError):
        _form_document({"context": "{"})
