"""A bundle's policies: :class:`Policy` values, kept as columns in a :class:`PolicyTable`.

A 10,000-policy bundle crosses from the checking child process to the serving
one (:mod:`authz.sources.bundles`). As 10,000 objects, each with a decoded
JSON tree, that costs the serving process seconds of work holding the GIL
its checks need. A :class:`PolicyTable` is a tuple of blocks of 64
policies instead, each block a few columns — the ids, files and effects as
tuples, the positions as arrays, the texts and the JSON forms joined into
one string, with end offsets — which unpickle in a few C calls, a block at a
time (each block's texts are decoded by a Python call of its own, so the
unpickling thread can hand the GIL over between blocks).

A block is a :class:`~authz.engine.pieces.Piece`: immutable, named by a
digest of its content. A new version that edits one policy shares every
other block with the version before it, so the checking child sends only
the blocks that changed (:mod:`authz.sources.delta`) and the new table is
made from the held blocks plus those. A :class:`Policy` is made from its row
on first use (per table), and its JSON form (:attr:`Policy.json`) is decoded
on first use too: the engine reads the JSON of only the policies a
request's slice holds.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from authz.engine.pieces import Piece, content_digest

__all__ = ["BLOCK_SIZE", "Policy", "PolicyBlock", "PolicyTable"]


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


BLOCK_SIZE = 64  # policies per block: a one-policy change sends one block, tens of kilobytes
_BLOCK = BLOCK_SIZE


class PolicyBlock(Piece):
    """The columns of up to ``_BLOCK`` consecutive policies (immutable)."""

    __slots__ = (
        "_digest",
        "columns",
        "effects",
        "files",
        "ids",
        "json",
        "json_ends",
        "lines",
        "text",
        "text_ends",
    )

    def __init__(
        self,
        ids: tuple[str, ...],
        files: tuple[str, ...],
        lines: array[int],
        columns: array[int],
        effects: tuple[str, ...],
        text: str,
        text_ends: array[int],
        json: str,
        json_ends: array[int],
        digest: bytes | None = None,
    ) -> None:
        """``text`` and ``json``: the policies' texts and JSON forms joined;
        ``*_ends``: where each policy's ends in them."""
        count = len(ids)
        if not (
            0 < count <= _BLOCK
            and len(files) == len(lines) == len(columns) == len(effects) == count
            and len(text_ends) == len(json_ends) == count
        ):
            raise ValueError("policy table columns differ in length")
        self.ids = ids
        self.files = files
        self.lines = lines
        self.columns = columns
        self.effects = effects
        self.text = text
        self.text_ends = text_ends
        self.json = json
        self.json_ends = json_ends
        self._digest = digest

    @classmethod
    def of(cls, rows: Sequence[Policy]) -> PolicyBlock:
        return cls(
            tuple(p.id for p in rows),
            tuple(p.file for p in rows),
            array("q", (p.line for p in rows)),
            array("q", (p.column for p in rows)),
            tuple(p.effect for p in rows),
            "".join(p.text for p in rows),
            _ends(p.text for p in rows),
            "".join(p.json_text for p in rows),
            _ends(p.json_text for p in rows),
        )

    def __len__(self) -> int:
        return len(self.ids)

    def row(self, within: int) -> Policy:
        text_start = self.text_ends[within - 1] if within else 0
        json_start = self.json_ends[within - 1] if within else 0
        return Policy(
            self.ids[within],
            self.files[within],
            self.lines[within],
            self.columns[within],
            self.text[text_start : self.text_ends[within]],
            self.effects[within],
            self.json[json_start : self.json_ends[within]],
        )

    @property
    def digest(self) -> bytes:
        digest = self._digest
        if digest is None:
            digest = self._digest = content_digest(
                repr((self.ids, self.files, self.effects)).encode("utf-8", "surrogatepass"),
                self.lines.tobytes(),
                self.columns.tobytes(),
                self.text.encode("utf-8", "surrogatepass"),
                self.text_ends.tobytes(),
                self.json.encode("utf-8", "surrogatepass"),
                self.json_ends.tobytes(),
            )
        return digest

    def _content(self) -> tuple[Any, ...]:
        return (
            self.ids,
            self.files,
            self.lines,
            self.columns,
            self.effects,
            self.text,
            self.text_ends,
            self.json,
            self.json_ends,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PolicyBlock):
            return NotImplemented
        return self is other or self._content() == other._content()

    def __hash__(self) -> int:
        return hash(self.ids)

    def __reduce__(self) -> tuple[Any, ...]:
        # The texts cross as UTF-8 and are decoded by a Python call on arrival.
        wire = list(self._content())
        wire[5] = self.text.encode("utf-8", "surrogatepass")
        wire[7] = self.json.encode("utf-8", "surrogatepass")
        return (_block_from_wire, (*wire, self.digest))


