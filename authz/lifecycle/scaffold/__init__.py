"""``meshward policy init DIR``: a new policy repository that validates and passes its tests.

The files beside this module are the template: the request model's schema
(the same text as the example repository's ``policies/schema.cedarschema``,
a test keeps them equal), one policy file, static entities and a test suite.
:func:`scaffold` copies them into an empty or new directory and refuses to
overwrite anything.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from authz.errors import ScaffoldError

__all__ = ["FILES", "ScaffoldError", "scaffold"]

# template file -> path in the new repository
FILES = {
    "schema.cedarschema": "schema.cedarschema",
    "policies.cedar": "policies.cedar",
    "entities.json": "entities.json",
    "example.yaml": "tests/example.yaml",
}


def scaffold(directory: Path) -> list[Path]:
    """Write the template into ``directory``; return the files written."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ScaffoldError(f"{directory} exists and is not an empty directory")
    template = resources.files(__name__)
    written = []
    try:
        for name, target in FILES.items():
            path = directory / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(template.joinpath(name).read_text(encoding="utf-8"), encoding="utf-8")
            written.append(path)
    except OSError as exc:
        raise ScaffoldError(f"cannot write {directory}: {exc.strerror}") from exc
    return written
