"""The benchmark phases. Each measures one hub operation and, in the same process on the
same records, its baseline: the floor the operation is built on (raw aiokafka, raw
``getmany`` + COPY, the batch rebuild). Setup (generating data, warming connections) is
outside the measured blocks; every phase checks that both sides processed the same
records before its ratio is reported.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import NewTopic
from aiokafka.partitioner import DefaultPartitioner

from bench.measure import Sample, measured
from bench.report import Row, expect, per_10k, verdict
from bench.targets import PARALLEL_TARGET, index_bytes, rebuild_verdict
from bench.workspace import Workspace
from connectors.cad.ingest import ingest_files, mapper_for, read_records
from connectors.cad.profile import Profile, load_profile
from connectors.core.records import Mapped, RevisionKey
from connectors.core.runner import safe_map
from connectors.core.state import PostgresRevisionStore
from hub.bootstrap import open_runtime
from hub.devtools.simulate.feeds import csv_table, encounter_events
from hub.devtools.simulate.model import County, CountyModel, SimCall
from hub.devtools.simulate.pipeline import case_envelopes, county_envelopes
from hub.kernel.crypto import MemoryKeyring
from hub.kernel.db import open_pool
from hub.kernel.deadletters import build_dead_letter
from hub.kernel.kafka import KafkaClients
from hub.kernel.kafka_io import scan_records
from hub.kernel.log import PRODUCER_BATCH_BYTES, AppendResult, EventLog, family_topics, record_headers
from hub.kernel.runtime import Runtime
from hub.kernel.settings import Settings
from projections.app import group_id
from projections.projector import Projector
from projections.replay import replay_into
from schemas.deadletter import DeadLetter
from schemas.dispatch import CallReceived
from schemas.envelope import Envelope, new_event
from schemas.topics import fact_topic

T0 = datetime(2024, 1, 1, tzinfo=UTC)
APPEND_SETUP_BATCH = 2000
INGEST_TARGET, INGEST_RATIO_TARGET = 20_000, 0.25
#: files of the CAD drop whose events the raw events floor produces (a rate needs no more;
#: holding every file's records would inflate the resident set of every later phase)
EVENT_FLOOR_FILES = 10
WARM_EVENTS = 60  # over 6 partitions, the chance that one gets none is about 1e-4


# --------------------------------------------------------------------------- helpers


def synthetic_calls(n: int, tag: str) -> list[Envelope]:
    """``n`` CallReceived envelopes over 5,000 incidents (deterministic ids per ``tag``)."""
    return [
        new_event(
            CallReceived(
                incident_id=f"sea:{tag}-{i % 5000}",
                agency="sea",
                cad_number=str(i),
                at=T0 + timedelta(seconds=i),
                source_timezone="UTC",
                call_type_final="CRISIS" if i % 3 == 0 else "WELL BEING",
            ),
            source=f"bench/{tag}",
            record_id=str(i),
            recorded_at=T0 + timedelta(seconds=i),
        )
        for i in range(n)
    ]


def county(seed: int, days: int, calls_per_day: int) -> County:
    return CountyModel(seed, days, date(2024, 1, 1), calls_per_day=calls_per_day).generate()


def write_csv_drop(c: County, profile: Profile, directory: Path) -> list[Path]:
    """One CSV export per simulated day in ``profile``'s layout, as ``hub simulate csv``
    writes them (about 1 % damaged rows, which the connector dead-letters)."""
    by_day: dict[str, list[SimCall]] = {}
    for call in c.calls:
        by_day.setdefault(call.cad_number[:5], []).append(call)
    paths = []
    for day, calls in sorted(by_day.items()):
        path = directory / f"{profile.name}-{day}.csv"
        path.write_text(csv_table(calls, profile), encoding="utf-8")
        paths.append(path)
    return paths


def raw_producer(settings: Settings) -> AIOKafkaProducer:
    """The baseline producer: configured like the event log's (idempotent, acks=all,
    same batch size and linger), without the index or the envelope."""
    clients = KafkaClients(settings.kafka)
    return clients.producer("bench-raw", max_batch_size=PRODUCER_BATCH_BYTES, linger_ms=5)


async def create_topic(settings: Settings, name: str) -> str:
    admin = KafkaClients(settings.kafka).admin("bench")
    await admin.start()
    try:
        kafka = settings.kafka
        await admin.create_topics([NewTopic(name, kafka.partitions, kafka.replication_factor)])
    finally:
        await admin.close()
    return name


async def warm_log(rt: Runtime, tag: str, dead_letters: int = 0) -> int:
    """Setup on a fresh prefix: appends spread over every partition of the dispatch topic
    (and ``dead_letters`` dead letters), so that connections, metadata and the new topics'
    leader elections (``NotLeaderForPartition`` retries) are paid before any measured
    block; returns the events appended."""
    letters = [
        build_dead_letter(
            source="bench/warm",
            source_family="cad",
            record_ref=f"warm-{i}",
            stage="parse",
            reason="benchmark warm-up",
            raw=b"warm",
            sealer=rt.deadletter_sealer,
        )
        for i in range(dead_letters)
    ]
    await rt.log.dead_letters(letters)
    return len((await rt.log.append(synthetic_calls(WARM_EVENTS, tag))).appended)


async def warm_producer(producer: AIOKafkaProducer, topic: str, partitions: int) -> None:
    """Setup: one record to every partition of a baseline topic."""
    for p in range(partitions):
        await producer.send_and_wait(topic, b"warm", partition=p)


class Busy:
    """Wall time during which at least one awaited call of a kind was in flight (calls of
    the pipelined ingest overlap each other and the mapping: a sum would count twice),
    per kind and for any kind at all."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._in: dict[str, int] = {}
        self._since: dict[str, float] = {}

    def _enter(self, kind: str, now: float) -> None:
        if self._in.get(kind, 0) == 0:
            self._since[kind] = now
        self._in[kind] = self._in.get(kind, 0) + 1

    def _leave(self, kind: str, now: float) -> None:
        self._in[kind] -= 1
        if self._in[kind] == 0:
            self.seconds[kind] = self.seconds.get(kind, 0.0) + now - self._since[kind]

    async def timed(self, kind: str, call: Any) -> Any:
        now = time.perf_counter()  # one reading for both: a kind's time never exceeds "any"
        self._enter(kind, now)
        self._enter("any", now)
        try:
            return await call
        finally:
            now = time.perf_counter()
            self._leave("any", now)
            self._leave(kind, now)
            self.calls[kind] = self.calls.get(kind, 0) + 1


