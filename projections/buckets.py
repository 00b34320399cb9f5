"""Bounded memory for the rebuild: components resolved from keys first, records spilled into
component buckets, each bucket derived on its own.

Every read-model row depends only on the facts of one connected component
(:mod:`projections.fold`), and :func:`projections.fold.derive` accepts any set of whole
components. So the rebuild never needs the whole log in memory:

1. while the log is read, each reader (one per shard of the partitions, in this process
   or a worker) appends every record to its spill (:class:`SpillWriter`): the record's
   component keys (:func:`record_keys`, read from its JSON — its payload is validated once,
   when its bucket is derived) and its envelope JSON, as read from the log;
2. once the log is read, :func:`plan_buckets` joins every record's keys in one compact
   union-find (:class:`KeyUnion`), counts the records of each component and packs whole
   components into buckets of about ``bucket_facts`` records (a component larger than that
   is a bucket of its own; a component is never split); every shard's spill is then split
   into bucket files (:func:`distribute`);
3. :func:`read_bucket` turns one bucket's files into facts (records whose payload does not
   validate counted as unreadable, duplicates by event id dropped, the first record kept, as
   the in-memory rebuild did); :func:`derive_bucket` derives its rows and builds its COPY
   records, then it is dropped. Outcome counts add up over buckets (:func:`add_counts`). A
   fact whose keys differ from the keys its record was bucketed by stops the rebuild
   (:class:`KeyMismatch`): its component could have been split.

Memory: the union-find holds one entry per distinct key (its 64-bit hash and an array slot,
≈100 bytes) and 4-byte slots per record; a bucket holds about ``bucket_facts`` facts, or one
component when it is larger. Two keys whose hashes collide only put two components into one
bucket, which :func:`~projections.fold.derive` handles like any other set of whole
components.

A spilled record is ``u32 length, u16 keys length, keys (a JSON array), JSON`` where the JSON
is the record's envelope as read from the log when that is the current version of its type
(the fast path of :mod:`projections.fastdecode`), else the parts re-encoded
(:func:`encode_parts`); either way an object with ``id``, ``type``, ``source``,
``recordedat`` and ``data``, which become a fact through :func:`projections.facts.make_fact`,
exactly as the live projector reads stored facts back.
"""

from __future__ import annotations

import json
import math
import operator
import struct
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from hub.kernel.crypto import Keyring
from hub.kernel.errors import PermanentError
from projections import tables as T
from projections.config import FoldConfig
from projections.counts import Cell, count_row
from projections.facts import Fact, make_fact
from projections.fold import Rows, derive
from schemas.base import event_class
from schemas.encounter import PersonIdentified

#: records per bucket: a bucket's facts, rows and COPY records take about 4 KiB per fact at
#: their peak, so 5,000 facts ≈ 20 MiB (more buckets cost only more, smaller COPYs)
BUCKET_FACTS = 5_000
#: at most this many buckets (bucket files open at once per shard; larger logs get larger buckets)
MAX_BUCKETS = 512
_HEAD = struct.Struct("<IH")


class KeyMismatch(PermanentError, RuntimeError):
    """A fact's keys differ from the keys read from its record (a bug in
    :func:`record_keys`); the rebuild stops rather than risk a split component."""


Parts = tuple[str, str, str, datetime, dict[str, Any]]


def record_keys(event_type: str, event_id: str, data: Mapping[str, Any]) -> tuple[str, ...]:
    """The component keys of a record's current-version JSON, without validating it: the
    keys :func:`projections.facts.fact_keys` gives the fact made of it (the unit tests and
    :func:`read_bucket` check that). Raises ``KeyError`` for an unknown type."""
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

    def join(self, keys: Sequence[str]) -> int:
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


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # an integer beyond 64 bits: the standard library writes it
        return json.dumps(value, separators=(",", ":")).encode()


def _loads(blob: bytes) -> Any:
    try:
        return orjson.loads(blob)
    except orjson.JSONDecodeError:
        return json.loads(blob)


def encode_parts(parts: Parts) -> bytes:
    """The spill JSON of a fact's parts (when the record's own bytes are not the current
    version of its event)."""
    event_id, event_type, source, recorded_at, data = parts
    when = recorded_at.isoformat()
    return _dumps({"id": event_id, "type": event_type, "source": source, "recordedat": when, "data": data})


def decode_parts(blob: bytes) -> Parts:
    """The parts of a spilled record's JSON (an envelope, or :func:`encode_parts`)."""
    d = _loads(blob)
    return d["id"], d["type"], d["source"], datetime.fromisoformat(d["recordedat"]), d["data"]


