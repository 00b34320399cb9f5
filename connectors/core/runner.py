"""The runner: map records, dead-letter the rejected ones (one write per batch), append
the events of the rest, commit the cursor.

Guarantees:
- *at-least-once pull*: the cursor is saved only after every record read before it is in
  the log (events acknowledged, dead letters recorded); a crash re-reads from the last
  committed cursor;
- *exactly-once facts*: event ids are deterministic over (source, record, revision, kind),
  so a re-read record's events are refused by the log as duplicates;
- every record read is counted in exactly one bucket (see :mod:`connectors.core.counts`);
- only bad input is dead-lettered: a *permanent* mapping failure (the record is wrong)
  becomes a dead letter; a *transient* one (:func:`hub.kernel.errors.is_retriable`: the
  key store, the log or another dependency is down) fails the whole batch before anything
  of it is written, so the runner backs off and reads the same records again;
- mapping does no I/O: the per-person keys a :class:`connectors.core.records.SealingMapper`
  seals events with are resolved for the whole batch before mapping (:func:`bind_keys`),
  those of the rejected records' dead letters after mapping, before the letters are
  sealed and written (:func:`dead_letter_keys`): one look-up each, and a key is created
  only for a record that seals something;
- a failing source (reading, key look-up, appending, committing) backs off with jitter,
  keeps its cursor and reports ``hub_connector_source_up=0`` while the other components
  keep running;
- ``hub_connector_source_lag_seconds`` is the age of the newest record time the source has
  delivered (kept with the cursor, so it survives a restart); it keeps growing while the
  source is down or silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from connectors.core.backoff import Backoff
from connectors.core.counts import IngestCounts
from connectors.core.ports import CursorStore, LogPort, RevisionStore, count_of
from connectors.core.records import (
    AttributingMapper,
    Batch,
    Exclusion,
    Mapped,
    Mapper,
    MapResult,
    RawRecord,
    Rejection,
    RevisionKey,
    SealingMapper,
)
from hub.kernel import metrics
from hub.kernel.crypto import Keyring, KeyStore
from hub.kernel.deadletters import (
    PersonRawSealer,
    RawSealer,
    build_dead_letter,
    describe_error,
    describe_failure,
)
from hub.kernel.errors import is_retriable
from hub.kernel.keystore import DeadLetterSealer
from schemas.deadletter import DeadLetter, SourceFamily

log = logging.getLogger(__name__)


def safe_map(mapper: Mapper, record: RawRecord, first_revision: str | None) -> MapResult:
    """Run the mapper; a permanent exception becomes a rejection (bad input never crashes a
    run). A retriable one (:func:`hub.kernel.errors.is_retriable`) is not about the record:
    it propagates, so the batch is retried instead of the record being dead-lettered."""
    if record.problem is not None:
        return Rejection("parse", record.problem)
    try:
        result = mapper.map(record, first_revision)
    except Exception as exc:  # whatever the mapper raises: retriable or about this record
        if is_retriable(exc):
            raise
        return Rejection("map", describe_error(exc))
    if isinstance(result, Mapped) and not result.events:
        return Exclusion("record carries no facts")
    return result


class DeadLetterSink:
    """Turns a rejection into a dead letter of one source, its raw bytes sealed (every CAD /
    case payload may carry PHI): under the person's key when the record names one and the
    batch's keys are given (erasing the person erases the letter), otherwise with the hub's
    dead-letter key."""

    def __init__(
        self, source: str, source_family: SourceFamily, sealer: DeadLetterSealer, profile: str | None = None
    ) -> None:
        self.source = source
        self.source_family = source_family
        self.sealer = sealer
        self.profile = profile

    def letter(
        self, record: RawRecord, rejection: Rejection, person: str | None = None, keys: Keyring | None = None
    ) -> DeadLetter:
        """The dead letter of one rejected record (pure: sealing only, no I/O); ``keys`` is
        the batch's resolved snapshot holding ``person``'s key."""
        sealer: RawSealer = self.sealer
        if person is not None and keys is not None:
            sealer = PersonRawSealer(keys, person)
        return build_dead_letter(
            source=self.source,
            source_family=self.source_family,
            record_ref=record.ref,
            stage=rejection.stage,
            reason=rejection.reason,
            raw=record.raw,
            sealer=sealer,
            profile=self.profile,
        )


def person_of(mapper: Mapper, record: RawRecord) -> str | None:
    """Whose record this is, when the mapper can tell (:class:`AttributingMapper`)."""
    if record.problem is not None or not isinstance(mapper, AttributingMapper):
        return None
    return mapper.person_of(record)


def persons_of(mapper: Mapper, records: Sequence[RawRecord]) -> set[str]:
    """:func:`person_of` of every record (the protocol checked once, not per record)."""
    if not isinstance(mapper, AttributingMapper):
        return set()
    return {p for rec in records if rec.problem is None and (p := mapper.person_of(rec)) is not None}


async def bind_keys(mapper: Mapper, records: Sequence[RawRecord], *, dead_letters: bool = True) -> Mapper:
    """The mapper to map ``records`` with. A :class:`SealingMapper` whose keyring is a
    :class:`hub.kernel.crypto.KeyStore` gets the keys of every person the batch seals for —
    in events, and with ``dead_letters`` in the dead letter any record may become
    (:func:`person_of`) — resolved here, in one awaited, bounded look-up (created when
    new), and maps with that snapshot, so mapping never waits on the key store. A
    key-store outage raises :class:`hub.kernel.errors.ServiceUnavailable` before any
    record is mapped. Without ``dead_letters`` the caller resolves the keys of the records
    that were rejected after mapping (:func:`dead_letter_keys`): a key per record that
    seals, not one per record that might be rejected."""
    if not isinstance(mapper, SealingMapper) or not isinstance(mapper.keyring, KeyStore):
        return mapper
    persons = {p for rec in records if rec.problem is None for p in mapper.persons_to_seal(rec)}
    if dead_letters:
        persons |= persons_of(mapper, records)
    return mapper.with_keyring(await mapper.keyring.resolve(sorted(persons), create=True))


async def dead_letter_keys(
    store: Mapper, keyed: Mapper, rejected: Sequence[RawRecord]
) -> Keyring | None:
    """The keys the dead letters of ``rejected`` records are sealed with: the persons they
    name (:func:`person_of`) resolved through ``store`` (the mapper before
    :func:`bind_keys`, whose keyring is the key store; created when new), or the batch's
    snapshot when there is no key store. A key-store outage raises
    :class:`hub.kernel.errors.ServiceUnavailable` before any letter is written."""
    if not isinstance(store, SealingMapper) or not isinstance(store.keyring, KeyStore):
        return _batch_keys(keyed)
    persons = persons_of(keyed, rejected)
    if not persons:
        return _batch_keys(keyed)
    keys: Keyring = await store.keyring.resolve(sorted(persons), create=True)
    return keys


def _batch_keys(mapper: Mapper) -> Keyring | None:
    """The keys a mapper bound by :func:`bind_keys` seals with (None: no keyring)."""
    keyring: Keyring | None = mapper.keyring if isinstance(mapper, SealingMapper) else None
    return keyring


APPEND_CHUNK_RECORDS = 500
#: appends of one batch in flight at once (:func:`append_mapped`)
APPEND_DEPTH = 4
#: batches whose appends may still be in flight while the next one is mapped (:func:`ingest_batches`)
OVERLAP_BATCHES = 2


async def ingest_batch(
    records: Sequence[RawRecord],
    mapper: Mapper,
    log_port: LogPort,
    sink: DeadLetterSink,
    revisions: RevisionStore | None = None,
    event_ids: list[str] | None = None,
) -> IngestCounts:
    """Map and append one batch; returns its counts (always balanced). When ``event_ids``
    is given, the ids of every event the records produced (new or duplicate) are added.

    The batch's rejections are written as dead letters in one call, before its events are
    appended. Key look-up, transient mapping, append and dead-letter failures propagate
    (the caller must not commit its cursor; a transient one is raised before anything of
    the batch is written); everything about the *input* becomes a count instead.

    :func:`map_batch` then :func:`append_mapped`; a caller with several batches may
    overlap them (:func:`ingest_batches`)."""
    prepared = await map_batch(records, mapper, log_port, sink, revisions, event_ids)
    return await append_mapped(prepared, log_port)


@dataclass
class MappedBatch:
    """A batch after mapping: its counts so far (read, excluded; dead-lettered once
    :func:`write_dead_letters` wrote them), the mapped records (input position, events)
    still to append, and its rejected records whose dead letters are still to write (with
    the mapper before and after :func:`bind_keys`, which seal them)."""

    source: str
    counts: IngestCounts
    mapped: list[tuple[int, Mapped]]
    rejected: list[tuple[RawRecord, Rejection]] = field(default_factory=list)
    mapper: Mapper | None = None
    keyed: Mapper | None = None


@dataclass
class ClaimedBatch:
    """A batch after its I/O before mapping (:func:`claim_batch`): the records, their
    revision keys, the first revisions claimed, the mapper bound to the keys its events
    seal with (``keyed``) and the mapper it was bound from."""

    records: Sequence[RawRecord]
    keys: list[RevisionKey | None]
    firsts: dict[str, str]
    keyed: Mapper
    mapper: Mapper


async def claim_batch(
    records: Sequence[RawRecord], mapper: Mapper, revisions: RevisionStore | None = None
) -> ClaimedBatch:
    """The I/O a batch needs before it is mapped: claim the first revisions (one call) and
    resolve the keys it seals with (:func:`bind_keys`)."""
    keys: list[RevisionKey | None] = []
    for rec in records:
        try:
            keys.append(mapper.revision_key(rec) if rec.problem is None else None)
        except Exception:  # a record whose key cannot be read is rejected by map() below
            keys.append(None)
    firsts: dict[str, str] = {}
    wanted = [k for k in keys if k is not None]
    if wanted and revisions is not None:
        firsts = await revisions.claim(mapper.source, wanted)
    keyed = await bind_keys(mapper, records, dead_letters=False)
    return ClaimedBatch(records, keys, firsts, keyed, mapper)


def map_claimed(claimed: ClaimedBatch, event_ids: list[str] | None = None) -> MappedBatch:
    """Map every record of a claimed batch (pure: no I/O); the rejected ones are kept for
    :func:`write_dead_letters`."""
    keyed = claimed.keyed
    source = keyed.source
    counts = IngestCounts(read=len(claimed.records))
    metrics.RECORDS_READ.labels(source).inc(len(claimed.records))
    mapped: list[tuple[int, Mapped]] = []
    rejected: list[tuple[RawRecord, Rejection]] = []
    firsts = claimed.firsts
    for idx, (rec, key) in enumerate(zip(claimed.records, claimed.keys, strict=True)):
        result = safe_map(keyed, rec, firsts.get(key.key) if key is not None else None)
        if isinstance(result, Exclusion):
            counts.excluded += 1
            counts.note_reason("excluded: " + result.reason)
            metrics.RECORDS_EXCLUDED.labels(source).inc()
        elif isinstance(result, Rejection):
            rejected.append((rec, result))
        else:
            mapped.append((idx, result))
            if event_ids is not None:
                event_ids.extend(ev.id for ev in result.events)
    return MappedBatch(source, counts, mapped, rejected, claimed.mapper, keyed)


async def write_dead_letters(batch: MappedBatch, log_port: LogPort, sink: DeadLetterSink) -> None:
    """Seal the dead letters of the batch's rejected records (the keys of the persons they
    name resolved first, :func:`dead_letter_keys`), write them in one call and count them
    (dead-lettered, new)."""
    rejected, batch.rejected = batch.rejected, []
    if not rejected:
        return
    assert batch.mapper is not None and batch.keyed is not None  # map_claimed sets both
    keyed = batch.keyed
    keys = await dead_letter_keys(batch.mapper, keyed, [rec for rec, _ in rejected])
    letters = [sink.letter(rec, rej, person_of(keyed, rec), keys) for rec, rej in rejected]
    flags = await log_port.dead_letters(letters)
    counts = batch.counts
    for (_, rej), new in zip(rejected, flags, strict=True):
        counts.dead_lettered += 1
        counts.dead_letters_new += int(new)
        counts.note_reason(f"{rej.stage}: {rej.reason}")
        metrics.RECORDS_DEADLETTERED.labels(batch.source, rej.stage).inc()


async def map_batch(
    records: Sequence[RawRecord],
    mapper: Mapper,
    log_port: LogPort,
    sink: DeadLetterSink,
    revisions: RevisionStore | None = None,
    event_ids: list[str] | None = None,
) -> MappedBatch:
    """The first half of :func:`ingest_batch`: claim the first revisions, resolve the
    batch's keys, map every record, and write the rejections as dead letters."""
    batch = map_claimed(await claim_batch(records, mapper, revisions), event_ids)
    await write_dead_letters(batch, log_port, sink)
    return batch