class TimedLogPort:
    """The event log as the connector runner's log port, noting the wall time during which
    appends and dead-letter writes were in flight (a breakdown of the ingest; it changes
    nothing else)."""

    def __init__(self, log: EventLog, busy: Busy) -> None:
        self.log, self.busy = log, busy

    async def append(self, envelopes: Sequence[Envelope]) -> AppendResult:
        result: AppendResult = await self.busy.timed("append", self.log.append(envelopes))
        return result

    async def dead_letters(self, letters: Sequence[DeadLetter]) -> list[bool]:
        flags: list[bool] = await self.busy.timed("dead_letters", self.log.dead_letters(letters))
        return flags


class TimedRevisions:
    """The revision store, noting the wall time its claims were in flight."""

    def __init__(self, store: PostgresRevisionStore, busy: Busy) -> None:
        self.store, self.busy = store, busy

    async def claim(self, source: str, keys: Sequence[RevisionKey]) -> dict[str, str]:
        firsts: dict[str, str] = await self.busy.timed("revision_claims", self.store.claim(source, keys))
        return firsts


def breakdown(total: float, busy: Busy) -> dict[str, dict[str, float]]:
    """Where an ingest's wall time went: for appends, dead-letter writes and revision
    claims the wall time during which at least one was in flight (they overlap each other
    and the mapping: the pipelined runner claims the next chunk and writes the last ones
    while it maps), and ``no_io_in_flight``: the time none of them was (reading, mapping
    and key look-ups that nothing overlapped)."""
    out: dict[str, dict[str, float]] = {
        kind: {"seconds": round(busy.seconds.get(kind, 0.0), 3), "calls": busy.calls.get(kind, 0)}
        for kind in ("append", "dead_letters", "revision_claims")
    }
    out["no_io_in_flight"] = {"seconds": round(max(0.0, total - busy.seconds.get("any", 0.0)), 3)}
    return out


