"""A bundle's policies: :class:`Policy` values, kept as columns in a :class:`PolicyTable`.

A 10,000-policy bundle crosses from the checking child process to the serving
one (:mod:`authz.sources.bundles`). As 10,000 objects, each with a decoded
JSON tree, that costs the serving process seconds of work holding the GIL
its checks need. A :class:`PolicyTable` crosses as a few columns instead —
the ids, files and effects as tuples, the positions as arrays, the texts and
the JSON forms joined into one string per block of policies, with end
offsets — which unpickle in a few C calls. Each block is decoded by a Python
call of its own, so the unpickling thread can hand the GIL over between
blocks (megabytes decoded in one C call would hold it for milliseconds). A
:class:`Policy` is made from its row on first use, and its JSON form
(:attr:`Policy.json`) is decoded on first use too: the engine reads the JSON
of only the policies a request's slice holds.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

__all__ = ["Policy", "PolicyTable"]


@dataclass(frozen=True, slots=True)
class Policy:
    """One static policy: its stable id, where it is, its text and its Cedar JSON form."""

    id: str
    file: str
    line: int
    column: int
    text: str
    effect: str
    json_text: str = field(repr=False, compare=False)  # Cedar's JSON form, as text
    _json: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def json(self) -> Mapping[str, Any]:
        """The Cedar JSON form (decoded on first use, then kept)."""
        body = self._json
        if body is None:
            body = json.loads(self.json_text)
            object.__setattr__(self, "_json", body)  # a cache: the value never changes
        return body  # type: ignore[no-any-return]

    def __reduce__(self) -> tuple[Any, ...]:
        fields = (self.id, self.file, self.line, self.column, self.text, self.effect)
        return (Policy, (*fields, self.json_text))


_BLOCK = 256  # policies per joined block of text


def _joined(texts: Iterable[str]) -> tuple[tuple[str, ...], array[int]]:
    """``texts`` joined a block at a time, and where each ends in its block."""
    blocks: list[str] = []
    parts: list[str] = []
    ends = array("q")
    end = 0
    for text in texts:
        parts.append(text)
        end += len(text)
        ends.append(end)
        if len(parts) == _BLOCK:
            blocks.append("".join(parts))
            parts, end = [], 0
    if parts:
        blocks.append("".join(parts))
    return tuple(blocks), ends


class _Encoded:
    """A text that crosses processes as UTF-8 and is decoded by a Python call on arrival."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __reduce__(self) -> tuple[Any, ...]:
        return (_decoded, (self.text.encode(),))


def _decoded(data: bytes) -> str:
    return data.decode()


class PolicyTable(Sequence[Policy]):
    """An immutable sequence of policies stored as columns (see the module docstring)."""

    __slots__ = (
        "_columns",
        "_effects",
        "_files",
        "_ids",
        "_json_ends",
        "_jsons",
        "_lines",
        "_made",
        "_text_ends",
        "_texts",
    )

    def __init__(
        self,
        ids: tuple[str, ...],
        files: tuple[str, ...],
        lines: array[int],
        columns: array[int],
        effects: tuple[str, ...],
        texts: tuple[str, ...],
        text_ends: array[int],
        jsons: tuple[str, ...],
        json_ends: array[int],
    ) -> None:
        """``texts`` and ``jsons``: blocks of ``_BLOCK`` policies' texts joined;
        ``*_ends``: where each policy's text ends in its block."""
        count = len(ids)
        blocks = -(-count // _BLOCK)
        if not (
            len(files) == len(lines) == len(columns) == len(effects) == count
            and len(text_ends) == len(json_ends) == count
            and len(texts) == len(jsons) == blocks
        ):
            raise ValueError("policy table columns differ in length")
        self._ids = ids
        self._files = files
        self._lines = lines
        self._columns = columns
        self._effects = effects
        self._texts = texts
        self._text_ends = text_ends
        self._jsons = jsons
        self._json_ends = json_ends
        self._made: list[Policy | None] = [None] * count

    @classmethod
    def of(cls, policies: Iterable[Policy]) -> PolicyTable:
        rows = list(policies)
        texts, text_ends = _joined(p.text for p in rows)
        jsons, json_ends = _joined(p.json_text for p in rows)
        table = cls(
            tuple(p.id for p in rows),
            tuple(p.file for p in rows),
            array("q", (p.line for p in rows)),
            array("q", (p.column for p in rows)),
            tuple(p.effect for p in rows),
            texts,
            text_ends,
            jsons,
            json_ends,
        )
        table._made = list(rows)
        return table

    @property
    def ids(self) -> tuple[str, ...]:
        """Every policy's id, in order (without making the policies)."""
        return self._ids

    def effect(self, index: int) -> str:
        return self._effects[index]

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, index: int) -> Policy: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Policy, ...]: ...

    def __getitem__(self, index: int | slice) -> Policy | tuple[Policy, ...]:
        if isinstance(index, slice):
            return tuple(self._row(i) for i in range(*index.indices(len(self._ids))))
        return self._row(index)

    def _row(self, index: int) -> Policy:
        made = self._made[index]
        if made is None:
            if index < 0:
                index += len(self._ids)
            block, within = divmod(index, _BLOCK)
            text_start = self._text_ends[index - 1] if within else 0
            json_start = self._json_ends[index - 1] if within else 0
            made = Policy(
                self._ids[index],
                self._files[index],
                self._lines[index],
                self._columns[index],
                self._texts[block][text_start : self._text_ends[index]],
                self._effects[index],
                self._jsons[block][json_start : self._json_ends[index]],
            )
            self._made[index] = made
        return made

    def release(self) -> list[Policy]:
        """Forget the policies made so far and return them (to be freed a piece at a time)."""
        made = [p for p in self._made if p is not None]
        self._made = [None] * len(self._ids)
        return made

    def __iter__(self) -> Iterator[Policy]:
        for index in range(len(self._ids)):
            yield self._row(index)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PolicyTable):
            return NotImplemented
        return self._wire() == other._wire()

    def __hash__(self) -> int:
        return hash(self._ids)

    def __repr__(self) -> str:
        return f"PolicyTable({len(self._ids)} policies)"

    def _wire(self) -> tuple[Any, ...]:
        return (
            self._ids,
            self._files,
            self._lines,
            self._columns,
            self._effects,
            self._texts,
            self._text_ends,
            self._jsons,
            self._json_ends,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        wire = list(self._wire())
        wire[5] = tuple(_Encoded(block) for block in self._texts)
        wire[7] = tuple(_Encoded(block) for block in self._jsons)
        return (PolicyTable, tuple(wire))
