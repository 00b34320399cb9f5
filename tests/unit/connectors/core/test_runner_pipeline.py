"""The pipelined ingest (:func:`connectors.core.runner.ingest_batches`, :func:`append_mapped`):
more than one append in flight, the next batch mapped while the last ones are appended,
and the same counts and facts as one batch at a time; a failing append propagates only
after every append in flight has finished."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.core.memory import MemoryLog
from connectors.core.records import RawRecord
from connectors.core.runner import APPEND_CHUNK_RECORDS, ingest_batch, ingest_batches
from hub.kernel.errors import ServiceUnavailable
from schemas.envelope import Envelope
from tests.unit.connectors.core.test_runner import ToyMapper, sink


class GatedLog(MemoryLog):
    """A memory log whose appends wait for ``gate`` (the acknowledgements), noting how many
    are in flight at once and what was mapped meanwhile."""

    def __init__(self, mapper: RecordingMapper) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.mapper = mapper
        self.in_flight = 0
        self.most_in_flight = 0
        self.mapped_while_appending = 0
        self.fail_on: set[int] = set()  # append calls (0-based) that fail
        self.calls = 0
        self.finished = 0

    async def append(self, envelopes: Sequence[Envelope]):  # type: ignore[no-untyped-def]
        call, self.calls = self.calls, self.calls + 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        mapped_before = self.mapper.mapped
        try:
            await self.gate.wait()
            self.mapped_while_appending = max(self.mapped_while_appending, self.mapper.mapped - mapped_before)
            if call in self.fail_on:
                raise ServiceUnavailable("event log unavailable (simulated)")
            return await super().append(envelopes)
        finally:
            self.in_flight -= 1
            self.finished += 1


class RecordingMapper(ToyMapper):
    def __init__(self) -> None:
        self.mapped = 0

    def map(self, record: RawRecord, first_revision: str | None = None):  # type: ignore[no-untyped-def]
        self.mapped += 1
        return super().map(record, first_revision)


def records(items: list[tuple[str, int]], start: int = 0) -> list[RawRecord]:
    return [RawRecord(f"r{start + i}", f"{k}:{n}".encode(), (k, n)) for i, (k, n) in enumerate(items)]


def numbered(b: int, size: int) -> list[RawRecord]:
    """Batch ``b`` of ``size`` good rows, numbered on from the batches before it."""
    return records([("ok", b * size + i) for i in range(size)], b * size)


async def release_when(log: GatedLog, condition) -> None:  # type: ignore[no-untyped-def]
    while not condition():
        await asyncio.sleep(0)
    log.gate.set()


def test_appends_overlap_and_the_next_batch_is_mapped_meanwhile() -> None:
    mapper = RecordingMapper()
    log = GatedLog(mapper)
    per_batch = 2 * APPEND_CHUNK_RECORDS  # two appends per batch
    batches = [numbered(b, per_batch) for b in range(3)]

    async def run():  # type: ignore[no-untyped-def]
        # the acknowledgements come once the third batch has been mapped and all appends started
        started = lambda: mapper.mapped == 3 * per_batch and log.calls == 6  # noqa: E731
        waiter = asyncio.create_task(release_when(log, started))
        counts = await ingest_batches(batches, mapper, log, sink(), overlap=2)
        await waiter
        return counts

    counts = asyncio.run(run())
    assert log.most_in_flight == 6  # three batches' two appends each, none acknowledged yet
    assert log.mapped_while_appending >= per_batch  # a later batch was mapped while it was in flight
    assert counts.read == counts.appended == counts.events_appended == 3 * per_batch
    assert len(log.events) == 3 * per_batch


def test_a_failed_append_propagates_after_the_others_in_flight_finished() -> None:
    mapper = RecordingMapper()
    log = GatedLog(mapper)
    log.fail_on = {1}
    per_batch = 2 * APPEND_CHUNK_RECORDS
    batches = [numbered(b, per_batch) for b in range(2)]

    async def run() -> None:
        waiter = asyncio.create_task(release_when(log, lambda: log.calls == 4))
        try:
            await ingest_batches(batches, mapper, log, sink(), overlap=2)
        finally:
            await waiter

    with pytest.raises(ServiceUnavailable):
        asyncio.run(run())
    assert log.finished == log.calls == 4  # nothing abandoned in flight
    assert len(log.events) == 3 * APPEND_CHUNK_RECORDS  # every append but the failed one landed


batch_items = st.lists(
    st.lists(st.tuples(st.sampled_from(["ok", "ok", "bad", "skip"]), st.integers(0, 1500)), max_size=700),
    max_size=4,
)


@settings(max_examples=25, deadline=None)
@given(items=batch_items, overlap=st.integers(0, 3))
def test_pipelined_counts_and_facts_equal_one_batch_at_a_time(items, overlap) -> None:  # type: ignore[no-untyped-def]
    def batches() -> list[list[RawRecord]]:
        out, start = [], 0
        for b in items:
            out.append(records(b, start))
            start += len(b)
        return out

    async def serial():  # type: ignore[no-untyped-def]
        log, total = MemoryLog(), None
        for b in batches():
            counts = await ingest_batch(b, ToyMapper(), log, sink())
            total = counts if total is None else (total.add(counts) or total)
        return log, total

    async def piped():  # type: ignore[no-untyped-def]
        log = MemoryLog()
        return log, await ingest_batches(batches(), ToyMapper(), log, sink(), overlap=overlap)

    (slog, scounts), (plog, pcounts) = asyncio.run(serial()), asyncio.run(piped())
    assert sorted(e.id for e in plog.events) == sorted(e.id for e in slog.events)
    assert pcounts.balanced()
    if scounts is not None:
        for name in ("read", "appended", "duplicates", "excluded", "dead_lettered", "events_appended",
                     "events_duplicate"):
            assert getattr(pcounts, name) == getattr(scounts, name), name