async def produce_batches(
    producer: AIOKafkaProducer, topic: str, batches: Sequence[Sequence[tuple[bytes, bytes, list]]]
) -> int:
    """Send each batch and await all of its acknowledgements before the next (the shape
    of one ``EventLog.append``); returns the records sent."""
    sent = 0
    for batch in batches:
        futures = [await producer.send(topic, value=v, key=k, headers=h) for v, k, h in batch]
        await asyncio.gather(*futures)
        sent += len(batch)
    return sent


async def produce_record_batches(
    producer: AIOKafkaProducer, topic: str, batches: Sequence[Sequence[tuple[bytes, bytes, list]]]
) -> int:
    """:func:`produce_batches` through aiokafka's batch API (``create_batch`` /
    ``send_batch``: one record batch per partition, placed by the producer's partitioner,
    one future per record batch), the fastest way aiokafka produces; returns the records
    sent."""
    every = sorted(await producer.partitions_for(topic))
    partition = DefaultPartitioner()
    sent = 0
    for batch in batches:
        builders: dict[int, Any] = {}
        futures = []
        for value, key, headers in batch:
            p = partition(key, every, every)
            builder = builders.get(p)
            record = {"key": key, "value": value, "timestamp": None, "headers": headers}
            if builder is None or builder.append(**record) is None:
                if builder is not None:  # full: send it, start the next
                    futures.append(await producer.send_batch(builder, topic, partition=p))
                builder = builders[p] = producer.create_batch()
                builder.append(**record)
        for p, builder in builders.items():
            futures.append(await producer.send_batch(builder, topic, partition=p))
        await asyncio.gather(*futures)
        sent += len(batch)
    return sent


async def fastest_raw(
    settings: Settings, name: str, batches: Sequence[Sequence[tuple[bytes, bytes, list]]]
) -> tuple[Sample, int, dict[str, int]]:
    """The fastest raw Python producer on ``batches``: per-record ``send`` and the batch
    API, each on a fresh topic with the log's producer configuration; returns the faster
    one's sample and records sent, and every producer's rate (records/s)."""
    results: dict[str, tuple[Sample, int]] = {}
    for kind, produce in (("send", produce_batches), ("send_batch", produce_record_batches)):
        topic = await create_topic(settings, f"{settings.kafka.topic_prefix}.bench.{name}.{kind}")
        producer = raw_producer(settings)
        await producer.start()
        try:
            await warm_producer(producer, topic, settings.kafka.partitions)
            with measured() as sample:
                sent = await produce(producer, topic, batches)
        finally:
            await producer.stop()
        results[kind] = (sample, sent)
    rates = {kind: round(sent / sample.seconds) for kind, (sample, sent) in results.items()}
    best = max(results, key=lambda kind: rates[kind])
    return results[best][0], results[best][1], rates


def event_records(paths: Sequence[Path], profile: Profile) -> list[list[tuple[bytes, bytes, list]]]:
    """Setup: the records the ingest of ``paths`` writes (each row mapped as its first
    revision, free text sealed under throw-away keys: same sizes), per file, with their
    key, ``ce_*`` headers and MAC-sized headers: what a raw producer of the ingest's own
    events would send."""
    mapper = mapper_for(profile, keyring=MemoryKeyring())
    mac = [("hub_mac_kid", b"k" * 8), ("hub_mac", b"0" * 64)]
    out = []
    for path in paths:
        records = []
        for rec in read_records(path, profile):
            result = safe_map(mapper, rec, None)
            if isinstance(result, Mapped):
                records += [(e.to_bytes(), e.partitionkey.encode(), record_headers(e) + mac)
                            for e in result.events]
        out.append(records)
    return out


async def append_all(log: EventLog, envelopes: Sequence[Envelope]) -> int:
    """Setup: append ``envelopes`` in large batches; returns how many were new."""
    new = 0
    for i in range(0, len(envelopes), APPEND_SETUP_BATCH):
        new += len((await log.append(envelopes[i : i + APPEND_SETUP_BATCH])).appended)
    return new


