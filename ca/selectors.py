"""The selector types a registration entry may name, and a check for typos.

A selector is ``TYPE:VALUE``. The types are the ones an attestor or the node
agent actually produces; an entry naming any other type could never match,
so ``entry add``/``entry update`` refuse it and list the known types:

==========================  ==========================================
``k8s:ns:NAMESPACE``        Kubernetes service-account token (node)
``k8s:sa:NAME``             Kubernetes service-account token (node)
``agent:id:SPIFFE-ID``      delegated to the node agent with that ID
``unix:uid:N``              workload's user id (node agent)
``unix:gid:N``              workload's group id (node agent)
``unix:supplementary_gid:N``  a supplementary group (node agent)
``unix:path:/abs/exe``      workload's executable (node agent)
==========================  ==========================================
"""

from __future__ import annotations

from collections.abc import Iterable

from ca.errors import BadRequest

__all__ = ["SELECTOR_TYPES", "check_selectors"]

SELECTOR_TYPES = (
    "k8s:ns:",
    "k8s:sa:",
    "agent:id:",
    "unix:uid:",
    "unix:gid:",
    "unix:supplementary_gid:",
    "unix:path:",
)
_NUMERIC = ("unix:uid:", "unix:gid:", "unix:supplementary_gid:")
MAX_SELECTOR = 512


def _problem(selector: str) -> str | None:
    if len(selector) > MAX_SELECTOR:
        return "too long"
    kind = next((t for t in SELECTOR_TYPES if selector.startswith(t)), None)
    if kind is None:
        return f"unknown type; known: {', '.join(t + '…' for t in SELECTOR_TYPES)}"
    value = selector[len(kind) :]
    if not value:
        return "empty value"
    if kind in _NUMERIC and not value.isdigit():
        return "expected a number"
    if kind == "unix:path:" and not value.startswith("/"):
        return "expected an absolute path"
    return None


def check_selectors(selectors: Iterable[str]) -> frozenset[str]:
    """The selectors as a set; :class:`~ca.errors.BadRequest` naming every bad one."""
    found = frozenset(selectors)
    problems = [f"{s!r}: {p}" for s in sorted(found) if (p := _problem(s)) is not None]
    if problems:
        raise BadRequest("bad selector " + "; ".join(problems), code="bad_selector")
    return found
