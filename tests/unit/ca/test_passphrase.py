"""One rule for the CA passphrase: passphrase_file, else the environment, else up's file."""

from __future__ import annotations

from pathlib import Path

import pytest

from ca.errors import MissingPassphrase
from ca.keystore import PASSPHRASE_ENV
from ca.passphrase import ca_passphrase, generated_passphrase_file
from meshward.settings import Settings


def _settings(tmp_path: Path, passphrase_file: Path | None = None) -> Settings:
    return Settings.model_validate(
        {"state_dir": tmp_path, "ca": {"passphrase_file": passphrase_file}}
    )


def test_the_file_setting_wins_over_the_environment(tmp_path: Path) -> None:
    file = tmp_path / "pass"
    file.write_text("from-file-123\n")
    settings = _settings(tmp_path, file)
    assert ca_passphrase(settings, {PASSPHRASE_ENV: "from-env-123"}) == b"from-file-123"


def test_the_environment_wins_over_the_generated_file(tmp_path: Path) -> None:
    generated_passphrase_file(_settings(tmp_path)).write_text("generated-123")
    env = {PASSPHRASE_ENV: "from-env-123"}
    assert ca_passphrase(_settings(tmp_path), env) == b"from-env-123"


def test_up_generates_once_and_every_command_finds_it(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    made = ca_passphrase(settings, {}, generate=True)
    assert len(made) >= 32
    assert generated_passphrase_file(settings).stat().st_mode & 0o777 == 0o600
    assert ca_passphrase(settings, {}) == made
    assert ca_passphrase(settings, {}, generate=True) == made


@pytest.mark.parametrize(
    ("env", "file"),
    [({}, None), ({PASSPHRASE_ENV: "short"}, None), ({}, Path("/nonexistent/pass"))],
)
def test_missing_or_short_passphrases_are_refused(
    tmp_path: Path, env: dict[str, str], file: Path | None
) -> None:
    with pytest.raises(MissingPassphrase):
        ca_passphrase(_settings(tmp_path, file), env)
