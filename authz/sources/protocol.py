"""The policy source protocol, with its optional abilities as separate protocols.

A source offers *revisions*: an immutable version string (a Git commit SHA, or
a content hash for a directory) and a way to write that version's files out.
What a source can additionally do is a separate protocol, checked with
``isinstance`` at wiring time:

- :class:`Refreshable` — contacts a remote to learn about new revisions
  (``git fetch``); a directory has nothing to refresh.
- :class:`Pollable` — wants to be looked at every ``poll_interval`` seconds.
- :class:`Pinnable` — can materialise a named revision that is not the latest
  (a replica asked to activate a commit announced by another one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["Pinnable", "PolicySource", "Pollable", "Refreshable", "Revision"]


@dataclass(frozen=True, slots=True)
class Revision:
    """One version of a policy source: ``version`` is stamped on every decision."""

    version: str
    source: str  # where it came from, safe to log (credentials redacted)


@runtime_checkable
class PolicySource(Protocol):
    """Something that holds policy files in versions."""

    @property
    def description(self) -> str:
        """Where the policies come from, safe to log."""
        ...

    def latest(self) -> Revision:
        """The newest revision known locally (no network); raises ``SourceError``."""
        ...

    def materialize(self, revision: Revision, dest: Path) -> Path:
        """Write ``revision``'s policy files under the empty directory ``dest``.

        Returns the directory that holds the bundle (``dest`` itself, or a
        subdirectory of it); raises ``SourceError``.
        """
        ...


@runtime_checkable
class Refreshable(Protocol):
    """A source that learns about new revisions from a remote."""

    def refresh(self) -> None:
        """Fetch from the remote; raises ``FetchError`` and keeps what it had."""
        ...


@runtime_checkable
class Pollable(Protocol):
    """A source that should be looked at periodically."""

    @property
    def poll_interval(self) -> float:
        """Seconds between two looks."""
        ...


@runtime_checkable
class Pinnable(Protocol):
    """A source that can resolve a revision other than the latest one."""

    def resolve(self, ref: str) -> Revision:
        """The revision named ``ref`` (a commit SHA, branch or tag); raises ``SourceError``."""
        ...