async def append_mapped(batch: MappedBatch, log_port: LogPort, depth: int = APPEND_DEPTH) -> IngestCounts:
    """The second half of :func:`ingest_batch`: append the mapped records' events in chunks
    of :data:`APPEND_CHUNK_RECORDS` records, up to ``depth`` appends in flight at once (the
    log serializes an id that two of them hold), and count each record's new and duplicate
    events; returns the batch's counts. When an append fails, the others still in flight
    are waited for (never abandoned) and the first failure propagates."""
    counts, source, mapped = batch.counts, batch.source, batch.mapped
    step = APPEND_CHUNK_RECORDS
    chunks = [mapped[start : start + step] for start in range(0, len(mapped), step)]
    gate = asyncio.Semaphore(max(1, depth))

    async def append(chunk: list[tuple[int, Mapped]]) -> Any:
        async with gate:
            return await log_port.append([ev for _, m in chunk for ev in m.events])

    tasks = [asyncio.ensure_future(append(chunk)) for chunk in chunks]
    try:
        outcomes = await asyncio.gather(*tasks)
    except BaseException:
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    before = (counts.events_appended, counts.events_duplicate, counts.unknown_dispositions)
    for chunk, outcome in zip(chunks, outcomes, strict=True):
        new_ids = _appended_ids(outcome)
        if new_ids is None:  # a port that reports counts only: one append per record
            _classify_per_record(chunk, counts, first=outcome)
            continue
        for _, m in chunk:
            fresh = [ev for ev in m.events if ev.id in new_ids]
            new_ids.difference_update(ev.id for ev in fresh)  # credit an id to its first record
            _tally(counts, m, len(fresh), len(m.events) - len(fresh))
    # the metrics once per batch (a labelled metric costs a lock and a look-up per call)
    metrics.EVENTS_APPENDED.labels(source).inc(counts.events_appended - before[0])
    metrics.EVENTS_DUPLICATE.labels(source).inc(counts.events_duplicate - before[1])
    if counts.unknown_dispositions > before[2]:
        metrics.UNKNOWN_DISPOSITIONS.labels(source).inc(counts.unknown_dispositions - before[2])
    return counts


