"""docs/architecture.md's package map is the source tree, and its base layer is import-linter's.

The map is the code block under "## Packages": a name ending in ``/`` is a
package (inside the package on the line above with less indentation), other
names in the left column are its modules. Every package and module of the
product is listed, and every name listed exists.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from tests.support.cli import REPO

ROOTS = ("meshward", "authz", "ca", "agent", "console")
ARCHITECTURE = REPO / "docs" / "architecture.md"
_COLUMNS = re.compile(r"\s{2,}")
_IGNORED = {"__init__", "__main__"}


def _package_map() -> dict[str, set[str]]:
    """Package path (``authz/engine``) -> the module and subpackage names listed in it."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    block = text.split("## Packages", 1)[1].split("```", 2)[1]
    listed: dict[str, set[str]] = {}
    stack: list[tuple[int, str]] = []  # (indent, package path)
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        left = _COLUMNS.split(line.strip(), maxsplit=1)[0]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        for name in left.split():
            if name.endswith("/"):
                path = f"{stack[-1][1]}/{name[:-1]}" if stack else name[:-1]
                listed.setdefault(path, set())
                if stack:
                    listed[stack[-1][1]].add(name[:-1])
                stack.append((indent, path))
            else:
                assert stack, f"{name!r} is listed outside any package"
                listed[stack[-1][1]].add(name)
    return listed


def _tree() -> dict[str, set[str]]:
    """Package path -> its modules and subpackages, as on disk."""
    tree: dict[str, set[str]] = {}
    for root in ROOTS:
        for init in sorted((REPO / root).rglob("__init__.py")):
            package = init.parent
            names = {p.stem for p in package.glob("*.py")} - _IGNORED
            names |= {d.name for d in package.iterdir() if (d / "__init__.py").is_file()}
            tree[package.relative_to(REPO).as_posix()] = names
    return tree


def _own(tree: dict[str, set[str]], path: str) -> set[str]:
    """What the map must list for ``path`` (``meshward`` holds the cli package, listed apart)."""
    return tree[path] - ({"cli"} if path == "meshward" else set())


def test_every_package_and_module_is_on_the_map() -> None:
    listed, tree = _package_map(), _tree()
    assert set(tree) == set(listed), "packages: on disk vs in docs/architecture.md"
    for path in tree:
        missing = _own(tree, path) - listed[path]
        assert not missing, f"{path}: not in docs/architecture.md: {sorted(missing)}"


def test_every_name_on_the_map_exists() -> None:
    listed, tree = _package_map(), _tree()
    for path, names in listed.items():
        unknown = names - _IGNORED - tree.get(path, set())
        assert not unknown, f"docs/architecture.md lists {path}/{sorted(unknown)}, not in the tree"


def test_the_base_layer_is_import_linters() -> None:
    config = configparser.ConfigParser()
    config.read(REPO / ".importlinter")
    layers = config["importlinter:contract:layers"]["layers"].split("\n")
    base = {m.strip().removeprefix("meshward.") for m in layers[-1].split(":")}
    assert base == _own(_tree(), "meshward"), "the last layer of .importlinter vs meshward/*.py"


def test_the_map_is_read_from_the_packages_section() -> None:
    listed = _package_map()
    assert {"decider", "slicing"} <= listed["authz/engine"]
    assert Path(REPO / "authz" / "engine" / "decider.py").is_file()
