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

from bench.measure import Sample, measured
from bench.report import Row, expect, per_10k, verdict
from bench.targets import PARALLEL_TARGET, index_bytes, rebuild_verdict
from bench.workspace import Workspace
from connectors.cad.ingest import ingest_files, read_records
from connectors.cad.profile import Profile, load_profile
from connectors.core.records import RevisionKey
from connectors.core.state import PostgresRevisionStore
from hub.bootstrap import open_runtime
from hub.devtools.simulate.feeds import csv_table, encounter_events
from hub.devtools.simulate.model import County, CountyModel, SimCall
from hub.devtools.simulate.pipeline import case_envelopes, county_envelopes
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


class TimedLogPort:
    """The event log as the connector runner's log port, adding up the wall time spent
    awaiting ``append`` and ``dead_letters`` (a breakdown of the ingest; it changes nothing
    else)."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.seconds = {"append": 0.0, "dead_letters": 0.0}
        self.calls = {"append": 0, "dead_letters": 0}
        self._in_flight = 0
        self._busy_since = 0.0

    async def append(self, envelopes: Sequence[Envelope]) -> AppendResult:
        """Appends may overlap (the pipelined runner): ``seconds['append']`` is the wall
        time during which at least one was in flight, not the sum."""
        if self._in_flight == 0:
            self._busy_since = time.perf_counter()
        self._in_flight += 1
        try:
            return await self.log.append(envelopes)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self.seconds["append"] += time.perf_counter() - self._busy_since
            self.calls["append"] += 1

    async def dead_letters(self, letters: Sequence[DeadLetter]) -> list[bool]:
        started = time.perf_counter()
        try:
            return await self.log.dead_letters(letters)
        finally:
            self.seconds["dead_letters"] += time.perf_counter() - started
            self.calls["dead_letters"] += 1


class TimedRevisions:
    """The revision store with the wall time spent awaiting ``claim`` added up."""

    def __init__(self, store: PostgresRevisionStore) -> None:
        self.store = store
        self.seconds = 0.0
        self.calls = 0

    async def claim(self, source: str, keys: Sequence[RevisionKey]) -> dict[str, str]:
        started = time.perf_counter()
        try:
            return await self.store.claim(source, keys)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1


def breakdown(total: float, port: TimedLogPort, revisions: TimedRevisions) -> dict[str, dict[str, float]]:
    """Where an ingest's wall time went: appends in flight (overlapping the rest: the
    pipelined runner maps the next chunk meanwhile), awaiting its dead letters and the
    revision claims, and the rest outside any append (reading, mapping, counting)."""
    waits = port.seconds["append"] + port.seconds["dead_letters"] + revisions.seconds
    return {
        "append": {"seconds": round(port.seconds["append"], 3), "calls": port.calls["append"]},
        "dead_letters": {
            "seconds": round(port.seconds["dead_letters"], 3), "calls": port.calls["dead_letters"]
        },
        "revision_claims": {"seconds": round(revisions.seconds, 3), "calls": revisions.calls},
        "read_map_rest": {"seconds": round(max(0.0, total - waits), 3)},
    }


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
    raw_topic = await create_topic(settings, f"{settings.kafka.topic_prefix}.bench.rawcad")
    rows: list[Row] = []
    async with open_runtime(settings) as rt:
        store = PostgresRevisionStore(rt.pool, settings.core_schema)
        await warm_log(rt, "warm", dead_letters=30)

        producer = raw_producer(settings)
        await producer.start()
        try:
            await warm_producer(producer, raw_topic, settings.kafka.partitions)
            with measured() as base:
                sent = await produce_batches(producer, raw_topic, by_file)
        finally:
            await producer.stop()
        n_rows = sum(len(f) for f in by_file)
        del by_file
        baseline = "raw aiokafka produce of the rows as pre-serialized JSON, one batch per file"

        port, revisions = TimedLogPort(rt.log), TimedRevisions(store)
        with measured() as ours:
            first = await ingest_files(paths, profile, port, rt.deadletter_sealer, revisions)
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
                "breakdown": breakdown(ours.seconds, port, revisions),
            },
            target=f"≥ {INGEST_TARGET:,} rows/s, ratio ≥ {INGEST_RATIO_TARGET}",
        )
        ingest.verdict = verdict(ingest.rps >= INGEST_TARGET and (ingest.ratio or 0.0) >= INGEST_RATIO_TARGET)
        rows.append(ingest)

        port, revisions = TimedLogPort(rt.log), TimedRevisions(store)
        with measured() as ours:
            again = await ingest_files(paths, profile, port, rt.deadletter_sealer, revisions)
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
                    "breakdown": breakdown(ours.seconds, port, revisions),
                },
            )
        )

        team = encounter_events(c, rt.pseudonym_key) + case_envelopes(c, rt.pseudonym_key)
        await append_all(rt.log, team)
        total = await count_records(settings)

        schema = ws.schema("rebuild")
        with measured() as ours:
            stats = await replay_into(settings, rt.pool, rt.kafka, schema, keys=rt.keyring)
        with measured() as base:
            floor = await copy_floor(settings, rt, ws.schema("floor"))
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
