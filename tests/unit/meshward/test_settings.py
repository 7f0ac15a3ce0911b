from __future__ import annotations

from pathlib import Path

import pytest

from meshward.settings import SettingsError, load_settings


def test_defaults_are_the_contract_ports() -> None:
    s = load_settings()
    assert s.pdp.grpc_addr == "127.0.0.1:9191"
    assert s.pdp.http_addr == "127.0.0.1:8181"
    assert s.ca.addr == "127.0.0.1:8443"
    assert s.state_dir == Path(".meshward")


def test_precedence_cli_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text('[pdp]\nworkers = 2\ngrpc_addr = "0.0.0.0:1"\nhttp_addr = "0.0.0.0:2"\n')
    monkeypatch.setenv("MESHWARD_PDP__GRPC_ADDR", "127.0.0.2:3")
    s = load_settings(cfg, {"pdp": {"http_addr": "127.0.0.3:4", "workers": None}})
    assert s.pdp.workers == 2  # file (CLI left it unset)
    assert s.pdp.grpc_addr == "127.0.0.2:3"  # env over file
    assert s.pdp.http_addr == "127.0.0.3:4"  # CLI over file


def test_every_bad_setting_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text('log_level = "loud"\n[pdp]\ngrpc_addr = "nope"\nworkers = 0\n')
    with pytest.raises(SettingsError) as info:
        load_settings(cfg)
    text = str(info.value)
    for name in ("log_level", "pdp.grpc_addr", "pdp.workers"):
        assert f"setting {name}:" in text


def test_unknown_setting_and_bad_toml_are_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text("[pdp]\ngrcp_addr = '1.2.3.4:5'\n")
    with pytest.raises(SettingsError, match=r"pdp\.grcp_addr"):
        load_settings(cfg)
    cfg.write_text("[pdp\n")
    with pytest.raises(SettingsError, match="invalid TOML"):
        load_settings(cfg)
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "missing.toml")