def _ends(texts: Iterable[str]) -> array[int]:
    ends = array("q")
    end = 0
    for text in texts:
        end += len(text)
        ends.append(end)
    return ends


def _block_from_wire(
    ids: tuple[str, ...],
    files: tuple[str, ...],
    lines: array[int],
    columns: array[int],
    effects: tuple[str, ...],
    text: bytes,
    text_ends: array[int],
    json: bytes,
    json_ends: array[int],
    digest: bytes,
) -> PolicyBlock:
    return PolicyBlock(
        ids,
        files,
        lines,
        columns,
        effects,
        text.decode("utf-8", "surrogatepass"),
        text_ends,
        json.decode("utf-8", "surrogatepass"),
        json_ends,
        digest,
    )


class PolicyTable(Sequence[Policy]):
    """An immutable sequence of policies stored in blocks (see the module docstring)."""

    __slots__ = ("_blocks", "_count", "_ids", "_made")

    def __init__(self, blocks: Iterable[PolicyBlock]) -> None:
        """``blocks``: every one ``_BLOCK`` policies long but the last."""
        self._blocks = tuple(blocks)
        if any(len(b) != _BLOCK for b in self._blocks[:-1]):
            raise ValueError("a policy table block other than the last is not full")
        self._count = sum(len(b) for b in self._blocks[-1:]) + _BLOCK * (len(self._blocks) - 1)
        self._ids: tuple[str, ...] | None = None
        self._made: list[Policy | None] = [None] * self._count

    @classmethod
    def of(cls, policies: Iterable[Policy]) -> PolicyTable:
        rows = list(policies)
        table = cls(PolicyBlock.of(rows[i : i + _BLOCK]) for i in range(0, len(rows), _BLOCK))
        table._made = list(rows)
        return table

    @property
    def blocks(self) -> tuple[PolicyBlock, ...]:
        """The blocks, in order: what another version may share."""
        return self._blocks

    @property
    def ids(self) -> tuple[str, ...]:
        """Every policy's id, in order (without making the policies)."""
        ids = self._ids
        if ids is None:
            ids = self._ids = tuple(i for block in self._blocks for i in block.ids)
        return ids

    def effect(self, index: int) -> str:
        block, within = divmod(index, _BLOCK)
        return self._blocks[block].effects[within]

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> Policy: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Policy, ...]: ...

    def __getitem__(self, index: int | slice) -> Policy | tuple[Policy, ...]:
        if isinstance(index, slice):
            return tuple(self._row(i) for i in range(*index.indices(self._count)))
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError("policy index out of range")
        return self._row(index)

    def _row(self, index: int) -> Policy:
        made = self._made[index]
        if made is None:
            block, within = divmod(index, _BLOCK)
            made = self._made[index] = self._blocks[block].row(within)
        return made

    def release(self) -> list[Policy]:
        """Forget the policies made so far and return them (to be freed a piece at a time)."""
        made = [p for p in self._made if p is not None]
        self._made = [None] * self._count
        return made

    def __iter__(self) -> Iterator[Policy]:
        for index in range(self._count):
            yield self._row(index)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PolicyTable):
            return NotImplemented
        return self._blocks == other._blocks

    def __hash__(self) -> int:
        return hash(self.ids)

    def __repr__(self) -> str:
        return f"PolicyTable({self._count} policies)"

    def __reduce__(self) -> tuple[Any, ...]:
        return (PolicyTable, (self._blocks,))
