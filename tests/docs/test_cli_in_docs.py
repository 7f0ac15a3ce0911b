"""Every ``meshward …`` command line in the docs names a real command and real options.

The docs' shell blocks are parsed and each command is looked up in the CLI's
own command tree (what ``--help`` prints), so a renamed command or option
fails here rather than in a reader's terminal.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import typer.main

from meshward.cli import GLOBAL_OPTIONS, app
from tests.support.cli import REPO
from tests.support.markdown import blocks, markdown_files

ROOT = typer.main.get_command(app)
_INVOCATION = re.compile(r"(?:^\s*|[|;&(]\s*|\$\s+)meshward\s+([^|;&#)\n]*)", re.M)


def _lines() -> list[tuple[str, str]]:
    out = []
    for path in markdown_files(REPO):
        for block in blocks(path):
            if block.language not in ("sh", "bash", "shell", "console", ""):
                continue
            text = block.text.replace("\\\n", " ")
            for match in _INVOCATION.finditer(text):
                out.append((f"{path.relative_to(REPO)}:{block.line}", match.group(1).strip()))
    return out


LINES = _lines()


def _is_group(command: Any) -> bool:
    return hasattr(command, "get_command") and hasattr(command, "list_commands")


def _options(command: Any) -> set[str]:
    names: set[str] = set()
    for param in command.params:
        for opt in (*param.opts, *param.secondary_opts):
            names.add(opt)
    return names | {"--help", "-h"}


def test_the_docs_have_command_lines() -> None:
    assert len(LINES) > 40


def test_a_wrong_option_or_command_is_caught() -> None:
    for line in ("pdp serve --no-such-option", "ca no-such-command"):
        with pytest.raises(AssertionError):
            test_command_line_matches_the_cli("here", line)


@pytest.mark.parametrize(
    ("where", "line"), LINES, ids=[f"{where} {line[:40]}" for where, line in LINES]
)
def test_command_line_matches_the_cli(where: str, line: str) -> None:
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    command: Any = ROOT
    i = 0
    while i < len(words):
        word = words[i]
        if word.split("=", 1)[0] in GLOBAL_OPTIONS:
            i += 1 if "=" in word else 2
            continue
        if _is_group(command) and not word.startswith("-"):
            sub = command.get_command(None, word)
            assert sub is not None, f"{where}: `meshward {line}`: no command {word!r}"
            command = sub
            i += 1
            continue
        break
    assert not _is_group(command) or command is ROOT or i == len(words), (
        f"{where}: `meshward {line}` names a group, not a command"
    )
    known = _options(command) | set(GLOBAL_OPTIONS) | {"--version"}
    for word in words[i:]:
        if word.startswith("--") and len(word) > 2:
            name = word.split("=", 1)[0]
            assert name in known, f"{where}: `meshward {line}`: no option {name} on {command.name}"
