from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

SCHEMA = """
entity Group in [Group];
entity Workload;
entity User in [Group] { email?: String };
entity Anonymous;
entity Service in [Service];
action "read", "write";
action "GET", "HEAD" in ["read"] appliesTo {
  principal: [Workload, User, Anonymous], resource: [Service],
  context: { path?: String, peer?: { spiffe_id: String, trust_domain: String }, n?: Long }
};
action "POST", "DELETE" in ["write"] appliesTo {
  principal: [Workload, User, Anonymous], resource: [Service],
  context: { path?: String, peer?: { spiffe_id: String, trust_domain: String }, n?: Long }
};
"""

Writer = Callable[..., Path]


def write_tree(root: Path, files: Mapping[str, str | bytes | None]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = root / name
        if content is None:
            path.unlink(missing_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, "utf-8")
    return root


@pytest.fixture
def make_bundle(tmp_path: Path) -> Writer:
    """Write a bundle directory: the test schema plus the given files."""
    counter = iter(range(1_000_000))

    def make(files: Mapping[str, str | bytes | None], *, schema: str | None = SCHEMA) -> Path:
        root = tmp_path / f"bundle{next(counter)}"
        base: dict[str, str | bytes | None] = {}
        if schema is not None:
            base["schema.cedarschema"] = schema
        return write_tree(root, {**base, **files})

    return make
