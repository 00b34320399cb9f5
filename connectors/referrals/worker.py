"""The delivery worker core, shared by the FHIR and the HL7 v2 channel.

Flow (everything important is either in the log or in the ledger, never only in memory)::

    log: referral.requested ──intake (consumer group)──▶ ledger row (pending)
    ledger ──one sender per destination (advisory lock: one worker fleet-wide)──▶
        consent gate ─hold─▶ log: referral.held_for_consent (row held; released when a
                              covering consent arrives)
        render (pure) ─▶ attempt recorded ─▶ send ─▶ AA/2xx  ─▶ log: referral.delivered
                                                  ─▶ AR/4xx  ─▶ log: referral.rejected
                                                  ─▶ AE/5xx/refused: back off, retry …
                                                  ─▶ timeout/dropped: outcome unknown,
                                                     resend (idempotent) within the budget …
                                   ask the EHR (lookup) ─▶ has it: log: referral.delivered
                                                        ─▶ has not: log: referral.delivery_failed

Truthful outcomes (issue 13, finding 6): a timeout or a connection dropped after the message
left is *outcome unknown*, not "not delivered" — the EHR may have stored it. Such a referral
is resent (byte-identical, so the EHR deduplicates it) beyond ``retry.max_attempts`` for as
long as ``retry.unknown_budget_s`` lasts, and before any ``referral.delivery_failed`` the
worker asks the EHR whether it has the referral (:meth:`Transport.lookup`: FHIR searches the
ServiceRequest by the referral's business identifier, HL7 resends with the same MSH-10): a
referral the EHR has is recorded delivered. A failed delivery can be re-driven
(``hub connectors redrive``: :meth:`connectors.referrals.ledger.Ledger.redrive`).

No head of line: each destination's sender delivers up to ``max_in_flight`` referrals at
once (started in ``seq`` order), so one slow or unanswered referral does not hold up the
rest of its destination's queue.

Failures: an outage of the log, PostgreSQL or the key store (a transient error, see
:mod:`hub.kernel.errors`) never fails or dead-letters a referral: the row stays where it
was and the intake / sender backs off with jitter and tries again; only a referral that
cannot be rendered (bad content: a permanent error) is dead-lettered and failed. The
person's key is resolved (awaited, bounded) before the pure rendering.

Only records the hub appended are taken in: the intake and the consent view check each
record first (:mod:`hub.kernel.quarantine`) and quarantine forged ones.

Outcomes go through a transactional outbox (:mod:`connectors.referrals.ledger`): the
ledger transition that decides an outcome stores its envelope, and the worker appends that
envelope as stored, then clears it; whatever was left unappended by a crash or an outage is
appended again, byte for byte, before the destination's next referral (and by the intake for
unroutable requests). So a crash between Kafka's acknowledgement and the event index commit
leaves at most an identical copy (``hub verify``: an orphan copy), never a re-stamped one.

Guarantees: per-destination order of starts (rows taken in ``seq`` order; with
``max_in_flight: 1`` one at a time); at most one delivery in flight per referral (the
destination's advisory lock is held by one sender in the whole fleet, which starts each row
once); idempotent across restarts (ledger rows are unique, attempts are recorded
before sending, resends are byte-identical — same MSH-10, same conditional creates — and
outcome events have deterministic ids). A Part 2 referral is re-gated before every attempt,
so a revocation stops any later disclosure.

The channel-specific part is a :class:`Transport`: a pure ``render`` and an async ``send``
that classifies the receiver's answer into a :class:`SendResult`.

Outcome times (the ``at`` of delivered / rejected / delivery failed / held for consent) come
from an :class:`OutcomeClock` (config ``clock``): ``wall`` (the default) stamps the wall
clock; ``relative`` — for replaying historical referrals, as ``hub demo`` does — stamps
``requested.at`` plus the real time elapsed since the worker picked the referral up, so a
simulated month's referrals are delivered seconds after they were made, in that month. The
clock only stamps: the consent gate always decides at the wall clock (a disclosure happens
now, so a consent must be valid now).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import BaseModel, ConfigDict, Field

from connectors.core.backoff import Backoff
from connectors.referrals import answers
from connectors.referrals.consent import Allow, decide
from connectors.referrals.consent_view import ConsentView
from connectors.referrals.content import DemographicField, Disclosure, Endpoint, ReferralReason
from connectors.referrals.ledger import Ledger, LedgerRow
from hub.kernel import metrics
from hub.kernel.crypto import KeyDestroyedError, unseal
from hub.kernel.deadletters import build_dead_letter, describe_error, describe_failure
from hub.kernel.errors import is_retriable
from hub.kernel.identity import mask
from hub.kernel.kafka import KafkaClients
from hub.kernel.kafka_io import end_offsets
from hub.kernel.keystore import DeadLetterSealer, TokenKeyring
from hub.kernel.log import CorruptRecordError, EventLog, decode_record
from hub.kernel.quarantine import Quarantine, RecordGuard
from hub.kernel.runtime import Runtime
from schemas.envelope import Envelope
from schemas.referral import Channel, ReferralRequested
from schemas.topics import fact_topic

log = logging.getLogger(__name__)
#: seconds between the idle intake's checks that nothing waits in its partitions
INTAKE_CHECK_S = 5.0

#: accepted / rejected: the receiver's final answer; retry: it did not take the message
#: (nothing was sent, or it said so: AE, 503); unknown: the message may have arrived (a
#: timeout, a connection dropped after sending) — resent within the budget, then looked up
Verdict = Literal["accepted", "rejected", "retry", "unknown"]

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`")
# dates, times, phone numbers, identifiers: digit groups joined by - / . : or 4+ digits
# (short codes such as an HL7 error code 207 or an HTTP status stay readable)
_NUMBERS = re.compile(r"\d+(?:[-/.:]\d+)+|\d{4,}")


def event_detail(text: str, limit: int = 500) -> str:
    """A receiver's free text (OperationOutcome diagnostics, MSA-3 / ERR-8) as it may enter
    the log, which keeps it in clear forever: quoted values become ``'…'`` and dates, phone
    numbers and long numbers have their digits masked as ``9`` (EHRs echo the offending
    value: a birth date, an MRN, a phone number). Codes, element paths and wording stay;
    the unredacted text is kept only in the delivery ledger."""
    masked = _NUMBERS.sub(lambda m: re.sub(r"\d", "9", m.group()), _QUOTED.sub("'…'", text))
    return masked[:limit]


@dataclass(frozen=True)
class Rendered:
    """One referral rendered for the wire. ``message_id`` is stable for the referral (MSH-10
    or the Bundle id); ``payload`` is what is sent, byte-identical on every resend."""

    message_id: str
    payload: bytes


@dataclass(frozen=True)
class SendResult:
    verdict: Verdict
    code: str  # AA/AE/AR, an HTTP status, "timeout", "connection", "protocol"
    detail: str = ""
    remote_id: str | None = None


class Transport(Protocol):
    channel: Channel

    def render(self, disclosure: Disclosure) -> Rendered: ...

    async def send(self, destination: str, rendered: Rendered) -> SendResult: ...

    async def lookup(self, destination: str, rendered: Rendered, request: ReferralRequested) -> SendResult:
        """Ask the receiver whether it has the referral: ``accepted`` (it has; ``remote_id``
        when known), ``retry`` with code ``absent`` (it has not), or ``unknown`` (it could
        not be asked). Idempotent: never creates a second copy."""
        ...

    async def close(self) -> None: ...


class OutcomeClock(Protocol):
    """Stamps delivery outcomes. :meth:`pick_up` is read once when the worker takes up a
    referral; :meth:`stamp` gives the time of an outcome of that referral."""

    def pick_up(self) -> float: ...

    def stamp(self, requested_at: datetime, picked_up: float) -> datetime: ...


@dataclass(frozen=True)
class WallClock:
    """Outcomes at the wall clock (live operation: referrals are made just before)."""

    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def pick_up(self) -> float:
        return 0.0

    def stamp(self, requested_at: datetime, picked_up: float) -> datetime:
        return self.now()


@dataclass(frozen=True)
class RelativeClock:
    """Outcomes at ``requested.at`` + the real time elapsed since pick-up (historical or
    simulated referrals: the delivery keeps its real duration, in the referral's time)."""

    monotonic: Callable[[], float] = time.monotonic

    def pick_up(self) -> float:
        return self.monotonic()

    def stamp(self, requested_at: datetime, picked_up: float) -> datetime:
        return requested_at + timedelta(seconds=max(0.0, self.monotonic() - picked_up))


def outcome_clock(kind: Literal["wall", "relative"]) -> OutcomeClock:
    return RelativeClock() if kind == "relative" else WallClock()


class RetryPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(8, ge=1)
    base_delay_s: float = Field(0.5, ge=0)
    max_delay_s: float = Field(60.0, ge=0)
    #: once an outcome is unknown (timeout, dropped connection), resends go on past
    #: ``max_attempts`` until this many seconds after the referral was picked up
    unknown_budget_s: float = Field(600.0, ge=0)

    def backoff(self) -> Backoff:
        return Backoff(base=self.base_delay_s, cap=self.max_delay_s, floor=min(0.05, self.base_delay_s))


class DestinationBase(BaseModel):
    """What every destination declares, whatever its channel."""

    model_config = ConfigDict(extra="forbid")

    display: str
    share_demographics: frozenset[DemographicField] = frozenset()


class WorkerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group_id: str | None = None
    sending_facility: str = "COHUB"
    requesters: dict[str, str] = Field(default_factory=dict)  # requester id -> display name
    retry: RetryPolicy = RetryPolicy()
    poll_interval_s: float = Field(1.0, gt=0)
    lock_retry_s: float = Field(2.0, gt=0)
    #: referrals of one destination delivered at once (no head-of-line blocking)
    max_in_flight: int = Field(4, ge=1, le=64)
    clock: Literal["wall", "relative"] = "wall"  # how outcomes are stamped (see module doc)
    #: the intake renews its Kafka consumer after this long without taking anything in while
    #: records wait in its partitions (a consumer that stopped fetching, see _renew_consumer)
    intake_stall_s: float = Field(60.0, gt=0)


@dataclass(frozen=True)
class WorkerDeps:
    """What the referral components (delivery workers and their consent view, the FHIR Task
    poller, the MLLP listener) take from the process's
    :class:`~hub.kernel.runtime.Runtime` (or a test). They build no Kafka client factory
    and read no settings of their own: every Kafka client comes from ``kafka``, the
    process's one factory (``rt.kafka``), and names from its namespace."""

    kafka: KafkaClients
    log: EventLog
    pool: asyncpg.Pool
    keyring: TokenKeyring
    deadletter_sealer: DeadLetterSealer
    topic_prefix: str
    core_schema: str

    @classmethod
    def from_runtime(cls, rt: Runtime) -> WorkerDeps:
        return cls(
            kafka=rt.kafka,
            log=rt.log,
            pool=rt.pool,
            keyring=rt.keyring,
            deadletter_sealer=rt.deadletter_sealer,
            topic_prefix=rt.namespace.prefix,
            core_schema=rt.namespace.core_schema,
        )


def destination_lock_key(schema: str, destination: str) -> int:
    """A 63-bit advisory lock key for one destination of one deployment."""
    digest = hashlib.sha256(f"referral-delivery\x1f{schema}\x1f{destination}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


class DeliveryWorker:
    """Intake + one sender per configured destination for one channel."""

    def __init__(
        self,
        deps: WorkerDeps,
        transport: Transport,
        destinations: dict[str, DestinationBase],
        config: WorkerConfig | None = None,
        *,
        rng: random.Random | None = None,
        clock: OutcomeClock | None = None,
    ) -> None:
        self.deps = deps
        self.transport = transport
        self.channel: Channel = transport.channel
        self.destinations = destinations
        self.config = config or WorkerConfig()
        self.schema = deps.core_schema
        self.ledger = Ledger(deps.pool, self.schema)
        self.backoff = self.config.retry.backoff()
        self.rng = rng or random.Random()
        self.clock = clock or outcome_clock(self.config.clock)
        self.guard = RecordGuard(deps.log.mac_keys, deps.pool, deps.core_schema)
        self.quarantine = Quarantine(deps.log, deps.deadletter_sealer, f"{self.channel}-delivery")
        self.consents = ConsentView(
            deps.kafka,
            deps.topic_prefix,
            guard=RecordGuard(deps.log.mac_keys, deps.pool, deps.core_schema),
            quarantine=Quarantine(deps.log, deps.deadletter_sealer, "consent-view"),
            on_change=self._wake_all,
        )
        self._wake: dict[str, asyncio.Event] = {d: asyncio.Event() for d in destinations}
        self._failures: dict[str, int] = dict.fromkeys(destinations, 0)  # consecutive, per sender
        self._tasks: list[asyncio.Task[None]] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()
        self._relay_due = True  # the intake relays unroutable outcomes left by a crash
        self.intake_count = 0

    # -- lifecycle

    async def start(self) -> None:
        await self.consents.start()
        self._consumer = self._new_consumer()
        await self._consumer.start()
        self._tasks.append(asyncio.create_task(self._intake(), name=f"{self.channel}-intake"))
        for dest in self.destinations:
            self._tasks.append(asyncio.create_task(self._sender(dest), name=f"{self.channel}-send-{dest}"))

    def _new_consumer(self) -> AIOKafkaConsumer:
        return self.deps.kafka.consumer(
            f"{self.channel}-delivery",
            fact_topic(self.deps.topic_prefix, "referral"),
            group_id=self.group_id,
            fetch_max_wait_ms=100,
            session_timeout_ms=10000,
            heartbeat_interval_ms=1000,
        )

    @property
    def group_id(self) -> str:
        return self.config.group_id or f"{self.deps.topic_prefix}-delivery-{self.channel}"

    async def stop(self) -> None:
        self._stopping.set()
        self._wake_all()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        await self.consents.stop()
        await self.transport.close()

    def _wake_all(self) -> None:
        for ev in self._wake.values():
            ev.set()

    async def _back_off(self, what: str, failures: int, exc: Exception) -> None:
        """Log a failed intake / sender round and wait before the next (jittered, growing
        with ``failures``): an outage is a warning, anything else an error with its
        traceback. The referral rows are untouched, so nothing is lost or failed."""
        delay = self.backoff.delay(failures, self.rng)
        if is_retriable(exc):
            log.warning("%s unavailable (%d in a row), retrying in %.2fs: %s",
                        what, failures, delay, describe_failure(exc))
        else:
            log.exception("%s failed (%d in a row), retrying in %.2fs", what, failures, delay)
        await self._sleep(delay)

    # -- intake: log → ledger

    async def _intake(self) -> None:
        """log → ledger. Commits only the offsets of records it has taken (each one enqueued,
        failed as unroutable, quarantined or dead-lettered); a batch that fails part-way
        (PostgreSQL or the log unavailable) is sought back to its first record before the
        back-off, so the next fetch reads it again — enqueueing is idempotent, so the part
        already taken is taken again harmlessly. Never a gap: ``getmany`` has already moved
        the position past the batch, and committing that position after a failure is how a
        referral used to be skipped (issue 13, finding 2)."""
        failures = 0
        progress_at = checked_at = time.monotonic()
        while not self._stopping.is_set():
            consumer = self._consumer
            assert consumer is not None
            starts: dict[TopicPartition, int] = {}
            try:
                if self._relay_due:
                    await self._relay(None)
                    self._relay_due = False
                batch = await consumer.getmany(timeout_ms=500, max_records=500)
                if any(batch.values()):
                    progress_at = time.monotonic()
                elif time.monotonic() - checked_at >= INTAKE_CHECK_S:
                    checked_at = time.monotonic()
                    if not await self._intake_behind(consumer):
                        progress_at = checked_at
                    elif checked_at - progress_at >= self.config.intake_stall_s:
                        await self._renew_consumer(checked_at - progress_at)
                        progress_at = time.monotonic()
                        continue
                starts = {tp: records[0].offset for tp, records in batch.items() if records}
                for records in batch.values():
                    for rec, refused in zip(records, await self.guard.check(records), strict=True):
                        if refused is None:
                            await self._take(rec)
                        else:  # a forged referral request is never delivered
                            await self.quarantine.put(rec, refused)
                if batch:
                    await consumer.commit(
                        {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
                    )
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the intake never dies: every failure backs off
                failures += 1
                self._relay_due = True
                self._rewind(consumer, starts)
                await self._back_off(f"{self.channel} delivery intake", failures, exc)

    async def _intake_behind(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        """The partitions assigned to this intake whose end offset is past the group's
        committed offset — records not taken in yet (the intake commits only what it took).
        Asked through fresh clients (:func:`hub.kernel.kafka_io.end_offsets`, an admin
        client), never through ``consumer``, whose metadata may be what is stuck."""
        assigned = sorted(consumer.assignment())
        if not assigned:
            return []
        ends = await end_offsets(self.deps.kafka, assigned, role=f"{self.channel}-intake-check")
        admin = self.deps.kafka.admin(f"{self.channel}-intake-check")
        await admin.start()
        try:
            committed = await admin.list_consumer_group_offsets(self.group_id, partitions=assigned)
        finally:
            await admin.close()
        taken = {tp: max(0, meta.offset) for tp, meta in committed.items()}
        return [tp for tp in assigned if ends.get(tp, 0) > taken.get(tp, 0)]

    async def _renew_consumer(self, idle: float) -> None:
        """Replace a consumer that stopped fetching while records wait (aiokafka kept
        resetting an empty partition's offset at a broker that was no longer its leader, and
        fetched nothing else for minutes after two brokers came back): the new one joins the
        group and resumes at the committed offsets, which cover only what was taken in."""
        log.error("%s delivery intake made no progress for %.0fs with records waiting; renewing its "
                  "Kafka consumer", self.channel, idle)
        metrics.INTAKE_RENEWALS.labels(self.channel).inc()
        old, self._consumer = self._consumer, self._new_consumer()
        if old is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.stop(), 10)
        await self._consumer.start()

    @staticmethod
    def _rewind(consumer: AIOKafkaConsumer, starts: dict[TopicPartition, int]) -> None:
        """Seek every partition of a failed batch back to its first record (partitions a
        rebalance took away meanwhile are skipped: their new owner starts at the last
        commit, which never covers the failed batch)."""
        assigned = consumer.assignment()
        for tp, offset in starts.items():
            if tp in assigned:
                consumer.seek(tp, offset)

    async def _take(self, rec: Any) -> None:
        try:
            envelope = decode_record(rec).envelope
            payload = envelope.payload()
        except (CorruptRecordError, ValueError, KeyError) as exc:
            dl = build_dead_letter(
                source=f"hub/{self.channel}-delivery",
                source_family="hub",
                record_ref=f"{rec.topic}[{rec.partition}]@{rec.offset}",
                stage="deliver",
                reason=f"unreadable referral record: {type(exc).__name__}",
                raw=rec.value or b"",
                sealer=self.deps.deadletter_sealer,
            )
            await self.deps.log.dead_letters([dl])
            return
        if not isinstance(payload, ReferralRequested) or payload.channel != self.channel:
            return
        self.intake_count += 1
        if payload.destination not in self.destinations:
            env = answers.failed_event(
                payload,
                request_event_id=envelope.id,
                at=self.clock.stamp(payload.at, self.clock.pick_up()),
                attempts=0,
                last_error=f"no route: destination {payload.destination!r} is not configured for "
                f"{self.channel}",
            )
            stored = await self.ledger.unroutable(envelope, payload, env)
            if stored is not None:
                await self._append_outbox(payload.destination, payload.referral_id, stored)
            return
        if await self.ledger.enqueue(envelope, payload):
            self._wake[payload.destination].set()

    # -- one sender per destination

    async def _sender(self, destination: str) -> None:
        key = destination_lock_key(self.schema, destination)
        while not self._stopping.is_set():
            try:
                async with self.deps.pool.acquire() as conn:
                    got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", key)
                    if not got:
                        await self._sleep(self.config.lock_retry_s, destination)
                        continue
                    try:
                        await self._drain(destination)
                    finally:
                        with contextlib.suppress(Exception):
                            await conn.execute("SELECT pg_advisory_unlock($1)", key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a sender never dies: every failure backs off
                self._failures[destination] += 1
                await self._back_off(f"sender for {destination}", self._failures[destination], exc)

    async def _drain(self, destination: str) -> None:
        """Deliver the destination's open rows, up to ``max_in_flight`` at once, taken in
        ``seq`` order; a row is never in flight twice. A delivery that fails (an outage)
        cancels the others and propagates: the sender backs off and starts again (a
        cancelled delivery recorded its attempt first and resends identically)."""
        seen_consents = -1
        wake = self._wake[destination]
        inflight: dict[str, asyncio.Task[str]] = {}
        try:
            while not self._stopping.is_set():
                wake.clear()
                await self._relay(destination)
                if self.consents.book.version != seen_consents:
                    seen_consents = self.consents.book.version
                    await self._recheck_held(destination)
                room = self.config.max_in_flight - len(inflight)
                rows = await self.ledger.next_open(destination, limit=room + len(inflight)) if room else []
                self._failures[destination] = 0  # the ledger answers again: the outage is over
                for row in rows:
                    if len(inflight) >= self.config.max_in_flight or self._stopping.is_set():
                        break
                    if row.referral_id not in inflight:
                        inflight[row.referral_id] = asyncio.create_task(
                            self.deliver(row), name=f"{self.channel}-deliver-{destination}"
                        )
                waiter = asyncio.ensure_future(wake.wait())
                try:
                    await asyncio.wait(
                        [waiter, *inflight.values()],
                        timeout=self.config.poll_interval_s,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    waiter.cancel()
                for rid, task in list(inflight.items()):
                    if task.done():
                        del inflight[rid]
                        task.result()  # an outage propagates: the sender backs off
        finally:
            for task in inflight.values():
                task.cancel()
            for task in inflight.values():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _recheck_held(self, destination: str) -> None:
        held = await self.ledger.held(destination)
        if not held:
            return
        await self.consents.catch_up()
        now = datetime.now(UTC)
        for row in held:
            req = row.referral
            if isinstance(decide(req, self.consents.book.of(req.person), now), Allow):
                await self.ledger.release(destination, row.referral_id)
                log.info(
                    "referral %s to %s released: consent now covers it", mask(row.referral_id), destination
                )

    async def _sleep(self, seconds: float, destination: str | None = None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # -- one referral

    async def _gate(self, row: LedgerRow, req: ReferralRequested, picked_up: float) -> Allow | None:
        """Allow, or hold (event appended, row held) and return None. The decision is taken
        at the wall clock; the hold is stamped by the outcome clock."""
        if req.substance_use:
            await self.consents.catch_up()
        decision = decide(req, self.consents.book.of(req.person), datetime.now(UTC))
        if isinstance(decision, Allow):
            return decision
        seq = row.hold_seq + 1
        env = answers.held_event(
            req,
            request_event_id=row.request_event_id,
            at=self.clock.stamp(req.at, picked_up),
            reason=decision.reason,
            hold_seq=seq,
        )
        stored = await self.ledger.hold(row.destination, row.referral_id, seq, decision.reason, env)
        metrics.DELIVERY_HELD.labels(row.destination).inc()
        await self._append_outbox(row.destination, row.referral_id, stored)
        return None

    async def _disclosure(self, row: LedgerRow, req: ReferralRequested, allow: Allow) -> Disclosure:
        reason = None
        if req.reason is not None:
            keys = await self.deps.keyring.resolve_ids([req.reason.kid])  # outage: propagates
            reason = ReferralReason.model_validate(unseal(keys, req.reason))
        dest = self.destinations[row.destination]
        return Disclosure(
            event_id=row.request_event_id,
            request=req,
            reason=reason,
            requester=Endpoint(
                id=req.requester, display=self.config.requesters.get(req.requester, req.requester)
            ),
            performer=Endpoint(id=row.destination, display=dest.display),
            shared_demographics=dest.share_demographics,
            consent=allow.consent,
            sending_facility=self.config.sending_facility,
        )

    async def _final(self, row: LedgerRow, state: str, env: Envelope, **kw: Any) -> None:
        """The outcome: the ledger transition with the envelope in its outbox, then the
        append of the envelope as stored (see the module docstring)."""
        stored = await self.ledger.finish(row.destination, row.referral_id, state, env, **kw)
        await self._append_outbox(row.destination, row.referral_id, stored)

    async def _append_outbox(self, destination: str, referral_id: str, stored: Envelope) -> None:
        await self.deps.log.append([stored])  # a duplicate (already in the log) is refused: fine
        await self.ledger.appended(destination, referral_id, stored.id)

    async def _relay(self, destination: str | None) -> None:
        """Append every outcome a crash or an outage left in the outbox (of ``destination``,
        or of every row of this channel), as stored, oldest first (up to 500 per call: the
        callers call again every round)."""
        for row in await self.ledger.outbox(self.channel, destination, limit=500):
            assert row.outbox is not None
            await self._append_outbox(row.destination, row.referral_id, row.outbox)

    async def deliver(self, row: LedgerRow) -> str:
        """Deliver one ledger row to its final state (or hold it); returns the new state."""
        req = row.referral
        dest = row.destination
        picked_up = self.clock.pick_up()
        allow = await self._gate(row, req, picked_up)
        if allow is None:
            return "held"
        try:
            disclosure = await self._disclosure(row, req, allow)
            rendered = self.transport.render(disclosure)
        except KeyDestroyedError:
            env = answers.failed_event(
                req,
                request_event_id=row.request_event_id,
                at=self.clock.stamp(req.at, picked_up),
                attempts=row.attempts,
                last_error="the person's data was erased; nothing was disclosed",
                revision=row.redrives,
            )
            await self._final(row, "failed", env, last_error="erased")
            return "failed"
        except ValueError as exc:  # unreadable reason or a message that does not validate
            # never the exception's text: a validation error quotes the clinical reason or
            # demographics it rejected, and this reason goes into the log in clear
            reason = f"referral cannot be rendered for {self.channel}: {describe_error(exc, 300)}"
            dl = build_dead_letter(
                source=f"hub/{self.channel}-delivery",
                source_family="hub",
                record_ref=row.request_event_id,
                stage="deliver",
                reason=reason,
                raw=row.request.to_bytes(),
                sealer=self.deps.deadletter_sealer,
            )
            await self.deps.log.dead_letters([dl])
            env = answers.failed_event(
                req,
                request_event_id=row.request_event_id,
                at=self.clock.stamp(req.at, picked_up),
                attempts=row.attempts,
                last_error=reason,
                revision=row.redrives,
            )
            await self._final(row, "failed", env, last_error=reason)
            return "failed"

        attempt = row.attempts
        last: SendResult | None = None
        # each re-drive gives a failed referral a fresh set of attempts
        limit = max(self.config.retry.max_attempts * (row.redrives + 1), row.attempts + 1)
        # a send of an earlier run (attempts recorded, no outcome) may have reached the EHR
        maybe_received = row.attempts > 0
        started_at = time.monotonic()
        while True:
            attempt += 1
            if attempt > row.attempts + 1 and req.substance_use:
                allow = await self._gate(row, req, picked_up)  # a revocation stops later disclosures
                if allow is None:
                    return "held"
            await self.ledger.begin_attempt(dest, row.referral_id, attempt, rendered.message_id)
            metrics.DELIVERY_SENT.labels(dest, self.channel).inc()
            started = time.monotonic()
            last = await self._send(dest, rendered)
            metrics.DELIVERY_ACKS.labels(dest, self.channel, last.code).inc()
            await self.ledger.finish_attempt(dest, row.referral_id, attempt, last.code, last.detail or None)
            if last.verdict == "accepted":
                metrics.DELIVERY_LATENCY.labels(dest, self.channel).observe(time.monotonic() - started)
                return await self._delivered(row, req, picked_up, last, attempt)
            if last.verdict == "rejected":
                return await self._rejected(row, req, picked_up, last)
            maybe_received = maybe_received or last.verdict == "unknown"
            within_budget = time.monotonic() - started_at < self.config.retry.unknown_budget_s
            if attempt >= limit and not (maybe_received and within_budget):
                break
            metrics.DELIVERY_RETRIES.labels(dest, self.channel).inc()
            await self._sleep(self.backoff.delay(min(attempt, limit), self.rng))
            if self._stopping.is_set():
                return "sending"
        # Before recording a failure, ask the EHR: a referral it has was delivered.
        answer = await self._lookup(dest, rendered, req)
        metrics.DELIVERY_LOOKUPS.labels(dest, self.channel, answer.code).inc()
        if answer.verdict == "accepted":
            log.info("referral %s to %s: outcome was unknown, the EHR has it: delivered",
                     mask(row.referral_id), dest)
            return await self._delivered(row, req, picked_up, answer, attempt)
        if answer.verdict == "rejected":
            return await self._rejected(row, req, picked_up, answer)
        why = (
            "the EHR does not have it" if answer.code == "absent"
            else "outcome unknown: the EHR could not be asked whether it has it"
        )
        env = answers.failed_event(
            req,
            request_event_id=row.request_event_id,
            at=self.clock.stamp(req.at, picked_up),
            attempts=attempt,
            last_error=f"{last.code}: {event_detail(last.detail)} ({why})",
            revision=row.redrives,
        )
        await self._final(row, "failed", env, last_error=f"{last.code}: {last.detail} ({why})")
        return "failed"

    async def _delivered(
        self, row: LedgerRow, req: ReferralRequested, picked_up: float, last: SendResult, attempt: int
    ) -> str:
        env = answers.delivered_event(
            req,
            request_event_id=row.request_event_id,
            at=self.clock.stamp(req.at, picked_up),
            remote_id=last.remote_id,
            ack_code=last.code,
            attempts=attempt,
        )
        await self._final(row, "delivered", env, remote_id=last.remote_id)
        return "delivered"

    async def _rejected(
        self, row: LedgerRow, req: ReferralRequested, picked_up: float, last: SendResult
    ) -> str:
        env = answers.rejected_event(
            req,
            request_event_id=row.request_event_id,
            at=self.clock.stamp(req.at, picked_up),
            code=last.code,
            detail=event_detail(last.detail),
        )
        await self._final(row, "rejected", env, last_error=last.detail)
        return "rejected"

    async def _lookup(self, destination: str, rendered: Rendered, req: ReferralRequested) -> SendResult:
        try:
            return await self.transport.lookup(destination, rendered, req)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a transport bug: the outcome stays unknown
            log.warning("asking %s about a referral failed: %s", destination, describe_failure(exc))
            return SendResult("unknown", "error", type(exc).__name__)

    async def _send(self, destination: str, rendered: Rendered) -> SendResult:
        try:
            return await self.transport.send(destination, rendered)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a transport bug must not kill the sender: retry, counted
            if is_retriable(exc):
                log.warning("sending to %s failed: %s", destination, describe_failure(exc))
            else:
                log.exception("transport error sending to %s", destination)
            return SendResult("retry", "error", type(exc).__name__)
