"""The connector framework's accounting: every record lands in exactly one bucket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.cad.mapping import CadMapper
from connectors.cad.profile import load_profile
from connectors.cases.mapping import CaseMapper
from connectors.core.backoff import Backoff
from connectors.core.memory import MemoryCursorStore, MemoryLog, MemoryRevisionStore
from connectors.core.records import Batch, Exclusion, Mapped, RawRecord, Rejection, RevisionKey
from connectors.core.runner import DeadLetterSink, SourceRunner, ingest_batch, ingest_batches
from hub.kernel.crypto import (
    KeyDestroyedError,
    KeyNotResolved,
    MemoryKeyring,
    ResolvedKeys,
    incident_subject,
    unseal,
)
from hub.kernel.deadletters import open_raw
from hub.kernel.errors import PermanentError, ServiceUnavailable, TransientError
from hub.kernel.keystore import DeadLetterSealer
from schemas.dispatch import CallReceived
from schemas.envelope import new_event

KEY = bytes(range(32))
T0 = datetime(2024, 1, 1, tzinfo=UTC)


class ToyMapper:
    """kind:N rows: ok → 1-2 events, dup-of-earlier ids, bad → rejection, skip → exclusion."""

    source = "test/toy"

    def revision_key(self, record: RawRecord) -> RevisionKey | None:
        return None

    def map(self, record: RawRecord, first_revision: str | None = None):  # type: ignore[no-untyped-def]
        kind, n = record.fields
        if kind == "bad":
            return Rejection("validate", "bad row")
        if kind == "skip":
            return Exclusion("test row")
        if kind == "boom":
            raise RuntimeError("mapper exploded")
        if kind == "outage":
            raise ServiceUnavailable("a dependency of the mapping is down")
        events = [
            new_event(
                CallReceived(
                    incident_id=f"T:{n}",
                    agency="T",
                    cad_number=str(n),
                    at=T0 + timedelta(seconds=n),
                    source_timezone="UTC",
                ),
                source=self.source,
                record_id=str(n),
            )
        ]
        return Mapped(tuple(events))


def sink() -> DeadLetterSink:
    return DeadLetterSink("test/toy", "cad", DeadLetterSealer(KEY))


rows = st.lists(
    st.tuples(st.sampled_from(["ok", "bad", "skip", "boom", "problem"]), st.integers(0, 15)), max_size=40
)


@settings(max_examples=60, deadline=None)
@given(first=rows, second=rows)
def test_counts_add_up_for_any_mix(first, second) -> None:  # type: ignore[no-untyped-def]
    log = MemoryLog()

    def records(items):  # type: ignore[no-untyped-def]
        return [
            RawRecord(f"r{i}", f"{k}:{n}".encode(), (k, n), "unreadable" if k == "problem" else None)
            for i, (k, n) in enumerate(items)
        ]

    async def run():  # type: ignore[no-untyped-def]
        a = await ingest_batch(records(first), ToyMapper(), log, sink())
        b = await ingest_batch(records(second), ToyMapper(), log, sink())
        return a, b

    a, b = asyncio.run(run())
    for counts, items in ((a, first), (b, second)):
        assert counts.balanced()
        assert counts.read == len(items)
        assert counts.excluded == sum(1 for k, _ in items if k == "skip")
        assert counts.dead_lettered == sum(1 for k, _ in items if k in ("bad", "boom", "problem"))
        assert counts.events_appended + counts.events_duplicate == sum(1 for k, _ in items if k == "ok")
    # exactly one fact per distinct ok number, whatever the repetition
    distinct = {n for k, n in first + second if k == "ok"}
    assert len(log.events) == len(distinct) == a.events_appended + b.events_appended
    assert a.appended + b.appended == len(distinct)


def test_dead_letter_is_sealed_and_deduplicated() -> None:
    log = MemoryLog()
    rec = RawRecord("f.csv:2", b"secret,row", ("bad", 1))
    c1 = asyncio.run(ingest_batch([rec], ToyMapper(), log, sink()))
    c2 = asyncio.run(ingest_batch([rec], ToyMapper(), log, sink()))
    assert (c1.dead_lettered, c1.dead_letters_new, c2.dead_lettered, c2.dead_letters_new) == (1, 1, 1, 0)
    (letter,) = log.letters.values()
    assert letter.reason == "bad row" and letter.stage == "validate" and letter.raw_clear is None
    assert b"secret" not in letter.model_dump_json().encode()
    assert DeadLetterSealer(KEY).open(letter.raw) == b"secret,row"


def test_a_batchs_rejections_are_written_in_one_call_and_repeats_count_once() -> None:
    calls: list[int] = []

    class CountingLog(MemoryLog):
        async def dead_letters(self, letters):  # type: ignore[no-untyped-def]
            calls.append(len(letters))
            return await super().dead_letters(letters)

    log = CountingLog()
    bad = RawRecord("f.csv:2", b"secret,row", ("bad", 1))
    batch = [bad, RawRecord("f.csv:3", b"ok", ("ok", 1)), bad, RawRecord("f.csv:4", b"x", ("boom", 2))]
    counts = asyncio.run(ingest_batch(batch, ToyMapper(), log, sink()))
    assert calls == [3]
    assert (counts.dead_lettered, counts.dead_letters_new, counts.appended) == (3, 2, 1) and counts.balanced()
    assert len(log.letters) == 2
    asyncio.run(ingest_batch([RawRecord("f.csv:3", b"ok", ("ok", 1))], ToyMapper(), log, sink()))
    assert calls == [3]  # no rejections: no dead-letter call at all


def test_mapper_exception_becomes_dead_letter_with_reason() -> None:
    log = MemoryLog()
    counts = asyncio.run(ingest_batch([RawRecord("x", b"x", ("boom", 1))], ToyMapper(), log, sink()))
    assert counts.dead_lettered == 1
    reason = next(iter(log.letters.values())).reason
    # the type and where it was raised; never the message (it may quote input values)
    assert reason.startswith("RuntimeError at tests/unit/connectors/core/test_runner.py:")
    assert "exploded" not in reason


def test_revision_store_keeps_the_first_revision() -> None:
    store = MemoryRevisionStore()
    got = asyncio.run(store.claim("s", [RevisionKey("a", "2"), RevisionKey("a", "3"), RevisionKey("b", "1")]))
    assert got == {"a": "2", "b": "1"}
    assert asyncio.run(store.claim("s", [RevisionKey("a", "9")])) == {"a": "2"}


def test_backoff_is_jittered_capped_and_grows() -> None:
    b = Backoff(base=1, cap=8)
    assert [b.ceiling(n) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]
    rng = random.Random(1)
    delays = [b.delay(5, rng) for _ in range(200)]
    assert all(0 < d <= 8 for d in delays) and len(set(delays)) > 100


class FlakySource:
    name = "test/flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def read(self, cursor):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("down")
        start = cursor or 0
        if start >= 3:
            return Batch([], cursor=start)
        return Batch([RawRecord(f"r{start}", b"", ("ok", start))], cursor=start + 1, meta={"more": True})

    async def close(self) -> None:
        pass


def test_runner_backs_off_then_commits_cursor_after_append() -> None:
    async def run():  # type: ignore[no-untyped-def]
        log, cursors = MemoryLog(), MemoryCursorStore()
        source = FlakySource(failures=2)
        runner = SourceRunner(
            source, ToyMapper(), log, cursors, sink(), interval=0.01, backoff=Backoff(base=0.01, cap=0.02)
        )
        await runner.start()
        for _ in range(500):
            if cursors.cursors.get("test/flaky") == 3:
                break
            await asyncio.sleep(0.01)
        await runner.stop()
        return log, cursors, runner

    log, cursors, runner = asyncio.run(run())
    assert cursors.cursors["test/flaky"] == 3
    assert len(log.events) == 3 and runner.totals.balanced()


def test_cursor_not_committed_when_append_fails() -> None:
    async def run():  # type: ignore[no-untyped-def]
        log, cursors = MemoryLog(fail_appends=1), MemoryCursorStore()
        runner = SourceRunner(FlakySource(0), ToyMapper(), log, cursors, sink(), interval=0.01)
        with contextlib.suppress(ServiceUnavailable):
            await runner.poll_once()
        assert cursors.cursors == {}
        await runner.poll_once()
        return cursors

    assert asyncio.run(run()).cursors["test/flaky"] == 1


# --------------------------------------------------------------- transient vs permanent


def test_a_transient_mapping_failure_fails_the_batch_and_dead_letters_nothing() -> None:
    log = MemoryLog()
    batch = [
        RawRecord("r1", b"bad", ("bad", 1)),
        RawRecord("r2", b"ok", ("ok", 2)),
        RawRecord("r3", b"valid", ("outage", 3)),
    ]
    with pytest.raises(ServiceUnavailable):
        asyncio.run(ingest_batch(batch, ToyMapper(), log, sink()))
    # nothing of the batch was written: not the valid record, not even the bad one
    assert log.letters == {} and log.events == []


class OneShotSource:
    """Serves ``records`` once (cursor 0 → 1), then nothing."""

    name = "test/once"

    def __init__(self, records: list[RawRecord]) -> None:
        self.records = records
        self.reads = 0

    async def read(self, cursor):  # type: ignore[no-untyped-def]
        self.reads += 1
        if cursor:
            return Batch([], cursor=cursor)
        return Batch(self.records, cursor=1)

    async def close(self) -> None:
        pass


class OutageMapper(ToyMapper):
    """Raises ServiceUnavailable for its first ``outages`` calls, then maps."""

    def __init__(self, outages: int) -> None:
        self.outages = outages

    def map(self, record: RawRecord, first_revision: str | None = None):  # type: ignore[no-untyped-def]
        if self.outages > 0:
            self.outages -= 1
            raise ServiceUnavailable("down")
        return super().map(record, first_revision)


def test_runner_backs_off_on_a_transient_mapping_failure_keeps_the_cursor_and_appends_once() -> None:
    async def run():  # type: ignore[no-untyped-def]
        log, cursors = MemoryLog(), MemoryCursorStore()
        source = OneShotSource([RawRecord("r1", b"ok", ("ok", 1))])
        runner = SourceRunner(source, OutageMapper(outages=3), log, cursors, sink(), interval=0.01,
                              backoff=Backoff(base=0.01, cap=0.02))
        for _ in range(3):
            with pytest.raises(ServiceUnavailable):
                await runner.poll_once()
            assert cursors.cursors == {} and log.letters == {} and log.events == []
        await runner.start()
        for _ in range(500):
            if cursors.cursors.get("test/once") == 1:
                break
            await asyncio.sleep(0.01)
        await runner.stop()
        return log, cursors, runner

    log, cursors, runner = asyncio.run(run())
    assert cursors.cursors["test/once"] == 1
    assert len(log.events) == 1 and log.letters == {}
    assert runner.totals.appended == 1 and runner.totals.dead_lettered == 0


# ------------------------------------------------ case mapper: keys resolved before mapping

PKEY = bytes(range(32, 64))
CONTACT = {
    "record_id": "c-1",
    "record_type": "contact_logged",
    "case_id": "case-1",
    "person": {"system": "mpi:county", "id": "MPI-1234567"},
    "occurred_at": "2024-03-02T10:00:00+00:00",
    "note": "talked about housing",
}


class FlakyKeyStore:
    """A key store (the KeyStore port) that is down for its first ``outages`` look-ups and
    whose synchronous port must never be used: mapping has to run on resolved keys."""

    def __init__(self, outages: int) -> None:
        self.outages = outages
        self.memory = MemoryKeyring()
        self.resolved: list[list[str]] = []

    async def resolve(self, persons, *, create=True):  # type: ignore[no-untyped-def]
        self.resolved.append(list(persons))
        if self.outages > 0:
            self.outages -= 1
            raise ServiceUnavailable("key store did not answer within 0.5s")
        return await self.memory.resolve(persons, create=create)

    async def resolve_ids(self, kids):  # type: ignore[no-untyped-def]
        return self.memory

    def key_id(self, person: str) -> str:
        raise AssertionError("the mapper used the key store synchronously")

    def data_key(self, person: str, *, create: bool) -> bytes | None:
        raise AssertionError("the mapper used the key store synchronously")

    def key_by_id(self, kid: str) -> bytes | None:
        raise AssertionError("the mapper used the key store synchronously")


def case_sink() -> DeadLetterSink:
    return DeadLetterSink("cases/t", "cases", DeadLetterSealer(KEY))


def test_a_key_store_outage_backs_the_case_runner_off_and_dead_letters_nothing() -> None:
    store = FlakyKeyStore(outages=2)
    mapper = CaseMapper("cases/t", PKEY, store)  # type: ignore[arg-type]
    records = [
        RawRecord("p1@0", b"{}", dict(CONTACT)),
        RawRecord("p1@1", b"{}", {**CONTACT, "record_id": "c-2", "note": None}),  # nothing to seal
        RawRecord("p1@2", b"{}", {**CONTACT, "record_id": "c-3", "person": {}}),  # bad: no person id
    ]

    async def run():  # type: ignore[no-untyped-def]
        log, cursors = MemoryLog(), MemoryCursorStore()
        runner = SourceRunner(OneShotSource(records), mapper, log, cursors, case_sink(), interval=0.01)
        for _ in range(2):
            with pytest.raises(ServiceUnavailable):
                await runner.poll_once()
            assert cursors.cursors == {} and log.letters == {} and log.events == []
        await runner.poll_once()
        return log, cursors

    log, cursors = asyncio.run(run())
    assert cursors.cursors["test/once"] == 1
    # one look-up per attempt, for the one person whose note is sealed
    assert len(store.resolved) == 3 and all(len(p) == 1 for p in store.resolved)
    assert len(log.events) == 2 and len(log.letters) == 1  # only the bad record is dead-lettered
    (letter,) = log.letters.values()
    assert letter.reason == "person.id: missing"
    (sealed,) = [e.payload().note for e in log.events if e.data["note"] is not None]  # type: ignore[attr-defined]
    assert unseal(store.memory, sealed) == {"note": "talked about housing"}


def test_resolved_keys_are_a_keyring_without_io() -> None:
    keys = ResolvedKeys({"psn_a": "k_a", "psn_b": "k_b"}, {"k_a": b"a" * 32, "k_b": None}, destroyed=["k_b"])
    assert keys.data_key("psn_a", create=True) == b"a" * 32
    assert keys.data_key("psn_b", create=True) is None  # destroyed: never re-created
    with pytest.raises(KeyNotResolved):
        keys.data_key("psn_c", create=True)  # not looked up: retried, never dead-lettered
    absent = ResolvedKeys({"psn_a": "k_a"}, {"k_a": None})  # looked up without creating
    assert absent.data_key("psn_a", create=False) is None
    with pytest.raises(KeyNotResolved):
        absent.data_key("psn_a", create=True)
    with pytest.raises(KeyNotResolved):
        keys.key_by_id("k_z")
    assert issubclass(KeyNotResolved, TransientError) and issubclass(KeyDestroyedError, PermanentError)


# ------------------------------------------------ CAD rows: a key per row that seals something

def cad_row(n: int, **values: str) -> RawRecord:
    fields = {"incident_number": f"2026-{n}", "received_at": "2026-02-01T09:00:00-08:00",
              "call_type_initial": "PERSON IN CRISIS", "remarks": "", "disposition_code": "",
              "disposition_text": ""} | values
    return RawRecord(f"f.csv:{n}", json.dumps(fields).encode(), fields)


@pytest.mark.parametrize("pipelined", [False, True])
def test_keys_are_made_for_rows_that_seal_and_rows_that_are_dead_lettered_only(pipelined: bool) -> None:
    """A CAD import through a key store creates the incident keys of the rows whose free
    text is sealed and of the rows that are dead-lettered (each letter sealed under its
    incident's key, erased with a linked person), not one per row read."""
    p = load_profile("generic")
    profile = p.model_copy(update={"fields": p.fields | {"remarks": "remarks"}})
    store = FlakyKeyStore(outages=0)
    mapper = CadMapper(profile, keyring=store)  # type: ignore[arg-type]
    records = [cad_row(n) for n in range(20)]
    records[3] = cad_row(3, remarks="RP says the caller is off her meds")
    records[7] = cad_row(7, received_at="not a time")  # rejected: dead-lettered
    sink = DeadLetterSink("cad/t", "cad", DeadLetterSealer(KEY))
    log = MemoryLog()
    if pipelined:
        counts = asyncio.run(ingest_batches([records[:10], records[10:]], mapper, log, sink))
    else:
        counts = asyncio.run(ingest_batch(records, mapper, log, sink))
    assert counts.dead_lettered == 1 and counts.appended == 19 and counts.balanced()
    made = {p for persons in store.resolved for p in persons}
    assert made == {incident_subject("COUNTY:2026-3"), incident_subject("COUNTY:2026-7")}
    (letter,) = log.letters.values()
    assert letter.raw.kid == store.memory.key_id(incident_subject("COUNTY:2026-7"))
    assert asyncio.run(open_raw(letter, DeadLetterSealer(KEY), store.memory)) == records[7].raw
