"""Tamper evidence, part 2: verification (``hub verify``).

Re-reads every fact partition and checks it against three independent witnesses: the seals
in PostgreSQL, the seals published to the seal topic, and the exactly-once event index
(which records the offset of every event :meth:`hub.kernel.log.EventLog.append` wrote).

Breaks, each named by topic / partition / offset (a range for consecutive offsets):

- ``missing``: a sealed or indexed offset is no longer in the log (e.g. delete-records
  moved the log-start offset, or a segment vanished);
- ``altered``: a sealed record's content differs from its sealed digest;
- ``reordered``: a sealed record's content is the sealed digest of another offset;
- ``forged``: a record no appender wrote there (absent from the event index at that
  offset, or with another event id): records produced straight to a fact topic;
- ``chain``: a seal's chain head does not recompute from the records (with every digest
  matching, the digest table itself was altered), or a seal's own hash / link is wrong;
- ``seal_mismatch``: the seal in PostgreSQL and the one in the seal topic disagree, or one
  side has a seal the other lacks (a forged or suppressed seal claim).

Records beyond the last seal are reported as ``unsealed`` (a count, not a break).

The audit topic (``<prefix>.audit``) is sealed and chain-checked like a fact partition, and
its witness is the audit tables instead of the event index: every row of ``access_log`` and
``deadletter_access`` must be on the topic with the same canonical bytes
(:func:`hub.kernel.audit.compare_audit`): a row on the topic but not in the table is
``missing`` (deleted), a row that differs is ``altered``, a row in the table that never
reached the topic (or a second, different record for one row) is ``forged``; a second
identical record is a re-send, not a break.

Orphan copies (crash before the index commit). :meth:`hub.kernel.log.EventLog.append` claims ids
and records offsets in one PostgreSQL transaction that commits after Kafka acknowledged
the records; a crash in between leaves acknowledged records whose ids the index does not
hold, and the retry (connectors re-pull, ids are deterministic) writes the fact again at a
later offset, which the index records. Such a first copy is not a break but an
``orphan_copy`` (reported with both positions, counted in ``hub_verify_orphan_copies``),
when all of these hold:

- the record's offset has no index entry, its ``ce_id`` header names an event id that the
  index places elsewhere, and in the same partition that indexed copy comes later (a crash
  copy always precedes its retry);
- both records are valid envelopes whose identifying fields, after upcasting, are equal:
  ``id``, ``type``, ``source``, ``subject``, ``time`` (as an instant) and ``data``
  (:func:`envelope_identity`); ``recordedat`` may differ because the retry re-mapped the
  record, and so may ``correlationid`` / ``causationid`` and the Kafka timestamp.

Any other unindexed record stays ``forged``: a fresh id, an indexed id with other content,
a copy written after the indexed one, a copy of an event whose indexed record cannot be
read. An exact earlier copy of a genuine fact cannot be told from a crash copy; it carries
no new fact, and every consumer keys by event id (the projections' fact store keeps the
first copy of an id and ignores the rest; the delivery ledger keys by referral), so
consumers see one fact either way.

The pure part is :func:`verify_partition` (with :func:`classify_unindexed` and
:func:`envelope_identity`); :func:`run_verify` is the I/O shell.
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import asyncpg
from aiokafka import TopicPartition

from hub.kernel import metrics
from hub.kernel.audit import audit_table_values, compare_audit
from hub.kernel.kafka import KafkaClients
from hub.kernel.kafka_io import fetch_at, offset_bounds, scan_partitions, scan_records, topic_partitions
from hub.kernel.log import event_key
from hub.kernel.seal import (
    GENESIS_SEAL,
    ChainRecord,
    SealRecord,
    extend_chain,
    genesis,
    load_seals,
    read_chain_records,
)
from hub.kernel.settings import Settings
from schemas.envelope import Envelope
from schemas.topics import audit_topic, seal_topic, sealed_topics

BREAK_KINDS = ("missing", "altered", "reordered", "forged", "chain", "seal_mismatch")

Location = tuple[str, int, int]
"""(topic, partition, offset) of one record."""


@dataclass(frozen=True)
class Break:
    kind: str
    topic: str
    partition: int
    offset: int
    last_offset: int
    detail: str

    def describe(self) -> str:
        where = f"{self.topic}[{self.partition}]@{self.offset}"
        if self.last_offset != self.offset:
            where += f"..{self.last_offset}"
        return f"{self.kind:<13} {where}: {self.detail}"


@dataclass(frozen=True)
class OrphanCopy:
    """An earlier copy of an indexed event left by an appender that crashed after Kafka
    acknowledged it and before the index commit (not a break; see the module docstring)."""

    topic: str
    partition: int
    offset: int
    event_id: str
    indexed_topic: str
    indexed_partition: int
    indexed_offset: int

    def describe(self) -> str:
        where = f"{self.topic}[{self.partition}]@{self.offset}"
        home = f"{self.indexed_topic}[{self.indexed_partition}]@{self.indexed_offset}"
        return (f"{'orphan_copy':<13} {where}: copy of event {self.event_id} indexed at {home}"
                " (appender crashed before the index commit; not a break)")


@dataclass
class PartitionReport:
    topic: str
    partition: int
    log_start_offset: int
    end_offset: int
    records: int
    sealed_through: int | None
    unsealed: int
    breaks: list[Break] = field(default_factory=list)
    orphan_copies: list[OrphanCopy] = field(default_factory=list)


@dataclass
class VerifyReport:
    started_at: datetime
    finished_at: datetime
    partitions: list[PartitionReport]

    @property
    def breaks(self) -> list[Break]:
        return [b for p in self.partitions for b in p.breaks]

    @property
    def orphan_copies(self) -> list[OrphanCopy]:
        return [o for p in self.partitions for o in p.orphan_copies]

    @property
    def ok(self) -> bool:
        """No break. Orphan copies do not count: they are crash leftovers, not tampering."""
        return not self.breaks

    @property
    def records(self) -> int:
        return sum(p.records for p in self.partitions)

    def to_json(self) -> dict:
        return {
            "ok": self.ok,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "records": self.records,
            "breaks": [asdict(b) for b in self.breaks],
            "orphan_copies": [asdict(o) for o in self.orphan_copies],
            "partitions": [
                {k: v for k, v in asdict(p).items() if k not in ("breaks", "orphan_copies")}
                | {"breaks": len(p.breaks), "orphan_copies": len(p.orphan_copies)}
                for p in self.partitions
            ],
        }


def index_key(event_id: str) -> str:
    """How the event index names ``event_id`` (:func:`hub.kernel.log.event_key`, as text)."""
    return str(event_key(event_id))


def envelope_identity(value: bytes | None) -> str | None:
    """Fingerprint of the fact a record carries: SHA-256 over the canonical JSON of its
    envelope's identifying fields (``id``, ``type``, ``source``, ``subject``, ``time`` as a
    UTC instant, ``data``), after upcasting to the current version of its type. Two copies
    of one fact written by two attempts of one append have equal fingerprints although their
    ``recordedat`` differs. None when ``value`` is not a valid envelope."""
    if value is None:
        return None
    try:
        env = Envelope.model_validate_json(value).current()
    except Exception:  # pydantic ValidationError, ValueError from an upcaster
        return None
    canon = json.dumps(
        {
            "id": env.id,
            "type": env.type,
            "source": env.source,
            "subject": env.subject,
            "time": env.time.astimezone(UTC).isoformat(),
            "data": env.data,
        },
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )
    return hashlib.sha256(canon.encode()).hexdigest()


def classify_unindexed(
    topic: str,
    partition: int,
    record: ChainRecord,
    located: Mapping[str, Location],
    identities: Mapping[Location, str | None],
) -> Break | OrphanCopy:
    """A record whose offset has no index entry: an :class:`OrphanCopy` when it is an
    earlier, identical copy of the event the index places elsewhere (see the module
    docstring), else a ``forged`` break. ``located``: event id → indexed position;
    ``identities``: position → :func:`envelope_identity` of the record there (a position
    that could not be read is absent)."""
    here: Location = (topic, partition, record.offset)
    home = located.get(record.event_id) if record.event_id is not None else None
    if home is None or home == here:
        return Break("forged", topic, partition, record.offset, record.offset,
                     "record was not written by the event log (no index entry at this offset)")
    where = f"{home[0]}[{home[1]}]@{home[2]}"
    mine, theirs = identities.get(here), identities.get(home)
    if theirs is None:
        detail = f"its event id is indexed at {where}, whose record cannot be read to compare"
    elif mine is None:
        detail = f"not a valid envelope; its ce_id header names the event indexed at {where}"
    elif mine != theirs:
        detail = f"reuses the event id indexed at {where} with different content"
    elif home[:2] == here[:2] and home[2] < record.offset:
        detail = f"a copy of the event indexed at {where}, written after it (a crash copy precedes its retry)"
    else:
        assert record.event_id is not None
        return OrphanCopy(topic, partition, record.offset, record.event_id, *home)
    return Break("forged", topic, partition, record.offset, record.offset, detail)


def copy_lookups(
    topic: str, partition: int, records: Iterable[ChainRecord], index: Mapping[int, str]
) -> dict[str, list[Location]]:
    """Event id → positions of the records of one partition that have no index entry but
    carry an event id: the candidates for :func:`classify_unindexed`'s orphan test."""
    out: dict[str, list[Location]] = {}
    for r in records:
        if r.offset not in index and r.event_id is not None:
            out.setdefault(r.event_id, []).append((topic, partition, r.offset))
    return out


