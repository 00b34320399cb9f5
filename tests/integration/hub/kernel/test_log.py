"""The event log on the real broker and PostgreSQL: exactly-once appends, per-key replay
order, as-of replay, reading from offsets and times, dead letters, person keys."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.kernel.crypto import KeyDestroyedError, seal, unseal
from hub.kernel.deadletters import build_dead_letter
from hub.kernel.keystore import TokenKeyring
from hub.kernel.log import EVENTS, DeadLetterError, EventLog, event_key
from hub.kernel.runtime import Runtime
from hub.kernel.verify import run_verify
from schemas.deadletter import DeadLetter
from schemas.dispatch import CallReceived, UnitDispatched
from schemas.envelope import Envelope, new_event
from schemas.topics import deadletter_topic, fact_topic

T0 = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)


def call(tag: str, n: int, *, recorded: datetime | None = None, revision: int = 0) -> Envelope:
    incident = f"sea:{tag}-{n % 7}"
    return new_event(
        UnitDispatched(incident_id=incident, unit_id=f"u{n}", at=T0 + timedelta(seconds=n)),
        source="cad/test", record_id=f"{tag}-{n}", revision=revision, recorded_at=recorded or T0,
    )


async def ids_in_log(rt: Runtime, family: str = "dispatch") -> list[str]:
    return [e.envelope.id async for e in rt.log.read([fact_topic(rt.settings.kafka.topic_prefix, family)])]


async def test_appending_the_same_batch_twice_stores_one_copy(log_rt: Runtime) -> None:
    tag = uuid.uuid4().hex[:6]
    batch = [call(tag, n) for n in range(40)]
    first = await log_rt.log.append(batch + batch[:5])  # in-batch duplicates too
    assert [a.envelope.id for a in first.appended] == [e.id for e in batch]
    assert [d.id for d in first.duplicates] == [e.id for e in batch[:5]]
    assert all(a.offset >= 0 and a.topic.endswith(".facts.dispatch") for a in first.appended)
    second = await log_rt.log.append(batch)
    assert second.appended == [] and [d.id for d in second.duplicates] == [e.id for e in batch]
    mine = [i for i in await ids_in_log(log_rt) if i in {e.id for e in batch}]
    assert sorted(mine) == sorted(e.id for e in batch)  # one copy each
    rows = await log_rt.pool.fetch(
        f'SELECT event_id, "partition", "offset" FROM {log_rt.settings.core_schema}.indexed_events '
        "WHERE event_id = ANY($1::text[])", [e.id for e in batch],
    )
    where = {(a.envelope.id, a.partition, a.offset) for a in first.appended}
    assert {(r["event_id"], r["partition"], r["offset"]) for r in rows} == where


async def test_concurrent_appenders_of_one_id_produce_it_once(log_rt: Runtime) -> None:
    tag = uuid.uuid4().hex[:6]
    batch = [call(tag, n) for n in range(30)]
    results = await asyncio.gather(*(log_rt.log.append(list(reversed(batch)) if i % 2 else batch)
                                     for i in range(4)))
    assert sum(len(r.appended) for r in results) == len(batch)
    assert sum(len(r.duplicates) for r in results) == 3 * len(batch)
    mine = [i for i in await ids_in_log(log_rt) if i in {e.id for e in batch}]
    assert sorted(mine) == sorted(e.id for e in batch)


async def test_two_processes_appending_one_id_at_once_index_it_once(log_rt: Runtime) -> None:
    """Two event logs (two processes: no shared in-process serialization) append the same
    batch at once: each id is reported as appended by exactly one of them (the other reports
    a duplicate), the index names the LAST copy of each id in the log, and ``hub verify``
    sees every earlier copy as an orphan copy, never as forged."""
    tag = uuid.uuid4().hex[:6]
    batch = [call(tag, n) for n in range(30)]
    mine = {e.id for e in batch}
    other = EventLog(log_rt.settings, log_rt.pool, log_rt.kafka)
    await other.start()
    try:
        results = await asyncio.gather(log_rt.log.append(batch), other.append(list(reversed(batch))))
    finally:
        await other.stop()
    appended = [a.envelope.id for r in results for a in r.appended]
    assert sorted(appended) == sorted(mine)
    assert sum(len(r.duplicates) for r in results) == len(batch)
    topic = fact_topic(log_rt.settings.kafka.topic_prefix, "dispatch")
    copies = [(e.envelope.id, e.partition, e.offset) async for e in log_rt.log.read([topic])
              if e.envelope.id in mine]
    assert {c[0] for c in copies} == mine and len(copies) <= 2 * len(batch)
    last = {eid: (p, o) for eid, p, o in sorted(copies, key=lambda c: c[2])}
    rows = await log_rt.pool.fetch(
        f'SELECT event_id, "partition", "offset" FROM {log_rt.settings.core_schema}.indexed_events '
        "WHERE event_id = ANY($1::text[])", list(mine),
    )
    assert {r["event_id"]: (r["partition"], r["offset"]) for r in rows} == last
    ours = {(p, o) for _, p, o in copies}
    report = await run_verify(log_rt.settings, log_rt.pool, log_rt.kafka, store=False)
    assert [b.describe() for b in report.breaks if b.topic == topic and (b.partition, b.offset) in ours] == []
    orphans = [o for o in report.orphan_copies if o.topic == topic and (o.partition, o.offset) in ours]
    assert len(orphans) == len(copies) - len(batch)


async def test_indexing_skips_exactly_the_ids_another_writer_indexed_first(log_rt: Runtime) -> None:
    """The index statement after the acknowledgements: the fast COPY, and when one of its
    ids was indexed by another writer meanwhile, the INSERT that skips exactly that one."""
    schema = log_rt.settings.core_schema
    rows = sorted((event_key(call(uuid.uuid4().hex[:6], n).id), 1, 1, 0, 10_000 + n) for n in range(5))
    async with log_rt.pool.acquire() as conn:
        assert await EVENTS.index(conn, schema, rows[:2]) == {r[0] for r in rows[:2]}
        assert await EVENTS.index(conn, schema, rows) == {r[0] for r in rows[2:]}
    stored = await log_rt.pool.fetch(
        f'SELECT event_id, "offset" FROM {schema}.event_index WHERE event_id = any($1::uuid[])',
        [r[0] for r in rows],
    )
    assert sorted((r["event_id"], r["offset"]) for r in stored) == [(r[0], r[4]) for r in rows]


async def test_replay_returns_events_in_per_key_order(log_rt: Runtime) -> None:
    tag = uuid.uuid4().hex[:6]
    order: dict[str, list[str]] = defaultdict(list)
    for round_ in range(5):  # five appends, each touching every key
        batch = [call(tag, n, revision=round_) for n in range(14)]
        await log_rt.log.append(batch)
        for e in batch:
            order[e.partitionkey].append(e.id)
    seen: dict[str, list[str]] = defaultdict(list)
    async for ev in log_rt.log.replay(families=["dispatch"]):
        if ev.key in order:
            seen[ev.key].append(ev.envelope.id)
    assert seen == order


async def test_as_of_replay_excludes_later_events(log_rt: Runtime) -> None:
    tag = uuid.uuid4().hex[:6]
    early = [call(tag, n, recorded=T0 + timedelta(hours=1)) for n in range(5)]
    late = [call(tag, n, recorded=T0 + timedelta(hours=3)) for n in range(5, 10)]
    await log_rt.log.append(early)
    await log_rt.log.append(late)
    mine = {e.id for e in early + late}

    async def replayed(as_of: datetime | None) -> set[str]:
        return {ev.envelope.id async for ev in log_rt.log.replay(as_of=as_of) if ev.envelope.id in mine}

    assert await replayed(T0 + timedelta(hours=2)) == {e.id for e in early}
    assert await replayed(T0 + timedelta(hours=1)) == {e.id for e in early}  # at T is included
    assert await replayed(T0) == set()
    assert await replayed(None) == mine
    with pytest.raises(ValueError, match="timezone"):
        async for _ in log_rt.log.replay(as_of=datetime(2024, 1, 1)):
            pass


async def test_read_from_offsets_and_from_time(log_rt: Runtime) -> None:
    tag = uuid.uuid4().hex[:6]
    base = datetime.now(UTC) - timedelta(minutes=30)
    first = await log_rt.log.append([call(tag, n, recorded=base) for n in range(6)])
    later = base + timedelta(minutes=10)
    second = await log_rt.log.append([call(tag, n, recorded=later) for n in range(6, 12)])
    topic = first.appended[0].topic
    starts: dict[tuple[str, int], int] = {}
    for a in second.appended:
        starts[(a.topic, a.partition)] = min(a.offset, starts.get((a.topic, a.partition), a.offset))
    got = {ev.envelope.id async for ev in log_rt.log.read([topic], from_offsets=starts)}
    assert {a.envelope.id for a in second.appended} <= got
    for a in first.appended:  # named partitions start at the given offset, others at the beginning
        assert (a.envelope.id in got) == ((a.topic, a.partition) not in starts)
    since = {ev.envelope.id async for ev in log_rt.log.read([topic], from_time=base + timedelta(minutes=5))}
    assert {a.envelope.id for a in second.appended} <= since
    assert not ({a.envelope.id for a in first.appended} & since)


async def test_dead_letters_are_written_once_and_indexed(log_rt: Runtime) -> None:
    dl = build_dead_letter(source="cad/test", source_family="cad", record_ref=f"f.csv:{uuid.uuid4().hex}",
                           stage="parse", reason="unparseable time", raw=b"Jane,1/2/2024 25:00",
                           sealer=log_rt.deadletter_sealer, profile="test")
    assert await log_rt.log.dead_letters([dl]) == [True]
    assert await log_rt.log.dead_letters([dl]) == [False]
    row = await log_rt.pool.fetchrow(
        f'SELECT status, topic, "offset" FROM {log_rt.settings.core_schema}.deadletters WHERE id = $1', dl.id
    )
    assert row["status"] == "open"
    assert row["topic"] == deadletter_topic(log_rt.settings.kafka.topic_prefix, "cad")
    from hub.kernel.kafka_io import scan_records

    found = [DeadLetter.model_validate_json(r.value) async for r in scan_records(
        log_rt.kafka, [row["topic"]], role="test-dl") if r.key == dl.id.encode()]
    assert found == [dl] and b"Jane" not in found[0].model_dump_json().encode()


def bad_row(rt: Runtime, tag: str, ref: str, raw: bytes) -> DeadLetter:
    return build_dead_letter(source="cad/batch", source_family="cad", record_ref=f"{tag}.csv:{ref}",
                             stage="parse", reason="bad row", raw=raw, sealer=rt.deadletter_sealer)


def letters_of(rt: Runtime, tag: str, n: int) -> list[DeadLetter]:
    return [bad_row(rt, tag, str(i), f"{tag},{i}".encode()) for i in range(n)]


async def dead_letter_copies(rt: Runtime, ids: set[str]) -> dict[str, int]:
    from hub.kernel.kafka_io import scan_records

    copies = dict.fromkeys(ids, 0)
    topic = deadletter_topic(rt.settings.kafka.topic_prefix, "cad")
    async for r in scan_records(rt.kafka, [topic], role="test-dl-batch"):
        if r.key.decode() in copies:
            copies[r.key.decode()] += 1
    return copies


async def test_a_dead_letter_batch_flags_repeats_and_stored_letters_stores_each_once(log_rt: Runtime) -> None:
    a, b, c = letters_of(log_rt, uuid.uuid4().hex[:8], 3)
    assert await log_rt.log.dead_letters([b]) == [True]  # already stored before the batch
    assert await log_rt.log.dead_letters([a, b, a, c, c]) == [True, False, False, True, False]
    assert await log_rt.log.dead_letters([]) == []
    rows = await log_rt.pool.fetch(
        f'SELECT id, status, topic, "partition", "offset" FROM {log_rt.settings.core_schema}.deadletters'
        " WHERE id = any($1::text[])", [a.id, b.id, c.id],
    )
    topic = deadletter_topic(log_rt.settings.kafka.topic_prefix, "cad")
    assert sorted(r["id"] for r in rows) == sorted([a.id, b.id, c.id])
    assert all(r["status"] == "open" and r["topic"] == topic and r["offset"] is not None for r in rows)
    assert len({(r["partition"], r["offset"]) for r in rows}) == 3
    assert await dead_letter_copies(log_rt, {a.id, b.id, c.id}) == {a.id: 1, b.id: 1, c.id: 1}


async def test_a_partly_failed_dead_letter_batch_commits_the_acknowledged_part(log_rt: Runtime) -> None:
    tag = uuid.uuid4().hex[:8]
    small = letters_of(log_rt, tag, 3)
    huge = bad_row(log_rt, tag, "huge", b"x" * 1_200_000)  # larger than the producer's request limit
    batch = [small[0], huge, small[1], small[2]]
    with pytest.raises(DeadLetterError) as caught:
        await log_rt.log.dead_letters(batch)
    assert caught.value.new == [True, False, True, True]
    assert [dl.id for dl, _ in caught.value.failed] == [huge.id]
    stored = await log_rt.pool.fetch(
        f'SELECT id, "offset" FROM {log_rt.settings.core_schema}.deadletters WHERE id = any($1::text[])',
        [dl.id for dl in batch],
    )
    assert sorted(r["id"] for r in stored) == sorted(dl.id for dl in small)  # the failed id stays free
    assert all(r["offset"] is not None for r in stored)
    # the retry: the stored ones are refused, the huge one fails again
    with pytest.raises(DeadLetterError) as again:
        await log_rt.log.dead_letters(batch)
    assert again.value.new == [False] * 4 and [dl.id for dl, _ in again.value.failed] == [huge.id]
    copies = await dead_letter_copies(log_rt, {dl.id for dl in batch})
    assert copies == {dl.id: 1 for dl in small} | {huge.id: 0}


async def test_person_keys_persist_and_erasure_shreds(log_rt: Runtime) -> None:
    person = "psn_" + uuid.uuid4().hex
    sealed = await asyncio.to_thread(
        lambda: seal(log_rt.keyring, person, {"name": "Jane"}, context="test/keys/name")
    )
    other = TokenKeyring(log_rt.settings, log_rt.pool)
    await other.start()
    try:
        assert await asyncio.to_thread(unseal, other, sealed) == {"name": "Jane"}  # same key elsewhere
        assert await log_rt.keyring.destroy(person) is True
        other.invalidate()
        with pytest.raises(KeyDestroyedError):
            await asyncio.to_thread(unseal, other, sealed)
        with pytest.raises(KeyDestroyedError):
            await asyncio.to_thread(  # never re-created
                lambda: seal(other, person, {"again": True}, context="test/keys/again")
            )
        assert await other.is_destroyed(person)
    finally:
        await other.stop()


RAW_ROW = st.one_of(
    st.tuples(st.just("ok"), st.integers(0, 15)),  # a valid record (ids repeat: duplicates)
    st.tuples(st.just("bad"), st.integers(0, 5)),  # a record that fails validation
)


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.lists(RAW_ROW, min_size=1, max_size=25))
async def test_read_equals_appended_plus_duplicates_plus_dead_lettered(log_rt: Runtime, rows) -> None:
    """For any mix of valid, duplicate and invalid inputs, every input is accounted for once."""
    tag = uuid.uuid4().hex[:8]
    envelopes, bad = [], []
    for i, (kind, n) in enumerate(rows):
        raw = f"{tag},{n},{'' if kind == 'bad' else 'sea'}".encode()
        try:
            agency = raw.decode().split(",")[2]
            data = CallReceived(incident_id=f"sea:{tag}-{n}", agency=agency or None, cad_number=str(n), at=T0,
                                source_timezone="UTC", call_type_final="WELL BEING")
            envelopes.append(new_event(data, source="cad/prop", record_id=f"{tag}-{n}"))
        except ValueError as exc:
            dl = build_dead_letter(source="cad/prop", source_family="cad", record_ref=f"{tag}:{i}",
                                   stage="validate", reason=str(exc)[:200], raw=raw,
                                   sealer=log_rt.deadletter_sealer)
            bad.append(dl)
    dead = sum(await log_rt.log.dead_letters(bad))
    result = await log_rt.log.append(envelopes)
    assert len(rows) == len(result.appended) + len(result.duplicates) + dead
    in_log = [i for i in await ids_in_log(log_rt) if i in {e.id for e in envelopes}]
    assert sorted(in_log) == sorted({e.id for e in envelopes})
    assert len(in_log) == len(result.appended)
    assert dead == sum(1 for k, _ in rows if k == "bad")


async def test_each_appended_event_is_where_the_log_says_on_its_keys_partition(log_rt: Runtime) -> None:
    """Appends go out as record batches: each event's reported partition, offset and
    timestamp are those of its record in Kafka, and every event of one key sits in that
    key's one partition (the partition a per-record send chooses)."""
    tag = uuid.uuid4().hex[:6]
    batch = [call(tag, n, recorded=T0 + timedelta(seconds=n % 3)) for n in range(300)]
    appended = (await log_rt.log.append(batch)).appended
    topic = fact_topic(log_rt.settings.kafka.topic_prefix, "dispatch")
    stored = {(e.partition, e.offset): e async for e in log_rt.log.read([topic])}
    partitions = sorted(await log_rt.log.producer.partitions_for(topic))
    for a in appended:
        record = stored[(a.partition, a.offset)]
        assert record.envelope.id == a.envelope.id
        assert record.timestamp == a.timestamp == a.envelope.recordedat
        assert a.partition == DefaultPartitioner()(a.envelope.partitionkey.encode(), partitions, partitions)
