"""The console's errors sit under meshward's shared root, each with a snake_case code."""

from __future__ import annotations

import re

import pytest

from console.errors import ConsoleError
from console.server import ConsoleError as ServerConsoleError
from console.sources import Unavailable
from console.whatif import EditError
from meshward.errors import MeshwardError


@pytest.mark.parametrize(
    ("error", "code"),
    [(ConsoleError, "console_error"), (EditError, "bad_edit"), (Unavailable, "unavailable")],
)
def test_under_the_console_base_with_a_snake_case_code(
    error: type[ConsoleError], code: str
) -> None:
    assert issubclass(error, ConsoleError)
    assert issubclass(error, MeshwardError)
    assert error("x").code == code
    assert re.fullmatch(r"[a-z]+(_[a-z]+)*", code)


def test_one_console_error() -> None:
    assert ServerConsoleError is ConsoleError