async def ingest_batches(
    batches: Iterable[Sequence[RawRecord]],
    mapper: Mapper,
    log_port: LogPort,
    sink: DeadLetterSink,
    revisions: RevisionStore | None = None,
    overlap: int = OVERLAP_BATCHES,
) -> IngestCounts:
    """:func:`ingest_batch` over many batches (a one-shot import), pipelined in three
    stages: while batch N is mapped (CPU), batch N+1 is read and its I/O before mapping
    runs (:func:`claim_batch`: revision claims, key look-up), and the dead letters then
    the events of up to ``overlap`` earlier batches are being written. Returns the total
    counts.

    Same guarantees as one batch at a time: revisions are claimed in batch order (one
    claim at a time), a batch's dead letters are written before its events, every record
    is counted once; a failure propagates after every write in flight and the claim
    ahead have finished (nothing is abandoned half-written). A duplicate id in two
    batches in flight is appended once (the log serializes it), credited to whichever
    append indexed it."""
    total = IngestCounts()
    inflight: deque[asyncio.Future[IngestCounts]] = deque()
    source = iter(batches)
    ahead: asyncio.Future[ClaimedBatch] | None = None

    def claim_next() -> asyncio.Future[ClaimedBatch] | None:
        records = next(source, None)  # reads the next batch (a file's layout error raises here)
        return None if records is None else asyncio.ensure_future(claim_batch(records, mapper, revisions))

    async def write(batch: MappedBatch) -> IngestCounts:
        await write_dead_letters(batch, log_port, sink)
        return await append_mapped(batch, log_port)

    try:
        ahead = claim_next()
        while ahead is not None:
            claimed = await ahead
            ahead = None
            ahead = claim_next()
            inflight.append(asyncio.ensure_future(write(map_claimed(claimed))))
            await asyncio.sleep(0)  # let the writes start (their first I/O) before mapping on
            while len(inflight) > max(0, overlap):
                total.add(await inflight.popleft())
        while inflight:
            total.add(await inflight.popleft())
    except BaseException:
        await asyncio.gather(*inflight, *([ahead] if ahead is not None else []), return_exceptions=True)
        raise
    return total


