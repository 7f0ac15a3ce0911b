"""Every code block marked ``runnable`` in the docs is executed, so the docs cannot drift.

The marker is the fence's info string: the language, then the word
``runnable``, then options, e.g. ```` ```sh runnable exit=1 ````.

- ``python``: run with this interpreter from the repo root, repo on ``PYTHONPATH``;
  ``setup=ca`` first starts a real CA (``meshward ca init`` + ``ca serve``) and
  gives the block ``MESHWARD_CA_URL``, ``MESHWARD_CA_BUNDLE`` and a join token
  in ``MESHWARD_JOIN_TOKEN``.
- ``sh``: run with ``bash -euo pipefail`` from the repo root; ``meshward`` is
  the real CLI (``python -m meshward``); ``exit=N`` is the expected status;
  ``expect=allow|deny`` the ``decision`` of the JSON it prints; ``setup=up``
  runs it against one shared ``meshward up`` on free ports (the default
  addresses in the block are pointed at them).
- ``cedar``: validated against ``policies/schema.cedarschema`` by Cedar.
- ``yaml kind=envoy``: parsed into Envoy's ``Bootstrap``, unknown fields rejected.
- ``yaml kind=policy-test``: added to a copy of ``policies/tests/`` and run
  with ``meshward policy test``.

A block marked runnable in a language the test does not know is a failure,
never a silent pass.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cedarpy
import pytest
import yaml
from google.protobuf import json_format

from tests.support.ca import running_ca
from tests.support.cli import REPO, meshward, meshward_env
from tests.support.envoy_config import parse_bootstrap
from tests.support.markdown import Block, blocks, markdown_files
from tests.support.up import running_up

DOCS_SPIFFE_ID = "spiffe://meshward.local/ns/shop/sa/orders"
RUNNABLE = [b for path in markdown_files(REPO) for b in blocks(path) if b.runnable]
POLICIES = REPO / "policies"


@contextmanager
def setup(block: Block, tmp_path: Path) -> Iterator[dict[str, str]]:
    """What ``setup=…`` asks for, as environment variables for the block."""
    name = block.option("setup")
    if not name:
        yield {}
    elif name == "ca":
        # A real CA: `meshward ca init` + `ca serve`, and a join token from the CLI.
        with running_ca(tmp_path / "ca", "meshward.local") as ca:
            token = ca.cli("ca", "token", "create", "--spiffe-id", DOCS_SPIFFE_ID)
            assert token.returncode == 0, token.stderr
            yield {
                "MESHWARD_CA_URL": ca.url,
                "MESHWARD_CA_BUNDLE": str(ca.admin_dir / "bundle.pem"),
                "MESHWARD_JOIN_TOKEN": token.stdout.strip(),
            }
    else:
        raise AssertionError(f"{block.id}: unknown setup {name!r}")


def run_python(block: Block, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "block.py"
    script.write_text(block.text, encoding="utf-8")
    with setup(block, tmp_path) as extra:
        return subprocess.run(
            [sys.executable, str(script)],
            capture_output=True, text=True, cwd=REPO, env=meshward_env(extra), timeout=120,
            check=False,
        )  # fmt: skip


@dataclass
class Up:
    """A running ``meshward up`` on free ports; default addresses in blocks map to them."""

    ports: dict[int, int]  # default port -> the test's port

    def rewrite(self, text: str) -> str:
        for default, port in self.ports.items():
            text = text.replace(f"127.0.0.1:{default}", f"127.0.0.1:{port}")
        return text


@pytest.fixture(scope="module")
def meshward_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """``meshward up`` as the quickstart runs it, on free ports (never the defaults)."""
    with running_up(tmp_path_factory.mktemp("up")) as up:
        p = up.ports
        yield Up({9191: p.grpc, 8181: p.http, 8443: p.ca, 8080: p.console})


def run_sh(block: Block, tmp_path: Path, up: Up | None = None) -> subprocess.CompletedProcess[str]:
    prelude = f'meshward() {{ "{sys.executable}" -m meshward "$@"; }}\nexport TMPDIR="{tmp_path}"\n'
    script = tmp_path / "block.sh"
    text = up.rewrite(block.text) if up is not None else block.text
    script.write_text(prelude + text, encoding="utf-8")
    return subprocess.run(
        ["bash", "-euo", "pipefail", str(script)],
        capture_output=True, text=True, cwd=REPO, env=meshward_env(), timeout=120, check=False,
    )  # fmt: skip


def check_cedar(block: Block) -> list[str]:
    schema = (POLICIES / "schema.cedarschema").read_text(encoding="utf-8")
    result = cedarpy.validate_policies(block.text, schema)
    return [] if result.validation_passed else [str(e) for e in result.errors]


def run_policy_test(block: Block, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    copy = tmp_path / "policies"
    shutil.copytree(POLICIES, copy)
    tests_dir = copy / "tests"
    tests_dir.mkdir(exist_ok=True)
    (tests_dir / "from_docs.yaml").write_text(block.text, encoding="utf-8")
    return meshward("policy", "test", str(copy))


def execute(block: Block, tmp_path: Path, up: Up | None = None) -> None:
    """Run ``block`` as its marker says; raise ``AssertionError`` if it fails."""
    kind = (block.language, block.option("kind"))
    if block.language == "python":
        done = run_python(block, tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
    elif block.language == "sh":
        if block.option("setup") == "up" and up is None:
            raise AssertionError(f"{block.id}: setup=up needs a running meshward up")
        done = run_sh(block, tmp_path, up)
        expected = int(block.option("exit", "0"))
        assert done.returncode == expected, (
            f"exit {done.returncode}, expected {expected}\n{done.stdout}{done.stderr}"
        )
        decision = block.option("expect")
        if decision:
            assert json.loads(done.stdout)["decision"] == decision, done.stdout
    elif block.language == "cedar":
        errors = check_cedar(block)
        assert not errors, errors
    elif kind == ("yaml", "envoy"):
        assert parse_bootstrap(yaml.safe_load(block.text)).ByteSize() > 0
    elif kind == ("yaml", "policy-test"):
        done = run_policy_test(block, tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
    else:
        raise AssertionError(f"{block.id}: no runner for a runnable {' '.join(block.info)!r}")


def test_the_article_has_runnable_examples_of_each_kind() -> None:
    article = [b for b in RUNNABLE if b.source.name == "service-mesh-architecture.md"]
    kinds = {(b.language, b.option("kind")) for b in article}
    assert {("cedar", ""), ("yaml", "envoy"), ("yaml", "policy-test"), ("python", "")} <= kinds


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_runnable_block(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    up = request.getfixturevalue("meshward_up") if block.option("setup") == "up" else None
    execute(block, tmp_path, up)


# The runner must be able to fail.

_BAD = [
    ("python", "raise SystemExit(3)\n"),
    ("sh", "false\n"),
    ("cedar", 'permit (principal == NoSuchType::"x", action, resource);\n'),
    ("yaml kind=envoy", "static_resources: {listenerz: []}\n"),
    ("toml", "a = 1\n"),
]


@pytest.mark.parametrize(("info", "text"), _BAD, ids=[i for i, _ in _BAD])
def test_a_broken_block_fails(info: str, text: str, tmp_path: Path) -> None:
    block = Block(tmp_path / "x.md", 1, (*info.split()[:1], "runnable", *info.split()[1:]), text)
    with pytest.raises((AssertionError, json_format.ParseError)):
        execute(block, tmp_path)