def fact_parts(f: Fact) -> Parts:
    """The parts a fact is made of (what the spill keeps of a record)."""
    return (f.event_id, f.event_type, f.source, f.recorded_at, f.data)


def _write(out: BinaryIO, keys: bytes, blob: bytes) -> None:
    out.write(_HEAD.pack(len(keys) + len(blob), len(keys)))
    out.write(keys)
    out.write(blob)


def _records(path: Path) -> Iterator[tuple[bytes, bytes]]:
    """(keys JSON, record JSON) of every record of a spill or bucket file."""
    with path.open("rb") as src:
        while head := src.read(_HEAD.size):
            n, k = _HEAD.unpack(head)
            body = src.read(n)
            yield body[:k], body[k:]


@dataclass(frozen=True)
class SpillFiles:
    """One reader's spill: ``spill`` (the records) and ``keys`` (one JSON array per line)."""

    spill: Path
    keys: Path
    records: int


class SpillWriter:
    """Appends one reader's records to its spill files under ``directory`` (``shard`` tells
    the readers of one rebuild apart)."""

    def __init__(self, directory: Path, shard: int = 0) -> None:
        self.files = SpillFiles(directory / f"spill-{shard}.bin", directory / f"keys-{shard}.jsonl", 0)
        self._spill: BinaryIO = self.files.spill.open("wb")
        self._keys: BinaryIO = self.files.keys.open("wb")
        self.records = 0

    def add(self, blob: bytes, keys: tuple[str, ...]) -> None:
        """Spill one record: ``blob`` its JSON (see the module docstring), ``keys`` its
        :func:`record_keys`."""
        k = orjson.dumps(keys)
        _write(self._spill, k, blob)
        self._keys.write(k + b"\n")
        self.records += 1

    def close(self) -> SpillFiles:
        self._spill.close()
        self._keys.close()
        return SpillFiles(self.files.spill, self.files.keys, self.records)


@dataclass(frozen=True)
class BucketPlan:
    """The bucket of every spilled record (one array per spill, in spill order) and the
    records per bucket."""

    assignments: list[array]
    sizes: list[int]


def plan_buckets(keys_files: Sequence[Path], bucket_facts: int = BUCKET_FACTS) -> BucketPlan:
    """Resolve the components of every record of ``keys_files`` (the spills' key files) and
    pack whole components into buckets of about ``bucket_facts`` records (at least
    ``records / MAX_BUCKETS``); pure apart from reading the files."""
    if bucket_facts < 1:
        raise ValueError("bucket_facts must be at least 1")
    union = KeyUnion()
    slots: list[array] = []
    for path in keys_files:
        nodes = array("i")
        with path.open("rb") as src:
            for line in src:
                nodes.append(union.join(orjson.loads(line)))
        slots.append(nodes)
    size = array("i", bytes(4 * len(union)))
    for nodes in slots:
        for i, slot in enumerate(nodes):
            root = union.find(slot)
            nodes[i] = root  # the record's component from here on
            size[root] += 1
    total = sum(len(n) for n in slots)
    target = max(bucket_facts, math.ceil(total / MAX_BUCKETS))
    bucket_of = array("i", bytes(4 * len(union)))
    sizes: list[int] = []
    fill = target
    for root, n in enumerate(size):
        if not n:
            continue
        if fill + n > target and fill:  # start a new bucket (a component is never split)
            sizes.append(0)
            fill = 0
        bucket_of[root] = len(sizes) - 1
        sizes[-1] += n
        fill += n
    for nodes in slots:
        for i, root in enumerate(nodes):
            nodes[i] = bucket_of[root]
    return BucketPlan(slots, sizes)


def distribute(spill: Path, assignment: array, directory: Path, shard: int = 0) -> dict[int, Path]:
    """Split one spill into bucket files (``assignment``: the bucket of each record, from
    :func:`plan_buckets`) and remove it; returns each bucket's file of this spill."""
    paths: dict[int, Path] = {}
    outs: dict[int, BinaryIO] = {}
    try:
        for i, (keys, blob) in enumerate(_records(spill)):
            b = assignment[i]
            out = outs.get(b)
            if out is None:
                paths[b] = directory / f"bucket-{b:04d}.{shard}.bin"
                out = outs[b] = paths[b].open("wb")
            _write(out, keys, blob)
    finally:
        for out in outs.values():
            out.close()
    spill.unlink()
    return paths


