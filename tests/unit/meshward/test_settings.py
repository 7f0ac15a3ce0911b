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


def test_authorization_is_stripped_before_the_upstream_by_default() -> None:
    pdp = load_settings().pdp
    assert pdp.strip_authorization is True
    assert pdp.upstream_removed_headers() == ("authorization",)
    more = pdp.model_copy(update={"remove_headers": ("Cookie", "authorization")})
    assert more.upstream_removed_headers() == ("authorization", "cookie")
    kept = pdp.model_copy(update={"strip_authorization": False, "remove_headers": ("cookie",)})
    assert kept.upstream_removed_headers() == ("cookie",)


def test_trust_defaults_believe_only_what_is_proven() -> None:
    pdp = load_settings().pdp
    assert pdp.trust_bare_principal is False
    assert pdp.jwt_svid_any_destination_audiences == ()
    assert pdp.jwt_svid_audience_aliases == {}


def test_the_mesh_wide_jwt_audience_setting_is_gone(tmp_path: Path) -> None:
    config = tmp_path / "old.toml"
    config.write_text('[pdp]\njwt_audiences = ["meshward"]\n')
    with pytest.raises(SettingsError) as info:
        load_settings(config)
    assert "pdp.jwt_audiences" in str(info.value)


def test_audience_aliases_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "MESHWARD_PDP__JWT_SVID_AUDIENCE_ALIASES", '{"spiffe://td/payments": ["payments"]}'
    )
    aliases = load_settings().pdp.jwt_svid_audience_aliases
    assert aliases == {"spiffe://td/payments": ("payments",)}
