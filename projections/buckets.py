"""Bounded memory for the rebuild: components resolved from keys first, facts spilled into
component buckets, each bucket derived on its own.

Every read-model row depends only on the facts of one connected component
(:mod:`projections.fold`), and :func:`projections.fold.derive` accepts any set of whole
components. So the rebuild never needs the whole log in memory:

1. while the log is read, :class:`FactSpill` joins each record's keys in a compact
   union-find (:class:`KeyUnion`) and appends the record's parts to a local spill file; the
   keys are read from the record's JSON (:func:`record_keys`) — its payload is validated
   once, when its bucket is derived;
2. once the log is read, every fact's component root is known; the spill is distributed
   into ``ceil(facts / bucket_facts)`` bucket files by root;
3. :meth:`FactSpill.buckets` yields one bucket at a time as facts (records whose payload
   does not validate counted as unreadable, duplicates by event id dropped, the first
   record kept, as the in-memory rebuild did); its rows are derived and loaded, then it is
   dropped. Outcome counts add up over buckets (:func:`add_counts`). A fact whose keys
   differ from the keys its record was bucketed by stops the rebuild
   (:class:`KeyMismatch`): its component could have been split.

Memory: the union-find holds one entry per distinct key (its 64-bit hash and an array slot,
≈100 bytes) and one 4-byte slot per fact; a bucket holds ``bucket_facts`` facts (more when
one component is larger — a component is never split). Two keys whose hashes collide only
put two components into one bucket, which :func:`~projections.fold.derive` handles like
any other set of whole components.

Records cross the spill as the parts a fact is made of (event id, current type, source,
recorded time, current-version JSON) and become facts through
:func:`projections.facts.make_fact`, exactly as the live projector reads stored facts back.
"""

from __future__ import annotations

import math
import pickle
import struct
from array import array
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from hub.kernel.crypto import Keyring
from hub.kernel.errors import PermanentError
from projections import tables as T
from projections.config import FoldConfig
from projections.counts import Cell, count_row
from projections.facts import Fact, make_fact
from projections.fold import Rows, derive
from projections.store import fact_record, table_records
from schemas.base import event_class
from schemas.encounter import PersonIdentified

#: facts per bucket: a bucket's facts, rows and COPY records take about 8 KiB per fact at
#: their peak, so 5,000 facts ≈ 40 MiB (more buckets cost only more, smaller COPYs)
BUCKET_FACTS = 5_000
#: at most this many bucket files are open at once (larger logs get larger buckets)
MAX_BUCKETS = 512
_LENGTH = struct.Struct("<I")


class KeyMismatch(PermanentError, RuntimeError):
    """A fact's keys differ from the keys read from its record (a bug in
    :func:`record_keys`); the rebuild stops rather than risk a split component."""


Parts = tuple[str, str, str, datetime, dict[str, Any]]


def record_keys(event_type: str, event_id: str, data: Mapping[str, Any]) -> tuple[str, ...]:
    """The component keys of a record's current-version JSON, without validating it: the
    keys :func:`projections.facts.fact_keys` gives the fact made of it (the unit tests and
    :meth:`FactSpill.buckets` check that). Raises ``KeyError`` for an unknown type."""
    cls = event_class(event_type)
    fields = cls.model_fields

    def value(name: str) -> str | None:
        v = data.get(name) if name in fields else None
        return None if v is None else str(v)

    incident, person, other, referral = (value(n) for n in ("incident_id", "person", "other", "referral_id"))
    if issubclass(cls, PersonIdentified) and data.get("role", "subject") != "subject":
        person = None  # a caller or family member is not the subject (projections.facts.subject_person)
    keys: list[str] = []
    if incident:
        keys.append("i:" + incident)
    if person:
        keys.append("p:" + person)
    if other:
        keys.append("p:" + other)
    if referral:
        keys.append("r:" + referral)
    if not keys:
        keys.append("e:" + event_id)
    return tuple(keys)


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