def _ranges(offsets: Iterable[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for o in sorted(offsets):
        if out and o == out[-1][1] + 1:
            out[-1] = (out[-1][0], o)
        else:
            out.append((o, o))
    return out


def verify_seal_chain(
    topic: str, partition: int, seals: Sequence[SealRecord], published: Sequence[SealRecord]
) -> list[Break]:
    """Checks the seals themselves: own hashes, links, contiguity, and agreement with the
    copies in the seal topic."""
    breaks: list[Break] = []
    prev: SealRecord | None = None
    for s in seals:
        if s.computed_hash() != s.seal_hash:
            breaks.append(Break("chain", topic, partition, s.first_offset, s.last_offset,
                                f"seal {s.seq}: its hash does not match its content"))
        expected_prev = prev.seal_hash if prev else GENESIS_SEAL
        if s.prev_seal_hash != expected_prev:
            breaks.append(Break("chain", topic, partition, s.first_offset, s.last_offset,
                                f"seal {s.seq}: does not link to seal {s.seq - 1}"))
        if prev is not None and (s.seq != prev.seq + 1 or s.first_offset <= prev.last_offset):
            breaks.append(Break("chain", topic, partition, s.first_offset, s.last_offset,
                                f"seal {s.seq}: out of sequence after seal {prev.seq}"))
        prev = s
    by_seq = {s.seq: s for s in seals}
    pub_by_seq = {s.seq: s for s in published}
    for seq in sorted(set(by_seq) | set(pub_by_seq)):
        ours, theirs = by_seq.get(seq), pub_by_seq.get(seq)
        ref = ours or theirs
        assert ref is not None
        if ours is None:
            detail = f"seal {seq} is in the seal topic but not in PostgreSQL"
        elif theirs is None:
            detail = f"seal {seq} is in PostgreSQL but not in the seal topic"
        elif ours.seal_hash != theirs.seal_hash or ours != theirs:
            detail = f"seal {seq} differs between PostgreSQL and the seal topic"
        else:
            continue
        breaks.append(Break("seal_mismatch", topic, partition, ref.first_offset, ref.last_offset, detail))
    return breaks


def verify_partition(
    topic: str,
    partition: int,
    *,
    log_start_offset: int,
    end_offset: int,
    records: Sequence[ChainRecord],
    seals: Sequence[SealRecord],
    published: Sequence[SealRecord],
    sealed_digests: dict[int, bytes],
    index: dict[int, str],
    located: Mapping[str, Location] | None = None,
    identities: Mapping[Location, str | None] | None = None,
) -> PartitionReport:
    """Every break and orphan copy of one partition. ``records`` are what the log holds now
    (offset order); ``sealed_digests`` offset → digest from the seals' table; ``index``
    offset → event id (or its :func:`index_key`) of every event the log appended to this
    partition; ``located`` and
    ``identities`` as in :func:`classify_unindexed` (without them every unindexed record is
    ``forged``)."""
    breaks = verify_seal_chain(topic, partition, seals, published)
    present = {r.offset: r for r in records}

    # missing: sealed or indexed offsets that the log no longer holds
    expected = set(sealed_digests) | set(index)
    for s in seals:
        if s.record_count == s.last_offset - s.first_offset + 1:  # a contiguous span
            expected.update(range(s.first_offset, s.last_offset + 1))
    gone = [o for o in expected if o not in present]
    for first, last in _ranges(gone):
        if first < log_start_offset:
            why = f"deleted: the log now starts at offset {log_start_offset}"
        else:
            why = "sealed or indexed record is absent from the log"
        breaks.append(Break("missing", topic, partition, first, last, why))

    # chain heads: recompute each seal whose records are all present
    offsets = [r.offset for r in records]
    head_ok: list[tuple[int, int]] = []
    head_bad: list[SealRecord] = []
    for i, s in enumerate(seals):
        rs = records[bisect_left(offsets, s.first_offset) : bisect_right(offsets, s.last_offset)]
        if len(rs) != s.record_count:
            continue  # reported as missing above
        start = bytes.fromhex(seals[i - 1].head_hash) if i > 0 else genesis(topic, partition)
        if extend_chain(start, ((r.offset, r.digest) for r in rs)).hex() == s.head_hash:
            head_ok.append((s.first_offset, s.last_offset))
        else:
            head_bad.append(s)

    # altered / reordered: sealed records whose content differs from their sealed digest
    digest_home = {d: o for o, d in sealed_digests.items()}
    explained: set[int] = set()
    for r in records:
        want = sealed_digests.get(r.offset)
        if want is None or r.digest == want:
            continue
        if any(lo <= r.offset <= hi for lo, hi in head_ok):
            breaks.append(Break("chain", topic, partition, r.offset, r.offset,
                                "sealed digest in PostgreSQL was altered (the record matches its seal head)"))
            continue
        explained.add(r.offset)
        home = digest_home.get(r.digest)
        if home is not None:
            breaks.append(Break("reordered", topic, partition, r.offset, r.offset,
                                f"holds the record sealed at offset {home}"))
        else:
            breaks.append(Break("altered", topic, partition, r.offset, r.offset,
                                "content differs from the sealed digest"))
    for s in head_bad:
        if not any(s.first_offset <= o <= s.last_offset for o in explained):
            breaks.append(Break("chain", topic, partition, s.first_offset, s.last_offset,
                                f"seal {s.seq}: chain head does not recompute (sealed digests altered)"))

    # forged: records no appender wrote at this offset (orphan copies set apart)
    orphans: list[OrphanCopy] = []
    for r in records:
        owner = index.get(r.offset)
        if owner is None:
            found = classify_unindexed(topic, partition, r, located or {}, identities or {})
            if isinstance(found, OrphanCopy):
                orphans.append(found)
            else:
                breaks.append(found)
        elif r.event_id is None or (owner != r.event_id and owner != index_key(r.event_id)):
            breaks.append(Break("forged", topic, partition, r.offset, r.offset,
                                f"event id does not match the index ({owner})"))

    sealed_through = seals[-1].last_offset if seals else None
    unsealed = sum(1 for r in records if sealed_through is None or r.offset > sealed_through)
    breaks.sort(key=lambda b: (b.offset, BREAK_KINDS.index(b.kind)))
    return PartitionReport(topic, partition, log_start_offset, end_offset, len(records), sealed_through,
                           unsealed, breaks, orphans)


# --------------------------------------------------------------------------- I/O


async def _published_seals(clients: KafkaClients, prefix: str) -> dict[tuple[str, int], list[SealRecord]]:
    """The seals in the seal topic, per sealed partition in ``seq`` order."""
    out: dict[tuple[str, int], list[SealRecord]] = {}
    async for r in scan_records(clients, [seal_topic(prefix)], role="verify"):
        try:
            s = SealRecord.model_validate_json(r.value)
        except Exception:
            continue  # not a seal: verify_seal_chain reports missing counterparts
        out.setdefault((s.topic, s.partition), []).append(s)
    for seals in out.values():
        seals.sort(key=lambda s: s.seq)
    return out


async def _copy_evidence(
    clients: KafkaClients,
    records: Mapping[TopicPartition, Sequence[ChainRecord]],
    index: Mapping[tuple[str, int], Mapping[int, str]],
) -> tuple[dict[str, Location], dict[Location, str | None]]:
    """For the unindexed records that carry an event id: where the index places each id (from
    ``index``, already read whole), and the identity of the records at both positions (read
    back from Kafka, a few at most)."""
    lookups: dict[str, list[Location]] = {}
    for tp, recs in records.items():
        found = copy_lookups(tp.topic, tp.partition, recs, index.get((tp.topic, tp.partition), {}))
        for event_id, here in found.items():
            lookups.setdefault(event_id, []).extend(here)
    if not lookups:
        return {}, {}
    wanted_keys = {index_key(eid): eid for eid in lookups}
    located: dict[str, Location] = {}
    for (topic, partition), owners in index.items():
        for offset, owner in owners.items():
            eid = wanted_keys.get(owner)
            if eid is not None:
                located[eid] = (topic, partition, offset)
    wanted = {loc for eid, home in located.items() for loc in (home, *lookups[eid])}
    fetched = await fetch_at(clients, [(TopicPartition(t, p), o) for t, p, o in wanted], role="verify")
    identities = {
        (tp.topic, tp.partition, off): envelope_identity(rec.value) for (tp, off), rec in fetched.items()
    }
    return located, identities


async def _audit_breaks(
    clients: KafkaClients,
    settings: Settings,
    pool: asyncpg.Pool,
    tps: Sequence[TopicPartition],
    ends: Mapping[TopicPartition, int],
) -> list[Break]:
    """The differences between the audit tables and the audit topic, as breaks."""
    topic = audit_topic(settings.kafka.topic_prefix)
    on_topic: list[tuple[int, bytes | None, bytes | None]] = []
    if tps:
        async for rec in scan_partitions(clients, tps, role="verify", ends=ends):
            on_topic.append((rec.offset, rec.key, rec.value))
    gaps = compare_audit(await audit_table_values(pool, settings.core_schema), on_topic)
    return [Break(g.kind, topic, 0, g.offset, g.offset, g.detail) for g in gaps]


async def run_verify(
    settings: Settings, pool: asyncpg.Pool, clients: KafkaClients, *, store: bool = True
) -> VerifyReport:
    """Verify the whole log; set the VERIFY_* gauges and store the result in PostgreSQL.
    Kafka is read through ``clients``, the process's client factory (``rt.kafka``)."""
    schema = settings.core_schema
    prefix = settings.kafka.topic_prefix
    started = datetime.now(UTC)
    seals = await load_seals(pool, schema)
    published = await _published_seals(clients, prefix)
    tps = await topic_partitions(clients, sealed_topics(prefix))
    starts, ends = await offset_bounds(clients, tps)
    records = await read_chain_records(clients, tps, ends)
    audit = audit_topic(prefix)
    digests: dict[tuple[str, int], dict[int, bytes]] = {}
    for r in await pool.fetch(f'SELECT topic, "partition", "offset", digest FROM {schema}.sealed_records'):
        digests.setdefault((r["topic"], r["partition"]), {})[r["offset"]] = bytes(r["digest"])
    index: dict[tuple[str, int], dict[int, str]] = {}
    for r in await pool.fetch(f'SELECT topic, "partition", "offset", event_id FROM {schema}.indexed_events'):
        index.setdefault((r["topic"], r["partition"]), {})[r["offset"]] = r["event_id"]
    for tp in tps:  # the audit topic's witness is the audit tables (compared below), not the index
        if tp.topic == audit:
            index[(tp.topic, tp.partition)] = {r.offset: r.event_id or "" for r in records[tp]}
    located, identities = await _copy_evidence(clients, records, index)
    reports = []
    known = {(tp.topic, tp.partition) for tp in tps}
    for tp in tps:
        k = (tp.topic, tp.partition)
        reports.append(
            verify_partition(
                tp.topic, tp.partition,
                log_start_offset=starts[tp], end_offset=ends[tp], records=records[tp],
                seals=seals.get(k, []), published=published.get(k, []),
                sealed_digests=digests.get(k, {}), index=index.get(k, {}),
                located=located, identities=identities,
            )
        )
    for k in sorted((set(seals) | set(index)) - known):  # a whole partition or topic vanished
        reports.append(
            verify_partition(
                k[0], k[1], log_start_offset=0, end_offset=0, records=[],
                seals=seals.get(k, []), published=published.get(k, []),
                sealed_digests=digests.get(k, {}), index=index.get(k, {}),
            )
        )
    audit_breaks = await _audit_breaks(clients, settings, pool, [tp for tp in tps if tp.topic == audit], ends)
    for part in reports:
        if part.topic == audit:
            part.breaks.extend(audit_breaks)
            audit_breaks = []
    if audit_breaks:  # the audit topic itself is gone
        reports.append(PartitionReport(audit, 0, 0, 0, 0, None, 0, audit_breaks))
    report = VerifyReport(started, datetime.now(UTC), reports)
    metrics.VERIFY_OK.set(1 if report.ok else 0)
    metrics.VERIFY_BREAKS.set(len(report.breaks))
    metrics.VERIFY_ORPHAN_COPIES.set(len(report.orphan_copies))
    metrics.VERIFY_LAST_RUN.set(report.finished_at.timestamp())
    if store:
        await pool.execute(
            f"""INSERT INTO {schema}.verify_runs (started_at, finished_at, ok, breaks, records, result)
                VALUES ($1, $2, $3, $4, $5, $6::jsonb)""",
            report.started_at, report.finished_at, report.ok, len(report.breaks), report.records,
            json.dumps(report.to_json()),
        )
    return report
