"""What every deploy/ test shares: the files, found by walking deploy/."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import REPO

DEPLOY = REPO / "deploy"


def deploy_files(subdir: str, *suffixes: str) -> list[Path]:
    """Every file under ``deploy/<subdir>`` whose name ends with one of ``suffixes``."""
    root = DEPLOY / subdir
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(suffixes))


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(DEPLOY)) for p in paths]