def fact_parts(f: Fact) -> Parts:
    """The parts a fact is made of (what the spill keeps of a record)."""
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
        self.records = 0  # records added (duplicates and invalid payloads included)
        self.duplicates = 0  # known once the buckets have been read
        self.unreadable = 0  # payloads that do not validate, known once the buckets have been read

    def add(self, parts: Parts, keys: tuple[str, ...]) -> None:
        """Spill one record (``keys``: :func:`record_keys` of its parts)."""
        if self._spill is None:
            raise RuntimeError("FactSpill.add after the buckets were taken")
        self._nodes.append(self.keys.join(keys))
        _write(self._spill, pickle.dumps((parts, keys), protocol=pickle.HIGHEST_PROTOCOL))
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

    def bucket_paths(self) -> list[Path]:
        """Close the spill and distribute it into bucket files (once); read each with
        :func:`read_bucket` or :func:`derive_bucket`, in this process or another."""
        return self._distribute()

    def buckets(self) -> Iterator[list[Fact]]:
        """Each bucket's facts, read in this process (:func:`read_bucket`); the spill's
        ``duplicates`` and ``unreadable`` add up as they are read."""
        for path in self.bucket_paths():
            bucket = read_bucket(path)
            self.duplicates += bucket.duplicates
            self.unreadable += bucket.unreadable
            if bucket.facts:
                yield bucket.facts


@dataclass
class Bucket:
    """One bucket's facts (first valid record of each event id, in log order) and what
    was left out of it."""

    facts: list[Fact]
    duplicates: int = 0
    unreadable: int = 0


def read_bucket(path: Path) -> Bucket:
    """The facts of one bucket file (which is removed once read). Raises
    :class:`KeyMismatch` when a fact's keys are not the keys its record was bucketed by."""
    seen: dict[str, Fact] = {}
    bucket = Bucket([])
    with path.open("rb") as src:
        for blob in _read(src):
            (event_id, event_type, source, recorded_at, data), keys = pickle.loads(blob)
            try:
                fact = make_fact(
                    event_id=event_id, event_type=event_type, source=source,
                    recorded_at=recorded_at, data=data,
                )
            except Exception:  # pydantic ValidationError, a bad time: not a fact
                bucket.unreadable += 1
                continue
            if fact.keys != keys:
                raise KeyMismatch(f"event {event_id}: keys of the fact differ from its record's")
            if event_id in seen:
                bucket.duplicates += 1
            else:
                seen[event_id] = fact
    path.unlink()
    bucket.facts = list(seen.values())
    return bucket


@dataclass
class DerivedBucket:
    """One bucket ready for COPY: its facts' and rows' records by table (outcome counts
    apart, they add up over buckets), and the bucket's counters."""

    records: dict[str, list[tuple]]
    counts: Counter[Cell]
    facts: int
    rows: int
    duplicates: int
    unreadable: int


def derive_bucket(path: Path, cfg: FoldConfig, keyring: Keyring | None = None) -> DerivedBucket:
    """Read one bucket file, derive its rows and build its COPY records (pure apart from
    reading and removing the file; runs in a worker process of the rebuild, too).
    ``keyring``: the snapshot opening the facts' sealed disposition texts
    (:func:`projections.fold.derive`)."""
    bucket = read_bucket(path)
    rows = derive(bucket.facts, cfg, keyring)
    counts: Counter[Cell] = Counter()
    add_counts(counts, rows)
    records = {T.FACTS.name: [fact_record(f) for f in bucket.facts]}
    for table in T.ALL_TABLES:
        if rows.get(table.name):
            records[table.name] = table_records(table, rows[table.name].values())
    return DerivedBucket(
        records, counts, len(bucket.facts), sum(len(r) for r in rows.values()),
        bucket.duplicates, bucket.unreadable,
    )


def add_counts(total: Counter[Cell], rows: Rows) -> None:
    """Add one bucket's outcome counts to ``total`` and take them out of ``rows`` (counts
    are sums over incidents, so the buckets' counts add up to the whole log's)."""
    for row in rows.pop(T.OUTCOME_COUNTS.name, {}).values():
        cell: Cell = T.OUTCOME_COUNTS.pk(row)
        total[cell] += row["value"]


def count_rows(total: Counter[Cell]) -> dict[tuple, dict[str, Any]]:
    """The ``outcome_counts`` rows of summed counts (cells that sum to zero dropped)."""
    return {cell: count_row(cell, v) for cell, v in total.items() if v}
