"""CSV re-exports that revise rows (content-hash revisions), the source-lag gauge, and the
file drop's settle rule."""

from __future__ import annotations

import asyncio
import collections
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.cad.csvfile import parse_csv
from connectors.cad.filedrop import FileDropSource, settled
from connectors.cad.mapping import CONTENT_REVISION_PREFIX, CadMapper, read_row
from connectors.cad.profile import load_profile
from connectors.core.counts import IngestCounts
from connectors.core.memory import MemoryCursorStore, MemoryLog, MemoryRevisionStore
from connectors.core.records import Batch, Mapped, RawRecord
from connectors.core.runner import DeadLetterSink, SourceRunner, ingest_batch, lag_seconds
from hub.kernel import metrics
from hub.kernel.keystore import DeadLetterSealer

SEAL = DeadLetterSealer(bytes(32))
SEATTLE = load_profile("seattle")

BASE = {
    "CAD Event Number": "2023000111",
    "Event Clearance Description": "ASSISTANCE RENDERED",
    "Call Type": "911",
    "Priority": "2",
    "Initial Call Type": "PERSON IN BEHAVIORAL/EMOTIONAL CRISIS",
    "Final Call Type": "PERSON IN BEHAVIORAL/EMOTIONAL CRISIS",
    "Original Time Queued": "11/04/2023 6:08:26 PM",
    "Arrived Time": "11/04/2023 6:20:00 PM",
    "Precinct": "EAST",
    "Sector": "C",
    "Beat": "C3",
    "Blurred_Longitude": "-122.31",
    "Blurred_Latitude": "47.61",
}


def record(row: dict[str, str], ref: str = "x.csv:2", observed: datetime | None = None) -> RawRecord:
    return RawRecord(ref, json.dumps(row).encode(), dict(row), observed_at=observed)


def run(batch: list[RawRecord], log: MemoryLog, revs: MemoryRevisionStore) -> IngestCounts:
    counts = asyncio.run(
        ingest_batch(batch, CadMapper(SEATTLE), log, DeadLetterSink(SEATTLE.source, "cad", SEAL), revs)
    )
    assert counts.balanced()
    return counts


def test_reexport_with_a_changed_disposition_is_one_call_revised_fact() -> None:
    log, revs = MemoryLog(), MemoryRevisionStore()
    first = run([record(BASE)], log, revs)
    assert (first.appended, first.duplicates) == (1, 0)
    same = run([record(BASE)], log, revs)
    assert (same.appended, same.duplicates, same.events_appended) == (0, 1, 0)

    observed = datetime(2023, 11, 6, 9, 0, tzinfo=UTC)
    revised_row = {**BASE, "Event Clearance Description": "PHYSICAL ARREST MADE", "Priority": "1"}
    revised = run([record(revised_row, observed=observed)], log, revs)
    assert (revised.appended, revised.duplicates, revised.events_appended) == (1, 0, 1)
    (fact,) = log.of_type("cad.call.revised")
    assert fact.data["revision"].startswith(CONTENT_REVISION_PREFIX)
    assert fact.data["outcome"] == "arrest" and fact.data["priority"] == "1"
    assert fact.data["at"] == "2023-11-06T09:00:00Z"  # dated by the export, after the disposition
    assert fact.data["revision"] == read_row(revised_row, SEATTLE).content_hash()  # type: ignore[union-attr]

    # the revised export again, and the original export again: nothing new
    again = run([record(revised_row, observed=observed + timedelta(days=1)), record(BASE)], log, revs)
    assert (again.appended, again.duplicates, again.events_appended) == (0, 2, 0)
    assert len(log.of_type("cad.call.received")) == 1 and len(log.of_type("cad.call.revised")) == 1


def test_cosmetic_changes_are_not_revisions() -> None:
    log, revs = MemoryLog(), MemoryRevisionStore()
    run([record(BASE)], log, revs)
    cosmetic = {
        **BASE,
        "Event Clearance Description": "  assistance   rendered ",
        "Original Time Queued": "2023-11-04T18:08:26",  # same instant, ISO instead of AM/PM
    }
    counts = run([record(cosmetic)], log, revs)
    assert (counts.appended, counts.duplicates) == (0, 1)
    assert log.of_type("cad.call.revised") == []


def test_every_mapped_field_takes_part_in_the_content_hash() -> None:
    base = read_row(BASE, SEATTLE).content_hash()  # type: ignore[union-attr]
    changes = {
        "Event Clearance Description": "PHYSICAL ARREST MADE",
        "Priority": "1",
        "Initial Call Type": "SUICIDE",
        "Final Call Type": "OVERDOSE",
        "Original Time Queued": "11/04/2023 6:08:27 PM",
        "Arrived Time": "",
        "Precinct": "WEST",
        "Sector": "D",
        "Beat": "D1",
        "Blurred_Longitude": "-122.32",
        "Blurred_Latitude": "47.62",
        "Call Type": "ONVIEW",  # self-initiated flag
    }
    hashes = {read_row({**BASE, k: v}, SEATTLE).content_hash() for k, v in changes.items()}  # type: ignore[union-attr]
    assert base not in hashes and len(hashes) == len(changes)
    # the CAD number is the key, not content
    assert read_row({**BASE, "CAD Event Number": "9"}, SEATTLE).content_hash() == base  # type: ignore[union-attr]