async def count_records(settings: Settings) -> int:
    n = 0
    topics = family_topics(settings.kafka.topic_prefix)
    async for _ in scan_records(KafkaClients(settings.kafka), topics, role="bench-count"):
        n += 1
    return n


async def copy_floor(settings: Settings, rt: Runtime, schema: str) -> int:
    """The rebuild's floor: every record of the fact topics read with ``getmany`` and one
    trivial row per record (topic, partition, offset) loaded with one COPY into a fresh
    scratch table; returns the rows loaded."""
    rows: list[tuple[str, int, int]] = []
    topics = family_topics(settings.kafka.topic_prefix)
    async for rec in scan_records(KafkaClients(settings.kafka), topics, role="bench-floor"):
        rows.append((rec.topic, rec.partition, rec.offset))
    async with (
        open_pool(settings, role="owner", max_size=1) as owner,
        owner.acquire() as conn,
        conn.transaction(),
    ):
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f'CREATE TABLE "{schema}".records (topic text, "partition" int, "offset" bigint)')
        await conn.copy_records_to_table(
            "records", schema_name=schema, records=rows, columns=["topic", "partition", "offset"]
        )
    return len(rows)


# --------------------------------------------------------------------------- 1. append + replay


async def append_and_replay(ws: Workspace, n: int, batch: int) -> list[Row]:
    """``EventLog.append`` (index claim + idempotent produce + offsets recorded, one
    transaction per batch) vs a raw producer sending the same envelopes' bytes; then
    ``EventLog.replay`` (merge + decode + upcast) vs a raw ``getmany`` scan of the topic."""
    settings = ws.settings("a")
    topic = fact_topic(settings.kafka.topic_prefix, "dispatch")
    raw_topic = await create_topic(settings, f"{settings.kafka.topic_prefix}.bench.raw")
    async with open_runtime(settings) as rt:
        evs = synthetic_calls(n, "a")
        warm = await warm_log(rt, "warm")
        with measured() as ours:
            appended = 0
            for i in range(0, n, batch):
                appended += len((await rt.log.append(evs[i : i + batch])).appended)
        expect(appended == n, f"append: {appended} of {n} envelopes appended")
        del evs  # later phases' peaks should not carry this phase's inputs

        raw = [(e.to_bytes(), e.partitionkey.encode(), record_headers(e)) for e in synthetic_calls(n, "b")]
        producer = raw_producer(settings)
        await producer.start()
        try:
            await warm_producer(producer, raw_topic, settings.kafka.partitions)
            batches = [raw[i : i + batch] for i in range(0, n, batch)]
            with measured() as base:
                sent = await produce_batches(producer, raw_topic, batches)
        finally:
            await producer.stop()
        del raw, batches
        append_row = Row(
            "append (EventLog)",
            n,
            ours,
            "raw idempotent aiokafka producer, same bytes, same batches",
            sent,
            base,
            {"batch": batch},
        )

        with measured() as ours:
            replayed = 0
            async for _ in rt.log.replay(families=["dispatch"]):
                replayed += 1
        with measured() as base:
            scanned = 0
            async for _ in scan_records(KafkaClients(settings.kafka), [topic], role="bench-raw"):
                scanned += 1
        expect(
            replayed == scanned == n + warm,
            f"replay: {replayed} decoded, {scanned} scanned, {n + warm} written",
        )
        replay_row = Row(
            "replay (EventLog)",
            replayed,
            ours,
            "raw getmany scan of the same topic",
            scanned,
            base,
            {"mib_per_10k_events": round(per_10k(ours.growth_mib, replayed), 2)},
        )
        index_row = await index_bytes(rt, appended + warm)
    return [append_row, replay_row, index_row]


# --------------------------------------------------------------------------- 2. CAD ingest, 3. rebuild


