from __future__ import annotations

from pathlib import Path

import pytest

from authz.errors import SourceError
from authz.sources.directory import DirectorySource
from authz.sources.factory import make_source, webhook_secret
from authz.sources.git import GitSource
from meshward.settings import PolicySourceSettings, load_settings


def test_git_url_or_directory(tmp_path: Path) -> None:
    settings = PolicySourceSettings(branch="prod", subdir="policies")
    git = make_source("https://example.test/p.git", settings, tmp_path)
    assert isinstance(git, GitSource)
    assert git.poll_interval == 30.0
    assert git.description == "git https://example.test/p.git branch prod subdir policies"
    assert str(git.git_dir).startswith(str(tmp_path / "policy-cache"))
    directory = make_source("./policies", settings, tmp_path)
    assert isinstance(directory, DirectorySource)
    assert directory.poll_interval == 2.0
    shadow = make_source("git@example.test:p.git", settings, tmp_path, branch="next", subdir="")
    assert shadow.description == "git git@example.test:p.git branch next"


def test_settings_from_environment_keep_the_secret_out_of_reprs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MESHWARD_POLICY_SOURCE__WEBHOOK_SECRET", "s3cr3t-value")
    monkeypatch.setenv("MESHWARD_POLICY_SOURCE__POLL_INTERVAL", "5")
    monkeypatch.setenv("MESHWARD_DECISION_LOG__REDACT", '["authorization", "x-api-key"]')
    settings = load_settings()
    assert settings.policy_source.poll_interval == 5.0
    assert settings.decision_log.redact == ("authorization", "x-api-key")
    assert "s3cr3t-value" not in repr(settings)
    assert "s3cr3t-value" not in str(settings.model_dump())
    assert webhook_secret(settings.policy_source) == b"s3cr3t-value"


def test_webhook_secret_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("from-a-file\n")
    assert webhook_secret(PolicySourceSettings(webhook_secret_file=path)) == b"from-a-file"
    assert webhook_secret(PolicySourceSettings()) is None
    path.write_text("\n")
    with pytest.raises(SourceError) as info:
        webhook_secret(PolicySourceSettings(webhook_secret_file=path))
    assert info.value.code == "bad_secret"
    with pytest.raises(SourceError) as info:
        webhook_secret(PolicySourceSettings(webhook_secret_file=tmp_path / "missing"))
    assert info.value.code == "bad_secret"


def test_each_worker_writes_its_own_decision_log() -> None:
    from authz.sources.runtime import for_worker

    settings = load_settings(overrides={"decision_log": {"path": "/var/log/d.jsonl"}})
    assert for_worker(settings, 3).decision_log.path == "/var/log/d.jsonl.3"
    assert for_worker(settings, 3).pdp == settings.pdp
    stdout = load_settings(overrides={"decision_log": {"path": "-"}})
    assert for_worker(stdout, 1).decision_log.path == "-"
