"""The policy schema as a diagram: entity types, their parents, actions and what they apply to.

:func:`outline` reads the Cedar schema's human format just far enough for a
picture (names, ``in [...]`` parents, ``appliesTo`` principal and resource
types); validation stays with cedarpy. :func:`render` draws it as SVG (pure).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape

__all__ = ["ActionInfo", "EntityInfo", "SchemaOutline", "outline", "render"]

_COMMENT = re.compile(r"//[^\n]*")
_NAMESPACE = re.compile(r"namespace\s+([A-Za-z_][\w:]*)\s*\{")
_ENTITY = re.compile(
    r"\bentity\s+([A-Za-z_][\w\s,]*?)(?:\s+in\s+\[([^\]]*)\])?\s*(?:=\s*)?(?:\{|;|enum\b)"
)
_ACTION = re.compile(
    r"\baction\s+((?:\"[^\"]*\"|[A-Za-z_]\w*)(?:\s*,\s*(?:\"[^\"]*\"|[A-Za-z_]\w*))*)"
    r"(?:\s+in\s+\[([^\]]*)\])?\s*(?:appliesTo\s*\{([^}]*(?:\{[^}]*\}[^}]*)*)\})?\s*;",
    re.S,
)
_APPLIES = re.compile(r"\b(principal|resource)\s*:\s*\[([^\]]*)\]")


@dataclass(frozen=True, slots=True)
class EntityInfo:
    name: str
    parents: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ActionInfo:
    name: str
    groups: tuple[str, ...]
    principals: tuple[str, ...]
    resources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SchemaOutline:
    namespace: str
    entities: tuple[EntityInfo, ...]
    actions: tuple[ActionInfo, ...]


def _names(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    return tuple(n.strip().strip('"') for n in text.split(",") if n.strip())


def outline(schema_text: str) -> SchemaOutline:
    """The entity types and actions declared in ``schema_text`` (unknown syntax is skipped)."""
    text = _COMMENT.sub("", schema_text)
    namespace = _NAMESPACE.search(text)
    entities = [
        EntityInfo(name, _names(m.group(2)))
        for m in _ENTITY.finditer(text)
        for name in _names(m.group(1))
    ]
    actions: list[ActionInfo] = []
    for m in _ACTION.finditer(text):
        applies = dict((k, _names(v)) for k, v in _APPLIES.findall(m.group(3) or ""))
        actions.extend(
            ActionInfo(
                name,
                _names(m.group(2)),
                applies.get("principal", ()),
                applies.get("resource", ()),
            )
            for name in _names(m.group(1))
        )
    return SchemaOutline(namespace.group(1) if namespace else "", tuple(entities), tuple(actions))


_BOX_W, _BOX_H, _GAP = 150, 26, 12


def render(schema: SchemaOutline) -> str:
    """An SVG: entity types on the left (arrows to their parents), actions on the right."""
    left_x, right_x = 20, 420
    ent_y = {e.name: 30 + i * (_BOX_H + _GAP) for i, e in enumerate(schema.entities)}
    act_y = {a.name: 30 + i * (_BOX_H + _GAP) for i, a in enumerate(schema.actions)}
    height = 40 + max(len(ent_y), len(act_y), 1) * (_BOX_H + _GAP)
    parts = [
        f'<text class="head" x="{left_x}" y="16">entity types</text>',
        f'<text class="head" x="{right_x}" y="16">actions</text>',
    ]
    mid = _BOX_H // 2
    for entity in schema.entities:
        y = ent_y[entity.name]
        for parent in entity.parents:
            if parent in ent_y:
                py = ent_y[parent]
                bend = left_x - 14 - (abs(py - y) // 6)
                parts.append(
                    f'<path class="member" d="M{left_x} {y + mid} C{bend} {y + mid} '
                    f'{bend} {py + mid} {left_x} {py + mid}" marker-end="url(#arrow)">'
                    f"<title>{escape(entity.name)} in {escape(parent)}</title></path>"
                )
    for action in schema.actions:
        y = act_y[action.name]
        for target in (*action.principals, *action.resources):
            if target in ent_y:
                ty = ent_y[target]
                parts.append(
                    f'<line class="applies" x1="{right_x}" y1="{y + mid}" '
                    f'x2="{left_x + _BOX_W}" y2="{ty + mid}"/>'
                )
    for entity in schema.entities:
        y = ent_y[entity.name]
        parts.append(
            f'<g class="entity"><rect x="{left_x}" y="{y}" width="{_BOX_W}" height="{_BOX_H}" '
            f'rx="4"/><text x="{left_x + 8}" y="{y + 17}">{escape(entity.name)}</text></g>'
        )
    for action in schema.actions:
        y = act_y[action.name]
        groups = f" in {', '.join(action.groups)}" if action.groups else ""
        parts.append(
            f'<g class="action"><rect x="{right_x}" y="{y}" width="{_BOX_W + 60}" '
            f'height="{_BOX_H}" rx="13"/><text x="{right_x + 10}" y="{y + 17}">'
            f"{escape(action.name + groups)}</text></g>"
        )
    title = f"schema {schema.namespace}".strip()
    return (
        f'<svg class="schema" role="img" viewBox="0 0 660 {height}" width="660" '
        f'height="{height}"><title>{escape(title)}</title><defs><marker id="arrow" '
        'viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" '
        'orient="auto-start-reverse"><path d="M0 0 L10 5 L0 10 z"/></marker></defs>'
        f"{''.join(parts)}</svg>"
    )
