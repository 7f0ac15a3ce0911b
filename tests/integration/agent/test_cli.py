"""``meshward agent run`` through the real command line: configuration errors exit 2."""

from __future__ import annotations

from pathlib import Path

from meshward.clock import SystemClock
from tests.support.authority import LocalAuthority
from tests.support.cli import meshward


def test_help_lists_the_contract_options() -> None:
    done = meshward("agent", "run", "--help")
    assert done.returncode == 0
    for option in ("--ca-url", "--ca-bundle", "--socket", "--sds", "--write-dir", "--join-token"):
        assert option in done.stdout


def test_missing_ca_bundle_is_bad_configuration(tmp_path: Path) -> None:
    done = meshward("--state-dir", str(tmp_path), "agent", "run")
    assert done.returncode == 2
    assert "--ca-bundle" in done.stderr


def test_signal_without_pid_file_is_bad_configuration(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(LocalAuthority(SystemClock()).bundle().x509_pem)
    done = meshward(
        "--state-dir", str(tmp_path), "agent", "run", "--ca-bundle", str(bundle),
        "--write-dir", str(tmp_path / "out"), "--write-signal", "SIGHUP",
    )  # fmt: skip
    assert done.returncode == 2
    assert "--write-pid-file" in done.stderr


def test_not_a_bundle_is_bad_configuration(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    done = meshward("--state-dir", str(tmp_path), "agent", "run", "--ca-bundle", str(bundle))
    assert done.returncode == 2


def test_bad_setting_from_environment_is_reported(tmp_path: Path) -> None:
    done = meshward(
        "--state-dir", str(tmp_path), "agent", "run",
        env={"MESHWARD_AGENT__SYNC_INTERVAL": "-1"},
    )  # fmt: skip
    assert done.returncode == 2
    assert "agent.sync_interval" in done.stderr
