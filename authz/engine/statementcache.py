"""What a bundle check learnt about each policy statement, kept for the next check.

A new version of a 10,000-policy repository usually changes a handful of
policies. Parsing a statement and validating it against a schema depend on
nothing else — not on the file it is in, its position, or the other
policies (Cedar validates each policy on its own) — so the checking process
remembers, per statement text:

- the parse: Cedar's JSON form, the effect, the ``@id`` annotation and the
  scope index keys (:func:`authz.engine.slicing.scope_keys`);
- per schema (keyed by the SHA-256 of the schema text): the validation
  errors Cedar reported for it, as Cedar worded them. A changed schema is a
  new key, so every statement is validated again against it.

and, per policy file, its last text and statements, so a file that changed
in one place is split again only around that place
(:func:`authz.engine.cedarsource.resplit_statements`).

Only successes are kept: a statement that does not parse, or a validation
that failed as a whole, is worked out afresh every time. The checks give the
same problems, policies and index as a check from nothing (property-tested in
``tests/unit/authz/test_statementcache.py``).

Memory is bounded by the versions checked, not by time: what the last
``generations`` checks used is kept (two by default: the active version and
a shadow or candidate one), everything else is dropped at :meth:`commit`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from authz.engine.cedarsource import Statement, resplit_statements, split_statements
from authz.engine.slicing import ScopeKeys

__all__ = ["ParsedStatement", "StatementCache", "schema_key"]


@dataclass(frozen=True, slots=True)
class ParsedStatement:
    """One statement parsed into a static policy."""

    json_text: str
    effect: str
    annotated_id: str | None  # the @id annotation, if any
    scope: ScopeKeys | None  # None: a scope the index cannot file (the engine refuses it)


def schema_key(schema_text: str) -> str:
    return hashlib.sha256(schema_text.encode()).hexdigest()


class StatementCache:
    """Parses and validation errors by statement text (see the module docstring).

    Not thread-safe: one check at a time, as the checking process runs them.
    """

    def __init__(self, generations: int = 2) -> None:
        if generations < 1:
            raise ValueError("generations must be at least 1")
        self._generations = generations
        self._current: dict[tuple[str, ...], Any] = {}
        self._older: list[dict[tuple[str, ...], Any]] = []

    def _get(self, key: tuple[str, ...]) -> Any:
        found = self._current.get(key)
        if found is not None:
            return found
        for generation in self._older:
            found = generation.get(key)
            if found is not None:
                self._current[key] = found
                return found
        return None

    def parsed(self, text: str) -> ParsedStatement | None:
        found: ParsedStatement | None = self._get(("parse", text))
        return found

    def remember_parsed(self, text: str, parsed: ParsedStatement) -> None:
        self._current[("parse", text)] = parsed

    def errors(self, schema: str, text: str) -> tuple[str, ...] | None:
        """Cedar's validation errors of ``text`` under ``schema`` (a :func:`schema_key`)."""
        found: tuple[str, ...] | None = self._get(("valid", schema, text))
        return found

    def remember_errors(self, schema: str, text: str, errors: tuple[str, ...]) -> None:
        self._current[("valid", schema, text)] = errors

    def statements(self, file: str, text: str) -> list[Statement]:
        """``split_statements(text)`` of the policy file ``file``, re-splitting only
        what changed since the text this cache last saw for that file."""
        previous: tuple[str, list[Statement]] | None = self._get(("file", file))
        statements = (
            split_statements(text)
            if previous is None
            else resplit_statements(previous[0], previous[1], text)
        )
        self._current[("file", file)] = (text, statements)
        return statements

    def commit(self) -> None:
        """End of one check: keep what the last ``generations`` checks used."""
        self._older = [self._current, *self._older][: self._generations]
        self._current = {}

    def __len__(self) -> int:
        keys: set[tuple[str, ...]] = set(self._current)
        for generation in self._older:
            keys.update(generation)
        return len(keys)