async def cad_ingest_and_rebuild(ws: Workspace, tmp: Path, days: int, per_day: int) -> list[Row]:
    """CSV drop through the connector (read + map + revision claims + ``EventLog.append``
    + dead letters), first as new data, then again (every event a duplicate), each vs a
    raw producer sending the same rows as pre-serialized JSON. Then the read models of
    that log (plus the county's co-responder and case facts) rebuilt by
    ``projections.replay`` vs the read + COPY floor."""
    settings = ws.settings("c")
    profile = load_profile("seattle")
    c = county(11, days, per_day)
    paths = write_csv_drop(c, profile, tmp)
    by_file: list[list[tuple[bytes, bytes, list[tuple[str, bytes]]]]] = [
        [
            (
                json.dumps(r.fields if r.fields is not None else {"raw": r.raw.decode()}).encode(),
                r.ref.encode(),
                [],
            )
            for r in read_records(p, profile)
        ]
        for p in paths
    ]
    events_by_file = event_records(paths[:EVENT_FLOOR_FILES], profile)
    rows: list[Row] = []
    async with open_runtime(settings) as rt:
        store = PostgresRevisionStore(rt.pool, settings.core_schema)
        await warm_log(rt, "warm", dead_letters=30)

        base, sent, raw_rates = await fastest_raw(settings, "rawcad", by_file)
        events_floor, floor_sent, floor_rates = await fastest_raw(settings, "rawevents", events_by_file)
        n_rows = sum(len(f) for f in by_file)
        floor_rows = sum(len(f) for f in by_file[:EVENT_FLOOR_FILES])
        del by_file, events_by_file
        baseline = ("fastest raw aiokafka producer (send or send_batch) of the rows as pre-serialized "
                    "JSON, one batch per file")

        busy = Busy()
        port, revisions = TimedLogPort(rt.log, busy), TimedRevisions(store, busy)
        with measured() as ours:  # as `hub ingest cad` runs it: free text sealed per incident
            first = await ingest_files(paths, profile, port, rt.deadletter_sealer, revisions,
                                       keyring=rt.keyring)
        expect(
            first.balanced() and first.read == n_rows == sent,
            f"cad ingest: read {first.read}, rows {n_rows}, raw sent {sent}, counts {first.as_dict()}",
        )
        expect(first.events_duplicate == 0, "cad ingest: a fresh log reported duplicates")
        ingest = Row(
            "cad ingest (connector)",
            first.read,
            ours,
            baseline,
            sent,
            base,
            {
                "files": len(paths),
                "events_appended": first.events_appended,
                "dead_lettered": first.dead_lettered,
                "excluded": first.excluded,
                "breakdown": breakdown(ours.seconds, busy),
                "raw_rows_per_s": raw_rates,
                # the ceiling of any ingest writing these events with this producer: the
                # fastest raw produce of the ingest's own records, in CSV rows per second
                "raw_events_per_s": floor_rates,
                "raw_events_floor_rows_per_s": round(floor_rows / events_floor.seconds),
                "events_per_row": round(floor_sent / floor_rows, 2),
            },
            target=f"≥ {INGEST_TARGET:,} rows/s, ratio ≥ {INGEST_RATIO_TARGET}",
        )
        ingest.verdict = verdict(ingest.rps >= INGEST_TARGET and (ingest.ratio or 0.0) >= INGEST_RATIO_TARGET)
        rows.append(ingest)

        busy = Busy()
        port, revisions = TimedLogPort(rt.log, busy), TimedRevisions(store, busy)
        with measured() as ours:
            again = await ingest_files(paths, profile, port, rt.deadletter_sealer, revisions,
                                       keyring=rt.keyring)
        expect(
            again.balanced() and again.events_appended == 0 and again.read == first.read,
            f"cad re-ingest: {again.as_dict()}",
        )
        rows.append(
            Row(
                "cad re-ingest (all dup)",
                again.read,
                ours,
                baseline,
                sent,
                base,
                {
                    "events_duplicate": again.events_duplicate,
                    "breakdown": breakdown(ours.seconds, busy),
                },
            )
        )

        team = encounter_events(c, rt.pseudonym_key) + case_envelopes(c, rt.pseudonym_key)
        await append_all(rt.log, team)
        total = await count_records(settings)

        schema = ws.schema("rebuild")
        await ws.settle()
        with measured() as ours:
            stats = await replay_into(settings, rt.pool, rt.kafka, schema, keys=rt.keyring)
        with measured() as base:
            floor = await copy_floor(settings, rt, ws.schema("floor"))
        await ws.settle()
        expect(
            stats.records == floor == total,
            f"rebuild: replay read {stats.records}, floor {floor}, log {total}",
        )
        rebuild = Row(
            "read-model rebuild",
            stats.records,
            ours,
            "raw getmany of the fact topics + COPY of one trivial row per record",
            floor,
            base,
            {
                "facts": stats.facts,
                "rows_written": stats.rows,
                "mib_per_10k_events": round(per_10k(ours.growth_mib, stats.records), 2),
            },
        )
        rebuild_verdict(rebuild, stats.records)
        rows.append(rebuild)

        with measured() as two:
            parallel = await replay_into(settings, rt.pool, rt.kafka, ws.schema("rebuild2"), workers=2,
                                         keys=rt.keyring)
        expect(parallel.rows == stats.rows, f"2 workers: {parallel.rows} rows, one process {stats.rows}")
        scaled = Row(
            "rebuild, 2 worker processes",
            parallel.records,
            two,
            "the one-process rebuild above (same log)",
            stats.records,
            ours,
            {"workers": 2},
            target=f"≥ {PARALLEL_TARGET} x one process",
        )
        scaled.verdict = verdict((scaled.ratio or 0.0) >= PARALLEL_TARGET)
        rows.append(scaled)
    return rows


