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


def test_global_options_after_the_subcommand_move_in_front() -> None:
    from meshward.cli import hoist_global_options

    argv = ["ca", "entry", "list", "--state-dir", "/s", "--log-level=debug", "--", "--config"]
    assert hoist_global_options(argv) == [
        "--state-dir", "/s", "--log-level=debug", "ca", "entry", "list", "--", "--config",
    ]  # fmt: skip
    assert hoist_global_options(["check", "--config"]) == ["check", "--config"]