def _appended_ids(outcome: Any) -> set[str] | None:
    """Ids of newly appended envelopes when the port reports them (``hub.kernel.log.AppendResult``
    lists ``LoggedEvent`` values; the memory log lists envelopes)."""
    appended = outcome.appended
    if isinstance(appended, int):
        return None
    ids: set[str] = set()
    for item in appended:
        env = getattr(item, "envelope", item)
        ids.add(env.id)
    return ids


def _classify_per_record(
    chunk: list[tuple[int, Mapped]], counts: IngestCounts, first: Any
) -> None:
    if len(chunk) == 1:
        m = chunk[0][1]
        _tally(counts, m, count_of(first.appended), count_of(first.duplicates))
        return
    # the combined append already ran: a per-record re-append sees its own new events as
    # duplicates, so credit the combined result to records in order instead
    remaining_new = count_of(first.appended)
    for _, m in chunk:
        n = len(m.events)
        new = min(n, remaining_new)
        remaining_new -= new
        _tally(counts, m, new, n - new)


def lag_seconds(newest: datetime, now: datetime) -> float:
    """Age of the newest record at ``now`` (pure; never negative: a source clock ahead of
    ours reads as no lag rather than a negative one)."""
    return max(0.0, (now - newest).total_seconds())


def _tally(counts: IngestCounts, m: Mapped, new_events: int, dup_events: int) -> None:
    """Count one appended record (its caller adds the metrics for the batch)."""
    counts.note_time(max(ev.time for ev in m.events))
    counts.events_appended += new_events
    counts.events_duplicate += dup_events
    if new_events:
        counts.appended += 1
    else:
        counts.duplicates += 1
    for ev in m.events:
        counts.by_event_type[ev.type] = counts.by_event_type.get(ev.type, 0) + 1
    if m.unknown_disposition:
        counts.unknown_dispositions += 1


