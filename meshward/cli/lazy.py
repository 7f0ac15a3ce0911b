"""The top-level command group, which imports a command's module only when it is run.

Each command module (:mod:`meshward.cli.commands`) imports what it needs at
its top — the CA, the PDP, cryptography, pydantic — and exposes its Typer
``app``. ``meshward --help`` lists the commands from :class:`LazyCommand`
entries alone, so it imports none of them; ``meshward ca …`` imports only the
CA's commands. A test checks that each entry's help is the command's own.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from gettext import gettext

import typer
from typer import _click as click
from typer._click.utils import make_default_short_help
from typer.core import TyperGroup

__all__ = ["LazyCommand", "LazyGroup"]


@dataclass(frozen=True)
class LazyCommand:
    """A command's name, the module whose ``app`` runs it, and its help (first paragraph).

    ``group``: the ``app`` is a group of subcommands (even of one); otherwise
    it holds the one command itself.
    """

    name: str
    module: str
    help: str
    group: bool = True


class _Loaded(Mapping[str, click.Command]):
    """Name -> click command, importing the command's module on first use."""

    def __init__(self, entries: tuple[LazyCommand, ...]) -> None:
        self._entries = {e.name: e for e in entries}
        self._loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        command = self._loaded.get(name)
        if command is None:
            entry = self._entries[name]
            app = importlib.import_module(entry.module).app
            command = typer.main.get_group(app) if entry.group else typer.main.get_command(app)
            self._loaded[name] = command
        return command

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


class LazyGroup(TyperGroup):
    """A Typer group over :attr:`entries` (set by a subclass), loaded one at a time."""

    entries: tuple[LazyCommand, ...] = ()

    def __init__(self, **attrs: object) -> None:
        super().__init__(**attrs)  # type: ignore[arg-type]
        self.commands = _Loaded(self.entries)  # type: ignore[assignment]

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [e.name for e in self.entries]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As Typer lists commands, but from the entries: no command module is imported."""
        if not self.entries:
            return
        limit = formatter.width - 6 - max(len(e.name) for e in self.entries)
        rows = [(e.name, make_default_short_help(e.help, limit)) for e in self.entries]
        with formatter.section(gettext("Commands")):
            formatter.write_dl(rows)
