"""The ``meshward`` command loads its heavy dependencies only in the commands that use them."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.cli import REPO

HEAVY = ("cedarpy", "grpc", "fastapi", "uvicorn", "cryptography", "pydantic", "redis", "jsonschema")

PROBE = """
import json, sys
import meshward.cli
from typer.main import get_command
get_command(meshward.cli.app)  # builds every command group, as --help does
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_building_the_cli_imports_no_heavy_dependency() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    loaded = set(json.loads(out))
    assert loaded.isdisjoint(HEAVY), sorted(loaded.intersection(HEAVY))
    assert "meshward" in loaded
