"""Policy sources never read through links, and GET /v1/policies never shows file text.

The real bundle check (``prepare_engine``: Cedar parse, schema, tests) on a real
directory, served by the real router.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from authz.adapters.activepolicies import policies_router
from authz.sources.bundles import prepare_engine
from authz.sources.directory import DirectorySource
from authz.sources.gate import Gate, Outcome
from meshward.clock import FixedClock
from tests.support.cli import REPO

SECRET = "s3cr3t_f1le_c0ntent"


def _policies(tmp_path: Path) -> Path:
    root = tmp_path / "policies"
    shutil.copytree(REPO / "policies", root)
    return root


def _secret_file(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.cedar"
    secret.write_text(f"root:{SECRET}:0:0\n")
    return secret


async def _status(gate: Gate[object]) -> str:
    app = FastAPI()
    app.include_router(policies_router(gate, webhook_secret=None))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pdp") as client:
        response = await client.get("/v1/policies")
    assert response.status_code == 200
    return response.text


def _gate(root: Path, tmp_path: Path) -> Gate[object]:
    source = DirectorySource(root, poll_interval=3600)
    return Gate(source, prepare_engine, clock=FixedClock(), work_dir=tmp_path / "work")


@pytest.mark.parametrize("kind", ["file", "directory"])
async def test_a_symlink_in_the_policy_directory_is_refused_unread(
    tmp_path: Path, kind: str
) -> None:
    root = _policies(tmp_path)
    good = _gate(root, tmp_path)
    assert await good.reload() is Outcome.ACTIVATED
    secret = _secret_file(tmp_path)
    link = root / ("leak.cedar" if kind == "file" else "linked")
    os.symlink(secret if kind == "file" else secret.parent, link)
    assert await good.reload() is Outcome.REJECTED
    status = good.status()
    assert status.active_version is not None  # the last good version keeps serving
    rejected = status.last_rejected
    assert rejected is not None and rejected.stage == "checkout"
    assert [(p.file, p.code) for p in rejected.problems] == [(link.name, "symlink")]
    text = await _status(good)
    assert link.name in text
    assert SECRET not in text


async def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    root = _policies(tmp_path)
    os.mkfifo(root / "pipe.cedar")
    gate = _gate(root, tmp_path)
    assert await gate.reload() is Outcome.REJECTED
    rejected = gate.status().last_rejected
    assert rejected is not None
    assert [(p.file, p.code) for p in rejected.problems] == [("pipe.cedar", "not-a-file")]


async def test_policies_endpoint_names_the_place_never_the_text(tmp_path: Path) -> None:
    root = _policies(tmp_path)
    # Parse errors quote the text they choke on: that text stays in the log.
    (root / "broken.cedar").write_text(
        "permit (principal, action, resource) when { " + SECRET + " == 1 };"
    )
    (root / "tests" / "bad.yaml").write_text(f"cases:\n  - name: {SECRET}\n    nope: [\n")
    gate = _gate(root, tmp_path)
    assert await gate.reload() is Outcome.REJECTED
    rejected = gate.status().last_rejected
    assert rejected is not None
    assert any(SECRET in p.message for p in rejected.problems)  # the detail exists...
    text = await _status(gate)
    assert SECRET not in text  # ...but is not served
    errors = gate.status().to_json()["last_rejected"]["errors"]
    assert {e["file"] for e in errors} == {"broken.cedar", "tests/bad.yaml"}
    assert all(e["line"] and e["column"] and e["message"] for e in errors)
