"""The root of meshward's errors, shared by every component.

Each component has one base error under :class:`MeshwardError` (its tree
drawn in that module's docstring); every error carries a snake_case
``code`` that doubles as a metric label and an API error code::

    MeshwardError
    ├── SpiffeError          meshward.spiffe (invalid IDs, bundles, SVIDs)
    ├── SettingsError        meshward.settings
    ├── AuthzError           authz.errors (the PDP)
    ├── CaError              ca.errors (the CA)
    ├── AgentError           the node agent
    └── ConsoleError         console.errors (the web console)
"""

from __future__ import annotations

__all__ = ["MeshwardError"]


class MeshwardError(Exception):
    """Something meshward refuses or cannot do; ``code`` names it (snake_case)."""

    code: str = "error"