class FactSpill:
    """The spill of one reader in one call: :meth:`add` every record, then take the buckets
    once (:meth:`bucket_paths` for the files, or :meth:`buckets` for their facts)."""

    def __init__(self, directory: Path, bucket_facts: int = BUCKET_FACTS) -> None:
        if bucket_facts < 1:
            raise ValueError("bucket_facts must be at least 1")
        self.directory = directory
        self.bucket_facts = bucket_facts
        self._writer: SpillWriter | None = SpillWriter(directory)
        self.duplicates = 0  # known once the buckets have been read
        self.unreadable = 0  # payloads that do not validate, known once the buckets have been read

    def add(self, parts: Parts, keys: tuple[str, ...]) -> None:
        """Spill one record (``keys``: :func:`record_keys` of its parts)."""
        if self._writer is None:
            raise RuntimeError("FactSpill.add after the buckets were taken")
        self._writer.add(encode_parts(parts), keys)

    def bucket_paths(self) -> list[list[Path]]:
        """Close the spill and distribute it into bucket files (once)."""
        if self._writer is None:
            raise RuntimeError("the buckets were taken already")
        files, self._writer = self._writer.close(), None
        plan = plan_buckets([files.keys], self.bucket_facts)
        files.keys.unlink()
        paths = distribute(files.spill, plan.assignments[0], self.directory)
        return [[paths[b]] for b in range(len(plan.sizes))]

    def buckets(self) -> Iterator[list[Fact]]:
        """Each bucket's facts (:func:`read_bucket`); ``duplicates`` and ``unreadable`` add
        up as they are read."""
        for paths in self.bucket_paths():
            bucket = read_bucket(paths)
            self.duplicates += bucket.duplicates
            self.unreadable += bucket.unreadable
            if bucket.facts:
                yield bucket.facts


@dataclass
class Bucket:
    """One bucket's facts (first valid record of each event id, in spill order) and what
    was left out of it."""

    facts: list[Fact]
    duplicates: int = 0
    unreadable: int = 0


def read_bucket(paths: Iterable[Path]) -> Bucket:
    """The facts of one bucket (its files, one per spill, in spill order; removed once
    read). Raises :class:`KeyMismatch` when a fact's keys are not the keys its record was
    bucketed by."""
    seen: dict[str, Fact] = {}
    bucket = Bucket([])
    for path in paths:
        for keys, blob in _records(path):
            try:
                event_id, event_type, source, recorded_at, data = decode_parts(blob)
                fact = make_fact(event_id=event_id, event_type=event_type, source=source,
                                 recorded_at=recorded_at, data=data)
            except Exception:  # pydantic ValidationError, a bad time: not a fact
                bucket.unreadable += 1
                continue
            if list(fact.keys) != orjson.loads(keys):
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


_FACT_COLUMNS = ("event_id", "event_type", "family", "source", "system", "at", "recorded_at", "incident_id",
                 "person", "other", "referral_id", "keys", "data")
assert T.FACTS.columns == _FACT_COLUMNS, "fact_records builds the facts table's columns in this order"


def json_text(value: Any) -> str:
    """JSON text of a jsonb value (orjson; the standard library beyond 64-bit integers)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def fact_records(facts: Iterable[Fact]) -> list[tuple]:
    """The ``facts`` table's ``COPY`` records of ``facts`` (the rows
    :func:`projections.store.fact_record` makes, built without the row dict)."""
    return [
        (f.event_id, f.event_type, f.family, f.source, f.system, f.at, f.recorded_at, f.incident_id, f.person,
         f.other, f.referral_id, list(f.keys), json_text(f.data))
        for f in facts
    ]


def row_records(table: T.Table, rows: Iterable[dict[str, Any]]) -> list[tuple]:
    """``COPY`` records of ``rows`` in the table's column order, jsonb columns as JSON text
    (the records :func:`projections.store.table_records` makes)."""
    get = operator.itemgetter(*table.columns)  # every table has two columns or more: a tuple
    json_at = [i for i, c in enumerate(table.columns) if c in T.JSON_COLUMNS]
    if not json_at:
        return [get(row) for row in rows]
    out = []
    for row in rows:
        record = list(get(row))
        for i in json_at:
            record[i] = json_text(record[i])
        out.append(tuple(record))
    return out


def derive_bucket(paths: Iterable[Path], cfg: FoldConfig, keyring: Keyring | None = None) -> DerivedBucket:
    """Read one bucket's files, derive its rows and build its COPY records (pure apart from
    reading and removing the files). ``keyring``: the snapshot opening the facts' sealed
    disposition texts (:func:`projections.fold.derive`)."""
    bucket = read_bucket(paths)
    rows = derive(bucket.facts, cfg, keyring)
    counts: Counter[Cell] = Counter()
    add_counts(counts, rows)
    records = {T.FACTS.name: fact_records(bucket.facts)}
    for table in T.ALL_TABLES:
        if rows.get(table.name):
            records[table.name] = row_records(table, rows[table.name].values())
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
