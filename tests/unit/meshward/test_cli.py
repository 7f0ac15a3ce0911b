from __future__ import annotations

from tests.support.cli import meshward


def test_version_and_help() -> None:
    out = meshward("--version")
    assert out.returncode == 0
    assert out.stdout.startswith("meshward ")
    helped = meshward("--help")
    assert helped.returncode == 0
    assert "up" in helped.stdout


def test_bad_config_exits_2_naming_the_setting(tmp_path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[pdp]\nworkers = -1\n")
    out = meshward("--config", str(cfg), "up")
    assert out.returncode == 2
    assert "pdp.workers" in out.stderr
