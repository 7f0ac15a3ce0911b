"""The Git source against real repositories: a bare remote in tmp_path and a clone that pushes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from authz.errors import CheckoutError, FetchError, SourceError
from authz.sources.git import GitSource, is_git_url, redact_url
from authz.sources.protocol import Pinnable, PolicySource, Pollable, Refreshable
from tests.support.gitrepo import PolicyRepo


@pytest.fixture
def repo(tmp_path: Path) -> PolicyRepo:
    return PolicyRepo(tmp_path / "repo")


def _source(repo: PolicyRepo, tmp_path: Path, **kw: object) -> GitSource:
    return GitSource(repo.url, cache_dir=tmp_path / "cache", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("file:///srv/policies.git", True),
        ("https://example.test/org/policies.git", True),
        ("ssh://git@example.test/org/policies.git", True),
        ("git@example.test:org/policies.git", True),
        ("./policies", False),
        ("/srv/policies", False),
        ("policies", False),
    ],
)
def test_is_git_url(value: str, expected: bool) -> None:
    assert is_git_url(value) is expected


def test_redact_url_hides_userinfo() -> None:
    text = "fatal: unable to access 'https://bob:s3cret@example.test/x.git/': 403"
    out = redact_url(text)
    assert "s3cret" not in out and "bob" not in out
    assert "https://[redacted]@example.test/x.git/" in out


def test_fetch_latest_and_materialize(repo: PolicyRepo, tmp_path: Path) -> None:
    sha1 = repo.commit({"policies/a.cedar": "one", "README.md": "docs"})
    source = _source(repo, tmp_path, subdir="policies")
    source.refresh()
    rev = source.latest()
    assert rev.version == sha1
    dest = tmp_path / "out1"
    dest.mkdir()
    out = source.materialize(rev, dest)
    assert sorted(p.name for p in out.iterdir()) == ["a.cedar"]
    assert (out / "a.cedar").read_text() == "one"

    sha2 = repo.commit({"policies/a.cedar": "two"})
    assert source.latest().version == sha1  # nothing new until the next fetch
    source.refresh()
    assert source.latest().version == sha2
    # an older commit that was fetched can still be pinned and read
    assert source.resolve(sha1).version == sha1
    dest2 = tmp_path / "out2"
    dest2.mkdir()
    assert (source.materialize(source.resolve(sha1), dest2) / "a.cedar").read_text() == "one"


def test_force_pushed_branch_is_followed(repo: PolicyRepo, tmp_path: Path) -> None:
    repo.commit({"a.cedar": "one"})
    source = _source(repo, tmp_path)
    source.refresh()
    subprocess.run(["git", "reset", "--quiet", "--hard", "HEAD"], cwd=repo.work, check=True)
    sha = repo.commit({"a.cedar": "rewritten"}, push=False)
    subprocess.run(
        ["git", "push", "--quiet", "--force", "origin", "HEAD:refs/heads/main"],
        cwd=repo.work,
        check=True,
        capture_output=True,
    )
    source.refresh()
    assert source.latest().version == sha


def test_missing_branch_and_unreachable_remote(repo: PolicyRepo, tmp_path: Path) -> None:
    repo.commit({"a.cedar": "one"})
    with pytest.raises(FetchError) as info:
        _source(repo, tmp_path, branch="nope").refresh()
    assert info.value.code == "no_branch"
    gone = GitSource((tmp_path / "gone.git").as_uri(), cache_dir=tmp_path / "c2")
    with pytest.raises(FetchError) as info:
        gone.refresh()
    assert info.value.code == "unreachable"
    with pytest.raises(FetchError) as info:
        gone.latest()
    assert info.value.code == "not_fetched"


def test_garbage_remote_is_a_fetch_error(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.git"
    bad.mkdir()
    (bad / "HEAD").write_bytes(b"\x00\xffnot a ref\n")
    (bad / "objects").mkdir()
    (bad / "refs").mkdir()
    with pytest.raises(FetchError) as info:
        GitSource(bad.as_uri(), cache_dir=tmp_path / "c").refresh()
    assert info.value.code in {"unreachable", "fetch_failed"}


def test_credentials_in_url_never_reach_errors(tmp_path: Path) -> None:
    url = "https://alice:hunter2@127.0.0.1:1/org/policies.git"
    source = GitSource(url, cache_dir=tmp_path / "c", timeout=20)
    assert "hunter2" not in source.description
    with pytest.raises(FetchError) as info:
        source.refresh()
    assert "hunter2" not in str(info.value)
    assert "alice" not in str(info.value)


def test_missing_subdir_is_a_checkout_error(repo: PolicyRepo, tmp_path: Path) -> None:
    repo.commit({"a.cedar": "one"})
    source = _source(repo, tmp_path, subdir="policies")
    source.refresh()
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(CheckoutError) as info:
        source.materialize(source.latest(), dest)
    assert info.value.code == "not_found"


@pytest.mark.parametrize(
    ("kw", "code"),
    [({"branch": "--upload-pack=x"}, "bad_branch"), ({"subdir": "../etc"}, "bad_subdir")],
)
def test_bad_branch_or_subdir_rejected(tmp_path: Path, kw: dict[str, str], code: str) -> None:
    with pytest.raises(SourceError) as info:
        GitSource("file:///x.git", cache_dir=tmp_path, **kw)  # type: ignore[arg-type]
    assert info.value.code == code


def test_abilities(tmp_path: Path) -> None:
    source = GitSource("file:///x.git", cache_dir=tmp_path)
    for proto in (PolicySource, Refreshable, Pollable, Pinnable):
        assert isinstance(source, proto)
