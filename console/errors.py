"""The console's base error (the tree is drawn in :mod:`console`'s docstring)."""

from __future__ import annotations

from meshward.errors import MeshwardError

__all__ = ["ConsoleError"]


class ConsoleError(MeshwardError):
    """The console cannot do what was asked; raised as is when it cannot start as configured."""

    code = "console_error"
