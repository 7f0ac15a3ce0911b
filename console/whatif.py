"""The playground's what-if: a request decided under edited policy text, nothing live touched.

The active bundle arrives as the PDP's ``GET /v1/policies/active`` document
(schema, entities, policy files). An edit replaces whole policy files by name
(only files of the active bundle); the result is loaded with the same loader
and engine the PDP uses, in a temporary directory that is gone afterwards.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from authz.engine.bundle import load_bundle
from authz.engine.evaluation import Engine
from authz.engine.explain import explain
from authz.engine.requestdoc import parse_request
from authz.errors import BundleError, RequestError
from console.errors import ConsoleError

__all__ = ["ActiveBundle", "EditError", "WhatIf", "evaluate_edit"]

MAX_EDIT_BYTES = 1 << 20


class EditError(ConsoleError):
    """The edit or the request cannot be evaluated; the message is fit for the page."""

    code = "bad_edit"


@dataclass(frozen=True, slots=True)
class ActiveBundle:
    """The parts of the active bundle the what-if rebuilds from."""

    version: str
    schema: str
    entities: str
    files: Mapping[str, str]

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ActiveBundle:
        files: dict[str, str] = {}
        for policy in doc.get("policies", []):
            name = str(policy["file"])
            files[name] = (files[name] + "\n\n" if name in files else "") + str(policy["text"])
        return cls(str(doc["version"]), str(doc["schema"]), str(doc["entities"]), files)


@dataclass(frozen=True, slots=True)
class WhatIf:
    """The decision under the edit, or every problem that kept the edit from loading."""

    decision: Mapping[str, Any] | None
    problems: tuple[str, ...] = field(default=())


def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or path.suffix != ".cedar":
        raise EditError(f"not a policy file of the bundle: {name!r}")
    return path


def evaluate_edit(active: ActiveBundle, edits: Mapping[str, str], document: Any) -> WhatIf:
    """Decide ``document`` (the ``check`` JSON) under ``active`` with ``edits`` applied."""
    try:
        request = parse_request(document)
    except RequestError as exc:
        raise EditError(f"bad request: {exc}") from exc
    for name, text in edits.items():
        if name not in active.files:
            raise EditError(f"not a policy file of the bundle: {name!r}")
        if len(text.encode()) > MAX_EDIT_BYTES:
            raise EditError(f"edit of {name} is larger than {MAX_EDIT_BYTES} bytes")
    with tempfile.TemporaryDirectory(prefix="meshward-whatif-") as tmp:
        root = Path(tmp)
        (root / "schema.cedarschema").write_text(active.schema, "utf-8")
        (root / "entities.json").write_text(active.entities, "utf-8")
        for name, text in {**active.files, **edits}.items():
            target = root / _safe_name(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, "utf-8")
        try:
            bundle = load_bundle(root, version="what-if")
        except BundleError as exc:
            return WhatIf(None, tuple(str(p) for p in exc.problems))
    explanation = explain(Engine(bundle), request)
    return WhatIf({**explanation.decision.to_json(), "explanation": explanation.to_json()})
