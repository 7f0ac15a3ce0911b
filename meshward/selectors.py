"""Selectors: the ``type:name:value`` facts an attestor proves and an entry requires.

One list of the selector kinds meshward knows, one parser, one validation,
shared by the CA (entries, attestation), the node agent (workload
attestation) and the CLI. A selector is ``<type>:<name>:<value>``:

=========================  ===============================================
``agent:id:<SPIFFE ID>``   the entry is delegated to the node agent with that ID
``k8s:ns:<namespace>``     Kubernetes projected service-account token
``k8s:sa:<account>``
``unix:uid:<n>``           the workload's peer credentials (Workload API, SDS)
``unix:gid:<n>``
``unix:supplementary_gid:<n>``
``unix:path:<abs path>``   the workload's executable
=========================  ===============================================
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from meshward.spiffe import InvalidSpiffeId, SpiffeId

__all__ = [
    "AGENT_SELECTOR_PREFIX",
    "KNOWN_SELECTORS",
    "InvalidSelector",
    "delegating_nodes",
    "Selector",
    "node_selector",
    "parse_selectors",
]

AGENT_SELECTOR_PREFIX = "agent:id:"
KNOWN_SELECTORS: frozenset[tuple[str, str]] = frozenset(
    {
        ("agent", "id"),
        ("k8s", "ns"),
        ("k8s", "sa"),
        ("unix", "uid"),
        ("unix", "gid"),
        ("unix", "supplementary_gid"),
        ("unix", "path"),
    }
)
_NUMERIC = frozenset({("unix", "uid"), ("unix", "gid"), ("unix", "supplementary_gid")})
MAX_SELECTOR = 1024


class InvalidSelector(ValueError):
    """A selector that is malformed or of an unknown kind; ``reason`` is a short code."""

    def __init__(self, reason: str, value: str) -> None:
        super().__init__(f"invalid selector {value[:80]!r}: {reason.replace('_', ' ')}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Selector:
    """A validated selector; ``str()`` gives back its one canonical spelling."""

    type: str
    name: str
    value: str

    @classmethod
    def parse(cls, text: object) -> Selector:
        if not isinstance(text, str) or not text or len(text) > MAX_SELECTOR:
            raise InvalidSelector("bad_size", str(text))
        parts = text.split(":", 2)
        if len(parts) != 3 or not parts[2]:
            raise InvalidSelector("not_type_name_value", text)
        kind, name, value = parts
        if (kind, name) not in KNOWN_SELECTORS:
            raise InvalidSelector("unknown_kind", text)
        if any(c.isspace() or not c.isprintable() for c in value):
            raise InvalidSelector("bad_value", text)
        if (kind, name) in _NUMERIC and not (value.isascii() and value.isdigit()):
            raise InvalidSelector("not_a_number", text)
        if (kind, name) == ("unix", "path") and not value.startswith("/"):
            raise InvalidSelector("not_absolute", text)
        if (kind, name) == ("agent", "id"):
            try:
                value = str(SpiffeId.parse(value))
            except InvalidSpiffeId as exc:
                raise InvalidSelector("bad_spiffe_id", text) from exc
        return cls(kind, name, value)

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{self.value}"


def parse_selectors(values: Iterable[object]) -> frozenset[str]:
    """Validate every selector; the canonical strings, or :class:`InvalidSelector`."""
    return frozenset(str(Selector.parse(v)) for v in values)


def node_selector(node_id: SpiffeId) -> str:
    """The selector that delegates an entry to the agent running as ``node_id``."""
    return f"{AGENT_SELECTOR_PREFIX}{node_id}"


def delegating_nodes(selectors: Iterable[str]) -> frozenset[SpiffeId]:
    """The node IDs named by ``agent:id:`` selectors (malformed ones name none)."""
    out = set()
    for selector in selectors:
        if selector.startswith(AGENT_SELECTOR_PREFIX):
            try:
                out.add(SpiffeId.parse(selector.removeprefix(AGENT_SELECTOR_PREFIX)))
            except InvalidSpiffeId:
                continue
    return frozenset(out)