# --------------------------------------------------------------------------- 4. live projection


class TimedProjector(Projector):
    """The projector of ``hub project``, noting when its first batch arrived (the end of
    the faust app's start and the consumer group join)."""

    first_batch_at: float | None = None

    async def apply_events(self, events: Sequence[Any]) -> None:
        if self.first_batch_at is None:
            self.first_batch_at = time.perf_counter()
        await super().apply_events(events)


async def live_projection(ws: Workspace, days: int, per_day: int) -> list[Row]:
    """The faust path (``hub project --until-caught-up``) over a smaller county vs the
    batch rebuild (``projections.replay``) of the same log into a fresh schema."""
    settings = ws.settings("l")
    c = county(13, days, per_day)
    rows: list[Row] = []
    async with open_runtime(settings) as rt:
        envelopes = county_envelopes(c, load_profile("san_francisco"), rt.pseudonym_key)
        await append_all(rt.log, envelopes)
        total = await count_records(settings)

        schema = ws.schema("live")
        gid = group_id(settings, schema)
        ws.groups.append(gid)
        ws.dirs.append(settings.state_dir / "faust" / gid)
        projector = TimedProjector(rt, schema)
        with measured() as ours:
            started = time.perf_counter()
            stats = await projector.run(until_caught_up=True)
        with measured() as base:
            replayed = await replay_into(settings, rt.pool, rt.kafka, ws.schema("live_replay"),
                                         keys=rt.keyring)
        applied = stats.records - stats.skipped  # re-deliveries after a rebalance are skipped
        expect(
            applied == replayed.records == total and stats.new_facts == replayed.facts,
            f"live: projector {applied} records / {stats.new_facts} facts, "
            f"replay {replayed.records} / {replayed.facts}, log {total}",
        )
        expect(projector.first_batch_at is not None, "live: the projector never received a batch")
        assert projector.first_batch_at is not None
        join = projector.first_batch_at - started
        extra = {
            "batches": stats.batches,
            "facts": stats.new_facts,
            "redelivered": stats.skipped,
            "start_and_join_seconds": round(join, 3),
        }
        rows.append(
            Row(
                "live projection (faust)",
                applied,
                ours,
                "batch rebuild (projections.replay) of the same log",
                replayed.records,
                base,
                extra,
            )
        )
        steady = Sample(
            seconds=ours.seconds - join,
            start_mib=ours.start_mib,
            peak_mib=ours.peak_mib,
            per_phase=ours.per_phase,
        )
        rows.append(
            Row(
                "  after start + join",
                applied,
                steady,
                "batch rebuild (projections.replay) of the same log",
                replayed.records,
                base,
                extra,
            )
        )
    return rows
