"""The top-level commands load lazily, and ``meshward --help`` says what each command says."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer.main

from meshward.cli import COMMANDS, app
from tests.support.cli import REPO

ROOT = typer.main.get_command(app)


@pytest.mark.parametrize("entry", COMMANDS, ids=[e.name for e in COMMANDS])
def test_the_listed_help_is_the_commands_own(entry) -> None:
    """The entry's text is what the loaded command says of itself (so the two cannot drift)."""
    command = ROOT.get_command(None, entry.name)  # type: ignore[attr-defined]
    assert command is not None
    assert command.get_short_help_str(200) == entry.help


def test_running_one_command_loads_no_other_command_module() -> None:
    probe = (
        "import sys\n"
        "from meshward.cli import main\n"
        "sys.argv = ['meshward', 'policy', '--help']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "import json\n"
        "mods = sorted(m for m in sys.modules if m.startswith('meshward.cli.commands.'))\n"
        "print(json.dumps(mods))\n"
    )
    out = (
        subprocess.run(
            [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    loaded = set(json.loads(out))
    assert "meshward.cli.commands.policy" in loaded
    assert not loaded & {"meshward.cli.commands.ca", "meshward.cli.commands.pdp"}