def test_revision_without_observation_time_is_dated_by_the_row() -> None:
    log, revs = MemoryLog(), MemoryRevisionStore()
    run([record(BASE)], log, revs)
    run([record({**BASE, "Event Clearance Description": "TRAFFIC CITATION ISSUED"})], log, revs)
    (fact,) = log.of_type("cad.call.revised")
    assert fact.data["at"] == "2023-11-05T01:20:00Z"  # the arrival (6:20 PM PDT), the latest time the row has


def test_san_francisco_csv_without_updated_at_uses_content_revisions() -> None:
    p = load_profile("san_francisco")
    row = {
        "cad_number": "241230001",
        "received_datetime": "2024-05-02T10:00:00.000",
        "call_type_final_desc": "WELL BEING CHECK",
        "disposition": "HAN",
    }
    m = CadMapper(p)
    k1 = m.revision_key(RawRecord("a", b"", row))
    k2 = m.revision_key(RawRecord("b", b"", {**row, "disposition": "ARR"}))
    k3 = m.revision_key(RawRecord("c", b"", {**row, "data_updated_at": "2024-05-03T12:00:00.000"}))
    assert k1 and k2 and k3 and k1.key == k2.key == k3.key == "SFPD:241230001"
    assert k1.revision.startswith(CONTENT_REVISION_PREFIX) and k1.revision != k2.revision
    assert k3.revision == "2024-05-03T19:00:00+00:00"
    # excluded and unreadable rows have no key (the mapper rejects or excludes them)
    assert m.revision_key(RawRecord("d", b"", {**row, "disposition": "DUP"})) is None
    assert m.revision_key(RawRecord("e", b"", {**row, "received_datetime": "soon"})) is None


VARIANTS = ["ASSISTANCE RENDERED", "PHYSICAL ARREST MADE", "TRAFFIC CITATION ISSUED", "OTHER REPORT MADE"]


@settings(max_examples=40, deadline=None)
@given(
    exports=st.lists(
        st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=6),
        min_size=1,
        max_size=5,
    )
)
def test_any_sequence_of_reexports_gives_one_call_and_one_revision_per_new_content(exports) -> None:  # type: ignore[no-untyped-def]
    """Invariant: per incident, one CallReceived, and one CallRevised per distinct content
    other than the first content seen; re-reading never adds anything."""
    log, revs = MemoryLog(), MemoryRevisionStore()
    first_seen: dict[int, int] = {}
    seen: dict[int, set[int]] = collections.defaultdict(set)
    for export in exports:
        batch = []
        for i, (incident, variant) in enumerate(export):
            batch.append(_records([(incident, variant)], f"e.csv:{i + 2}")[0])
            first_seen.setdefault(incident, variant)
            seen[incident].add(variant)
        run(batch, log, revs)
    received = collections.Counter(e.subject for e in log.of_type("cad.call.received"))
    assert set(received.values()) == {1} and len(received) == len(first_seen)
    revised = collections.Counter(e.subject for e in log.of_type("cad.call.revised"))
    for incident, variants in seen.items():
        assert revised.get(f"SPD:X{incident}", 0) == len(variants - {first_seen[incident]})
    again = run([r for export in exports for r in _records(export)], log, revs)
    assert again.appended == 0 and again.events_appended == 0


def _records(export: list[tuple[int, int]], ref: str = "e.csv:2") -> list[RawRecord]:
    return [
        record({**BASE, "CAD Event Number": f"X{n}", "Event Clearance Description": VARIANTS[v]}, ref)
        for n, v in export
    ]


def test_csv_rows_carry_the_observation_time() -> None:
    when = datetime(2024, 1, 2, tzinfo=UTC)
    text = ",".join(SEATTLE.columns) + "\n" + ",".join(BASE[c] for c in SEATTLE.columns) + "\n1,2\n"
    records = list(parse_csv(text, SEATTLE, "f.csv", when))
    assert [r.observed_at for r in records] == [when, when] and records[1].problem


# ---------------------------------------------------------------- lag


class ListSource:
    """Serves the given batches in order, then empty batches; can fail on demand."""

    name = "test/lagsource"

    def __init__(self, batches: list[list[RawRecord]]) -> None:
        self.batches = batches
        self.fail = False

    async def read(self, cursor):  # type: ignore[no-untyped-def]
        if self.fail:
            raise ConnectionError("feed down")
        n = cursor or 0
        if n >= len(self.batches):
            return Batch([], cursor=n)
        return Batch(self.batches[n], cursor=n + 1)

    async def close(self) -> None:
        pass


