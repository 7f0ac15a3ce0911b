"""Replay: what would a candidate policy set have decided on logged traffic?

Each decision log line (see :mod:`authz.observe.decisionlog`) is turned back into the
:class:`~authz.engine.model.AccessRequest` it recorded — principal with parents and
attributes, action, resource, context — evaluated with the candidate engine,
and compared with the logged decision. The report counts changed decisions by
principal, action, resource and transition (``allow->deny``), and keeps the
first few as examples.

Redacted values cannot be replayed: a line with redacted values is evaluated
with the placeholder ``[redacted]`` in their place and counted under
``with_redacted``; a changed decision on such a line is flagged in its
example, since a policy reading a redacted value sees the placeholder.
Decisions made before a request existed (failed authentication, malformed
input) are logged with ``"replayable": false`` and counted, not replayed.
Lines that are not decision log entries are counted and reported by number,
never silently skipped.

Errors (drawn in :mod:`authz.errors`)::

    ReplayError           the log or the candidate policies cannot be read
     └── BadLogEntry      one line is not a decision (reported as a BadLine)
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from authz.engine.model import (
    AccessRequest,
    Decision,
    Effect,
    EntityUid,
    Identity,
    InvalidEntityUid,
)
from authz.errors import BadLogEntry, ReplayError

__all__ = [
    "BadLine",
    "Change",
    "LoggedDecision",
    "NotReplayable",
    "ReplayError",
    "ReplayReport",
    "parse_entry",
    "read_log",
    "replay",
]


@dataclass(frozen=True, slots=True)
class LoggedDecision:
    """One decision log line, as a request that can be evaluated again."""

    line: int
    decision_id: str
    policy_version: str
    request: AccessRequest
    effect: Effect
    redacted: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BadLine:
    line: int
    error: str


def _uid(entry: Mapping[str, Any], key: str) -> EntityUid:
    value = entry.get(key)
    if not isinstance(value, str):
        raise BadLogEntry(f"{key}: missing")
    return EntityUid.parse(value)


def parse_entry(entry: Any, line: int = 0) -> LoggedDecision:
    """The :class:`LoggedDecision` of one parsed log line; raises :class:`BadLogEntry`."""
    if not isinstance(entry, Mapping):
        raise BadLogEntry("not a JSON object")
    try:
        parents = tuple(EntityUid.parse(p) for p in entry.get("principal_parents") or ())
        principal = _uid(entry, "principal")
        action = _uid(entry, "action")
        resource = _uid(entry, "resource")
    except InvalidEntityUid as exc:
        raise BadLogEntry(str(exc)) from exc
    attributes = entry.get("principal_attributes")
    attributes = {} if attributes is None else attributes
    context = entry.get("context")
    context = {} if context is None else context
    if not isinstance(attributes, Mapping) or not isinstance(context, Mapping):
        raise BadLogEntry("principal_attributes and context must be objects")
    try:
        effect = Effect(str(entry.get("decision")))
    except ValueError as exc:
        raise BadLogEntry("decision: expected 'allow' or 'deny'") from exc
    redacted = entry.get("redacted") or ()
    return LoggedDecision(
        line=line,
        decision_id=str(entry.get("decision_id", "")),
        policy_version=str(entry.get("policy_version", "")),
        request=AccessRequest(Identity(principal, parents, attributes), action, resource, context),
        effect=effect,
        redacted=tuple(str(r) for r in redacted),
    )


@dataclass(frozen=True, slots=True)
class NotReplayable:
    """A decision made before a request existed (authentication failed, malformed input)."""

    line: int


def read_log(lines: Iterable[str]) -> Iterator[LoggedDecision | BadLine | NotReplayable]:
    """Parse decision log lines; blank lines are skipped, malformed ones yielded as BadLine."""
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            entry = json.loads(text)
            if isinstance(entry, Mapping) and entry.get("replayable") is False:
                yield NotReplayable(number)
                continue
            yield parse_entry(entry, number)
        except (ValueError, BadLogEntry) as exc:  # json.JSONDecodeError is a ValueError
            yield BadLine(number, str(exc)[:200])


@dataclass(frozen=True, slots=True)
class Change:
    logged: LoggedDecision
    candidate: Decision

    @property
    def transition(self) -> str:
        return f"{self.logged.effect.value}->{self.candidate.effect.value}"

    def to_json(self) -> dict[str, Any]:
        req = self.logged.request
        return {
            "line": self.logged.line,
            "decision_id": self.logged.decision_id,
            "principal": str(req.principal),
            "action": str(req.action),
            "resource": str(req.resource),
            "logged": self.logged.effect.value,
            "logged_version": self.logged.policy_version,
            "candidate": self.candidate.effect.value,
            "candidate_reasons": list(self.candidate.reasons),
            "candidate_errors": list(self.candidate.errors),
            "redacted_inputs": list(self.logged.redacted),
        }


@dataclass
class ReplayReport:
    """The outcome of one replay."""

    candidate_version: str = ""
    replayed: int = 0
    changed: int = 0
    with_redacted: int = 0
    not_replayable: int = 0
    bad_lines: list[BadLine] = field(default_factory=list)
    by_principal: Counter[str] = field(default_factory=Counter)
    by_action: Counter[str] = field(default_factory=Counter)
    by_resource: Counter[str] = field(default_factory=Counter)
    by_transition: Counter[str] = field(default_factory=Counter)
    examples: list[Change] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "candidate_version": self.candidate_version,
            "replayed": self.replayed,
            "changed": self.changed,
            "with_redacted": self.with_redacted,
            "not_replayable": self.not_replayable,
            "bad_lines": [{"line": b.line, "error": b.error} for b in self.bad_lines],
            "by_principal": dict(self.by_principal.most_common()),
            "by_action": dict(self.by_action.most_common()),
            "by_resource": dict(self.by_resource.most_common()),
            "by_transition": dict(self.by_transition.most_common()),
            "examples": [c.to_json() for c in self.examples],
        }

    def to_text(self) -> str:
        out = [
            f"replayed {self.replayed} decisions against {self.candidate_version}: "
            f"{self.changed} changed"
        ]
        if self.with_redacted:
            out.append(f"{self.with_redacted} entries had redacted values (see docs/policies.md)")
        if self.not_replayable:
            out.append(
                f"{self.not_replayable} decisions were made before a request existed "
                "(authentication failed, malformed input) and are not replayed"
            )
        if self.bad_lines:
            nums = ", ".join(str(b.line) for b in self.bad_lines[:20])
            out.append(f"{len(self.bad_lines)} lines are not decision log entries: {nums}")
        for title, counter in (
            ("transition", self.by_transition),
            ("principal", self.by_principal),
            ("action", self.by_action),
            ("resource", self.by_resource),
        ):
            if counter:
                out.append(f"changed by {title}:")
                out.extend(f"  {count:>7}  {key}" for key, count in counter.most_common(20))
        if self.examples:
            out.append(f"first {len(self.examples)} changes:")
            for c in self.examples:
                note = "  (redacted inputs)" if c.logged.redacted else ""
                out.append(
                    f"  line {c.logged.line}: {c.logged.request.principal} "
                    f"{c.logged.request.action} {c.logged.request.resource}: "
                    f"{c.transition}{note}"
                )
        return "\n".join(out)


def replay(
    entries: Iterable[LoggedDecision | BadLine | NotReplayable],
    evaluate: Callable[[AccessRequest], Decision],
    *,
    candidate_version: str = "",
    examples: int = 10,
) -> ReplayReport:
    """Evaluate every logged request with ``evaluate`` and report the changed decisions."""
    report = ReplayReport(candidate_version=candidate_version)
    for item in entries:
        if isinstance(item, BadLine):
            report.bad_lines.append(item)
            continue
        if isinstance(item, NotReplayable):
            report.not_replayable += 1
            continue
        report.replayed += 1
        if item.redacted:
            report.with_redacted += 1
        decision = evaluate(item.request)
        if decision.effect is item.effect:
            continue
        change = Change(item, decision)
        report.changed += 1
        report.by_principal[str(item.request.principal)] += 1
        report.by_action[str(item.request.action)] += 1
        report.by_resource[str(item.request.resource)] += 1
        report.by_transition[change.transition] += 1
        if len(report.examples) < examples:
            report.examples.append(change)
    return report
