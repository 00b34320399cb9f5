"""Bounded memory for the rebuild: components resolved from keys first, facts spilled into
component buckets, each bucket derived on its own.

Every read-model row depends only on the facts of one connected component
(:mod:`projections.fold`), and :func:`projections.fold.derive` accepts any set of whole
components. So the rebuild never needs the whole log in memory:

1. while the log is read, :class:`FactSpill` joins each fact's keys in a compact union-find
   (:class:`KeyUnion`) and appends the fact's stored parts to a local spill file;
2. once the log is read, every fact's component root is known; the spill is distributed
   into ``ceil(facts / bucket_facts)`` bucket files by root;
3. :meth:`FactSpill.buckets` yields one bucket at a time (duplicates by event id dropped,
   the first record kept, as the in-memory rebuild did); its rows are derived and loaded,
   then it is dropped. Outcome counts add up over buckets (:func:`add_counts`).

Memory: the union-find holds one entry per distinct key (its 64-bit hash and an array slot,
≈100 bytes) and one 4-byte slot per fact; a bucket holds ``bucket_facts`` facts (more when
one component is larger — a component is never split). Two keys whose hashes collide only
put two components into one bucket, which :func:`~projections.fold.derive` handles like
any other set of whole components.

Facts cross the spill as the parts the ``facts`` table stores (event id, type, source,
recorded time, current-version JSON) and are rebuilt with :func:`projections.facts.make_fact`,
exactly as the live projector reads stored facts back.
"""

from __future__ import annotations

import math
import pickle
import struct
from array import array
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from projections import tables as T
from projections.counts import Cell, count_row
from projections.facts import Fact, make_fact
from projections.fold import Rows

#: facts per bucket (about 100 MB of facts and rows at the sizes the bench measures)
BUCKET_FACTS = 20_000
#: at most this many bucket files are open at once (larger logs get larger buckets)
MAX_BUCKETS = 512
_LENGTH = struct.Struct("<I")


class KeyUnion:
    """Union-find over component keys, one slot per distinct key (pure)."""

    def __init__(self) -> None:
        self._slot: dict[int, int] = {}
        self._parent = array("i")

    def __len__(self) -> int:
        return len(self._parent)

    def node(self, key: str) -> int:
        """The slot of ``key`` (created on first sight)."""
        h = hash(key)
        slot = self._slot.get(h)
        if slot is None:
            slot = len(self._parent)
            self._slot[h] = slot
            self._parent.append(slot)
        return slot

    def find(self, slot: int) -> int:
        parent = self._parent
        while parent[slot] != slot:
            parent[slot] = parent[parent[slot]]  # path halving
            slot = parent[slot]
        return slot

    def join(self, keys: tuple[str, ...]) -> int:
        """Put ``keys`` into one component; returns the slot of the first key."""
        first = self.node(keys[0])
        root = self.find(first)
        for key in keys[1:]:
            other = self.find(self.node(key))
            if other != root:
                lo, hi = (root, other) if root < other else (other, root)
                self._parent[hi] = lo
                root = lo
        return first


def _write(out: BinaryIO, blob: bytes) -> None:
    out.write(_LENGTH.pack(len(blob)))
    out.write(blob)


def _read(src: BinaryIO) -> Iterator[bytes]:
    while head := src.read(_LENGTH.size):
        (n,) = _LENGTH.unpack(head)
        yield src.read(n)


def fact_parts(f: Fact) -> tuple[str, str, str, Any, dict[str, Any]]:
    """What the spill (and the ``facts`` table) keeps of a fact."""
    return (f.event_id, f.event_type, f.source, f.recorded_at, f.data)


class FactSpill:
    """Facts of a rebuild, spilled to files under ``directory`` and handed back one bucket
    of whole components at a time (see the module docstring). Single use: :meth:`add`
    every fact, then iterate :meth:`buckets` once."""

    def __init__(self, directory: Path, bucket_facts: int = BUCKET_FACTS) -> None:
        if bucket_facts < 1:
            raise ValueError("bucket_facts must be at least 1")
        self.directory = directory
        self.bucket_facts = bucket_facts
        self.keys = KeyUnion()
        self._nodes = array("i")
        self._spill_path = directory / "spill.bin"
        self._spill: BinaryIO | None = self._spill_path.open("wb")
        self.records = 0  # facts added (duplicates included)
        self.duplicates = 0  # known once the buckets have been read

    def add(self, fact: Fact) -> None:
        if self._spill is None:
            raise RuntimeError("FactSpill.add after the buckets were taken")
        self._nodes.append(self.keys.join(fact.keys))
        _write(self._spill, pickle.dumps(fact_parts(fact), protocol=pickle.HIGHEST_PROTOCOL))
        self.records += 1

    def bucket_count(self) -> int:
        return max(1, min(MAX_BUCKETS, math.ceil(self.records / self.bucket_facts)))

    def _distribute(self) -> list[Path]:
        assert self._spill is not None
        self._spill.close()
        self._spill = None
        n = self.bucket_count()
        paths = [self.directory / f"bucket-{i:04d}.bin" for i in range(n)]
        outs = [p.open("wb") for p in paths]
        try:
            with self._spill_path.open("rb") as src:
                for i, blob in enumerate(_read(src)):
                    _write(outs[self.keys.find(self._nodes[i]) % n], blob)
        finally:
            for out in outs:
                out.close()
        self._spill_path.unlink()
        del self._nodes
        return paths

    def buckets(self) -> Iterator[list[Fact]]:
        """Each bucket's facts (first record of each event id, in log order); a bucket's
        file is removed once it has been read."""
        for path in self._distribute():
            seen: dict[str, Fact] = {}
            with path.open("rb") as src:
                for blob in _read(src):
                    event_id, event_type, source, recorded_at, data = pickle.loads(blob)
                    if event_id in seen:
                        self.duplicates += 1
                        continue
                    seen[event_id] = make_fact(
                        event_id=event_id, event_type=event_type, source=source,
                        recorded_at=recorded_at, data=data,
                    )
            path.unlink()
            if seen:
                yield list(seen.values())


def add_counts(total: Counter[Cell], rows: Rows) -> None:
    """Add one bucket's outcome counts to ``total`` and take them out of ``rows`` (counts
    are sums over incidents, so the buckets' counts add up to the whole log's)."""
    for row in rows.pop(T.OUTCOME_COUNTS.name, {}).values():
        cell: Cell = T.OUTCOME_COUNTS.pk(row)
        total[cell] += row["value"]


def count_rows(total: Counter[Cell]) -> dict[tuple, dict[str, Any]]:
    """The ``outcome_counts`` rows of summed counts (cells that sum to zero dropped)."""
    return {cell: count_row(cell, v) for cell, v in total.items() if v}