def test_lag_is_the_age_of_the_newest_record_and_survives_a_restart() -> None:
    now = [datetime(2023, 11, 5, 3, 0, tzinfo=UTC)]
    rows = [record(BASE), record({**BASE, "CAD Event Number": "2", "Arrived Time": ""})]
    cursors = MemoryCursorStore()

    def runner(source: ListSource) -> SourceRunner:
        return SourceRunner(
            source,
            CadMapper(SEATTLE),
            MemoryLog(),
            cursors,
            DeadLetterSink(SEATTLE.source, "cad", SEAL),
            MemoryRevisionStore(),
            clock=lambda: now[0],
        )

    gauge = metrics.SOURCE_LAG.labels("test/lagsource")

    async def scenario() -> None:
        first = runner(ListSource([rows]))
        assert first.report_lag() is None  # nothing seen yet
        await first.poll_once()
        newest = datetime(2023, 11, 5, 1, 20, tzinfo=UTC)  # the latest event time: an arrival
        assert first.newest == newest and cursors.newests["test/lagsource"] == newest
        assert gauge._value.get() == 100 * 60
        now[0] += timedelta(minutes=5)
        await first.poll_once()  # nothing new: the lag keeps growing
        assert gauge._value.get() == 105 * 60
        # a restarted runner knows the newest record time from the cursor store
        gauge.set(0)
        restarted = runner(ListSource([rows]))
        await restarted.poll_once()
        assert restarted.newest == newest and gauge._value.get() == 105 * 60
        # during an outage the failure path still reports the growing lag
        source = ListSource([])
        source.fail = True
        down = runner(source)
        down.backoff = type(down.backoff)(base=0.001, cap=0.001)
        now[0] += timedelta(minutes=5)
        await down.start()
        for _ in range(200):
            if down.failures >= 1:
                break
            await asyncio.sleep(0.005)
        await down.stop()
        assert down.failures >= 1 and gauge._value.get() == 110 * 60

    asyncio.run(scenario())


def test_lag_seconds_never_negative_and_counts_keep_the_newest() -> None:
    t = datetime(2024, 1, 1, tzinfo=UTC)
    assert lag_seconds(t, t + timedelta(seconds=3)) == 3.0
    assert lag_seconds(t + timedelta(hours=1), t) == 0.0
    a, b = IngestCounts(), IngestCounts()
    a.note_time(t)
    b.note_time(t + timedelta(days=1))
    b.note_time(None)
    a.add(b)
    assert a.newest_record_at == t + timedelta(days=1)
    assert json.loads(json.dumps(a.as_dict()))["newest_record_at"] == "2024-01-02T00:00:00+00:00"
    assert IngestCounts().as_dict()["newest_record_at"] is None


def test_mapped_records_report_their_newest_event_time() -> None:
    log, revs = MemoryLog(), MemoryRevisionStore()
    counts = run([record(BASE), record({**BASE, "CAD Event Number": "7", "Arrived Time": ""})], log, revs)
    assert counts.newest_record_at == datetime(2023, 11, 5, 1, 20, tzinfo=UTC)
    result = CadMapper(SEATTLE).map(record(BASE))
    assert isinstance(result, Mapped) and max(e.time for e in result.events) == counts.newest_record_at


# ---------------------------------------------------------------- file drop settling


def test_file_drop_waits_until_a_file_has_settled(tmp_path: Path) -> None:
    assert settled(100.0, 103.0, 2.0) and not settled(100.0, 101.0, 2.0) and settled(5.0, 5.0, 0.0)
    path = tmp_path / "export.csv"
    path.write_text(",".join(SEATTLE.columns) + "\n" + ",".join(BASE[c] for c in SEATTLE.columns) + "\n")
    mtime = path.stat().st_mtime
    clock = [mtime + 0.5]
    source = FileDropSource("drop", tmp_path, SEATTLE, settle_seconds=2.0, clock=lambda: clock[0])
    assert source.pending(None) == []
    assert asyncio.run(source.read(None)).records == []
    clock[0] = mtime + 2.5
    batch = asyncio.run(source.read(None))
    assert len(batch.records) == 1 and batch.cursor == {"done": {"export.csv": source.pending(None)[0][1]}}
    assert batch.records[0].observed_at == datetime.fromtimestamp(mtime, UTC)
    assert source.pending(batch.cursor) == []
    # rewriting the file (a re-export) makes it pending again once it settles
    path.write_text(path.read_text().replace("ASSISTANCE RENDERED", "PHYSICAL ARREST MADE"))
    os.utime(path, (mtime + 10, mtime + 10))
    clock[0] = mtime + 11
    assert source.pending(batch.cursor) == []
    clock[0] = mtime + 13
    assert [p.name for p, _ in source.pending(batch.cursor)] == ["export.csv"]