class Source(Protocol):
    """A pull source. ``read(cursor)`` returns the next records after ``cursor`` and the
    cursor that follows them; ``meta['more']`` true = read again without waiting."""

    name: str

    async def read(self, cursor: Any | None) -> Batch: ...

    async def close(self) -> None: ...


class SourceRunner:
    """Runs one source forever: read → ingest → commit cursor; errors back off.

    A component for the registry (``start()`` / ``stop()``)."""

    def __init__(
        self,
        source: Source,
        mapper: Mapper,
        log_port: LogPort,
        cursors: CursorStore,
        sink: DeadLetterSink,
        revisions: RevisionStore | None = None,
        *,
        interval: float = 5.0,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        clock: Any = None,
    ) -> None:
        self.source = source
        self.mapper = mapper
        self.log_port = log_port
        self.cursors = cursors
        self.sink = sink
        self.revisions = revisions
        self.interval = interval
        self.backoff = backoff or Backoff()
        self.rng = rng or random.Random()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.totals = IngestCounts()
        self.newest: datetime | None = None
        self._newest_loaded = False
        self.failures = 0
        self.polls = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.source.name

    async def poll_once(self) -> tuple[IngestCounts, bool]:
        """One read-ingest-commit step. Returns the counts and whether more is waiting."""
        if not self._newest_loaded:
            self._note_newest(await self.cursors.newest(self.name))
            self._newest_loaded = True
        cursor = await self.cursors.load(self.name)
        batch = await self.source.read(cursor)
        counts = await ingest_batch(batch.records, self.mapper, self.log_port, self.sink, self.revisions)
        if batch.cursor is not None and batch.cursor != cursor:
            await self.cursors.save(self.name, batch.cursor, counts.newest_record_at)
        self._note_newest(counts.newest_record_at)
        self.totals.add(counts)
        self.polls += 1
        self.report_lag()
        return counts, bool(batch.meta.get("more"))

    def _note_newest(self, at: datetime | None) -> None:
        if at is not None and (self.newest is None or at > self.newest):
            self.newest = at

    def report_lag(self) -> float | None:
        """Set the lag gauge from the newest record time seen; returns the lag (``None``
        before any record was seen)."""
        if self.newest is None:
            return None
        lag = lag_seconds(self.newest, self.clock())
        metrics.SOURCE_LAG.labels(self.name).set(lag)
        return lag

    async def run(self) -> None:
        up = metrics.SOURCE_UP.labels(self.name)
        while not self._stop.is_set():
            try:
                _, more = await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a source never dies: every failure backs off
                self.failures += 1
                up.set(0)
                metrics.SOURCE_ERRORS.labels(self.name).inc()
                self.report_lag()  # an outage shows as growing lag too
                delay = self.backoff.delay(self.failures, self.rng)
                # an outage is expected to pass; anything else needs an operator (a bad
                # feed answer, a configuration error, a bug), though retrying stays harmless
                log.log(
                    logging.WARNING if is_retriable(exc) else logging.ERROR,
                    "source %s %s (%d in a row), retrying in %.2fs: %s",
                    self.name,
                    "unavailable" if is_retriable(exc) else "failed",
                    self.failures,
                    delay,
                    describe_failure(exc),
                )
                await self._sleep(delay)
                continue
            self.failures = 0
            up.set(1)
            if not more:
                await self._sleep(self.interval)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    async def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self.run(), name=f"source:{self.name}")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=10)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        await self.source.close()
