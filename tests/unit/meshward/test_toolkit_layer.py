"""The SPIFFE toolkit is a leaf: it imports nothing from the CA, the PDP or the CLI."""

from __future__ import annotations

import ast

import pytest

from tests.support.cli import REPO

TOOLKIT = [
    "spiffe.py",
    "spiffe_bundle.py",
    "jwk.py",
    "jwt_svid.py",
    "x509_svid.py",
    "svid_chain.py",
    "selectors.py",
    "clock.py",
    "jsonbody.py",
    "callers.py",
    "asgi.py",
    "private_file.py",
]
ABOVE = ("ca", "agent", "authz", "console", "meshward.cli", "meshward.settings")


@pytest.mark.parametrize("module", TOOLKIT)
def test_imports_nothing_above(module: str) -> None:
    tree = ast.parse((REPO / "meshward" / module).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    bad = {m for m in imported if any(m == a or m.startswith(a + ".") for a in ABOVE)}
    assert bad == set(), f"meshward/{module} imports {sorted(bad)}"
