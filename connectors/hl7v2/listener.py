"""Inbound MLLP listener: the EHR's ``RRI^I12`` answers become referral events.

Every frame gets exactly one ACK: ``AA`` once the answer's event is in the log (or when it
carries no news, e.g. a pending status); ``AE``/``AR`` with an ERR segment for bad input,
which is also dead-lettered (raw bytes sealed, reason readable). A failure to record the
answer (the log, PostgreSQL or the key store unavailable) answers ``AE`` (207, "temporary
failure; resend later") without a dead letter so the EHR resends. Bytes outside any frame are
dead-lettered too. One bad message never stops the listener or the connection.

A frame holding a batch (FHS/BHS … BTS/FTS, as some interface engines send) is read message
by message: each message is answered and recorded (or dead-lettered) on its own, and the
frame's one answer is a batch of their ACKs (:func:`connectors.hl7v2.codec.wrap_batch`).

Who may connect: MLLP has no authentication of its own, so ``allow_from`` (networks in
CIDR form) limits the peers; a connection from anywhere else is closed before anything is
read, and counted as ``refused``. The ``mllp-listener`` component requires ``allow_from``
when it listens on a non-loopback address (the EHR's interface engine, or a TLS-terminating
proxy in front of the listener).

What one source (a peer address) may cost is bounded (:class:`connectors.core.limits.SourceLimits`):
at most ``limits.max_concurrent`` open connections (more are closed at once and counted as
``refused``); frames beyond ``limits.rate_per_second`` / ``limits.burst`` get ``AE`` 207
("rate limit exceeded; resend later") and are not recorded; the raw bytes its refused
input leaves in dead letters are a byte budget per hour (beyond it a dead letter keeps its
reason, not the bytes: counted in ``raw_dropped``). Junk (bytes outside any frame) leaves
one dead letter per connection holding at most ``junk_sample`` bytes, and a connection
that sends more than ``max_junk`` junk bytes is closed — junk never becomes a multiple of
itself in permanent storage (sealed in Kafka and PostgreSQL). With ``ssl_context`` the
listener speaks MLLP over TLS (:mod:`connectors.core.tls`).

Stopping is graceful: :meth:`MllpListener.stop` stops accepting, closes idle client
connections (their handler sees end of stream and returns), lets a handler that is
answering a frame finish and send its ACK before closing, and only after ``grace``
seconds interrupts what is left — quietly: the handler returns normally instead of
ending *cancelled*, because Python 3.11's ``asyncio.start_server`` logs a cancelled
client handler as an "Exception in callback" with a ``CancelledError`` traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ipaddress
import logging
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors.core.limits import SourceLimits
from connectors.hl7v2.ack import UNKNOWN_KEY_IDENTIFIER, AckCode, AckError, build_ack
from connectors.hl7v2.codec import decode_frame, frame_charset, split_batch, wrap_batch
from connectors.hl7v2.mllp import FrameDecoder, FrameTooLarge, frame
from connectors.hl7v2.rri import InboundRefused, read_rri, triage
from connectors.referrals.answers import answer_event
from connectors.referrals.ledger import Ledger
from connectors.referrals.worker import WorkerDeps
from hub.kernel import metrics
from hub.kernel.crypto import KeyDestroyedError, seal, seal_context
from hub.kernel.deadletters import RawSealer, build_dead_letter, describe_failure, person_sealer
from hub.kernel.errors import HubError

log = logging.getLogger(__name__)
SOURCE = "ehr/mllp"
#: bytes of junk (outside any frame) a connection's one junk dead letter keeps
JUNK_SAMPLE = 4096
#: junk bytes after which a connection is closed
MAX_JUNK = 64 * 1024
#: the source (peer address) of the connection whose task is running (one task per connection)
_SOURCE: contextvars.ContextVar[str] = contextvars.ContextVar("mllp_source", default="peer")
#: the listener's default limits: an interface engine sends bursts of answers over a few
#: connections, so frames are allowed faster than HTTP requests
MLLP_LIMITS = SourceLimits(rate_per_second=200, burst=1000, max_concurrent=8)
RATE_LIMITED = AckError("207", "rate limit exceeded; resend later")


@dataclass
class _Connection:
    """One client connection: its writer, and whether its handler is answering frames."""

    writer: asyncio.StreamWriter
    busy: bool = False
    junk: int = 0  # bytes outside any frame seen on this connection


class MllpListener:
    def __init__(
        self,
        deps: WorkerDeps,
        *,
        host: str = "127.0.0.1",
        port: int = 2575,
        max_frame: int = 1 << 20,
        allow_from: Sequence[str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        limits: SourceLimits | None = None,
        junk_sample: int = JUNK_SAMPLE,
        max_junk: int = MAX_JUNK,
        clock: Any = time.monotonic,
    ) -> None:
        self.deps = deps
        self.host, self.port = host, port
        self.max_frame = max_frame
        self.ssl_context = ssl_context
        limits = limits or MLLP_LIMITS
        self._rate = limits.rate_limiter()
        self._conns_per_source = limits.concurrency()
        self._stored = limits.byte_budget()
        self.junk_sample, self.max_junk = junk_sample, max_junk
        self._clock = clock
        self.allow_from = (
            None if allow_from is None else [ipaddress.ip_network(n, strict=False) for n in allow_from]
        )
        self.ledger = Ledger(deps.pool, deps.core_schema)
        self._server: asyncio.base_events.Server | None = None
        self._conns: dict[asyncio.Task[Any], _Connection] = {}
        self._closing = False
        self.counts: dict[str, int] = {
            "frames": 0, "AA": 0, "AE": 0, "AR": 0, "dead_letters": 0, "events": 0, "refused": 0,
            "rate_limited": 0, "junk_bytes": 0, "raw_dropped": 0,
        }

    def admits(self, peer_host: str | None) -> bool:
        """Whether a peer may connect (every peer when ``allow_from`` is not set)."""
        if self.allow_from is None:
            return True
        try:
            addr = ipaddress.ip_address(peer_host or "")
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.allow_from)

    async def start(self) -> None:
        await self.serve()

    async def serve(self) -> None:
        """Start accepting connections (the ledger's tables must exist: :meth:`start`)."""
        self._closing = False
        self._server = await asyncio.start_server(self._conn, self.host, self.port, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, close client connections cleanly (see the module docstring)
        and wait for their handlers; idempotent."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for conn in self._conns.values():
            if not conn.busy:
                conn.writer.close()  # the handler's read sees end of stream
        tasks = list(self._conns)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()  # the handler returns quietly (see _conn)
            if pending:
                await asyncio.wait(pending)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._closing:  # accepted just as the listener stopped
            writer.close()
            return
        peer = writer.get_extra_info("peername")
        source = str(peer[0]) if isinstance(peer, tuple) else "peer"
        if not self.admits(peer[0] if isinstance(peer, tuple) else None):
            self.counts["refused"] += 1
            log.warning("mllp listener: refused a connection from a peer outside allow_from")
            writer.close()
            return
        if not self._conns_per_source.acquire(source):
            self.counts["refused"] += 1
            log.warning("mllp listener: refused a connection: the source has too many open connections")
            writer.close()
            return
        conn = self._conns[task] = _Connection(writer)
        _SOURCE.set(source)  # this connection's task: its dead letters count against its source
        peer_ref = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "peer"
        decoder = FrameDecoder(self.max_frame)
        n = 0
        try:
            while not self._closing:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                conn.busy = True
                try:
                    frames = decoder.feed(chunk)
                except FrameTooLarge as exc:
                    await self._dead_letter(f"{peer_ref}#oversize", str(exc), chunk[:4096])
                    break
                if not await self._junk(conn, decoder.take_junk(), peer_ref):
                    break
                for payload in frames:
                    n += 1
                    if self._rate.take(source, self._clock()):
                        answer = self._rate_limited(payload)
                    else:
                        answer = await self.handle(payload, f"{peer_ref}#{n}")
                    writer.write(frame(answer))
                    await writer.drain()
                conn.busy = False
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # stop() after its grace period, or the loop shutting down: end this
            # connection quietly rather than as a cancelled task (see the module
            # docstring); nothing awaits this task's result. A frame interrupted here got
            # no ACK, so the EHR resends it.
            pass
        finally:
            self._conns.pop(task, None)
            self._conns_per_source.release(source)
            writer.close()

    async def _junk(self, conn: _Connection, junk: bytes, peer_ref: str) -> bool:
        """Account for bytes outside any frame: the connection's first junk leaves one dead
        letter with at most ``junk_sample`` bytes; False (close) once it passed ``max_junk``."""
        if not junk:
            return True
        first = conn.junk == 0
        conn.junk += len(junk)
        self.counts["junk_bytes"] += len(junk)
        if first:
            sample = junk[: self.junk_sample]
            reason = f"bytes outside MLLP framing ({len(sample)} of {len(junk)} kept)"
            await self._dead_letter(f"{peer_ref}#junk", reason, sample)
        if conn.junk > self.max_junk:
            log.warning("mllp listener: closed a connection after %d bytes outside MLLP framing", conn.junk)
            return False
        return True

    def _rate_limited(self, payload: bytes) -> bytes:
        """``AE`` 207 for a frame over its source's rate (nothing recorded: the EHR resends);
        a batch gets a batch of them."""
        batch = split_batch(decode_frame(payload))
        self.counts["rate_limited"] += 1  # not an AE of the answer itself: counted apart
        acks = []
        for text in batch.messages:
            try:
                t = triage(text)
                control_id, sender = t.control_id, (t.sending_application, t.sending_facility)
            except InboundRefused:
                control_id, sender = "", ("", "")
            acks.append(build_ack(
                "AE",
                acked_control_id=control_id,
                now=datetime.now(UTC),
                receiving_application=sender[0],
                receiving_facility=sender[1],
                trigger="I12",
                error=RATE_LIMITED,
            ))
        answer = wrap_batch(batch, acks, now=datetime.now(UTC)) if batch.wrapped else acks[0]
        return answer.encode("utf-8")

    async def _dead_letter(self, ref: str, reason: str, raw: bytes, person: str | None = None) -> None:
        """A dead letter of refused input; its raw bytes only while the connection's source
        (:data:`_SOURCE`) is within its storage budget (beyond it the reason alone is kept),
        sealed under ``person``'s key when the message names a person the hub keys (erased
        with them; an unknown pseudonym never creates a key), else with the dead-letter key."""
        if not self._stored.spend(_SOURCE.get(), len(raw), self._clock()):
            self.counts["raw_dropped"] += len(raw)
            reason += " (raw bytes not kept: the source is over its dead-letter storage budget)"
            raw = b""
        sealer: RawSealer = self.deps.deadletter_sealer
        if person is not None:
            keys = await self.deps.keyring.resolve([person], create=False)
            sealer = person_sealer(keys, person, sealer)
        dl = build_dead_letter(
            source=SOURCE,
            source_family="ehr",
            record_ref=ref,
            stage="inbound",
            reason=reason,
            raw=raw,
            sealer=sealer,
        )
        await self.deps.log.dead_letters([dl])
        self.counts["dead_letters"] += 1
        metrics.RECORDS_DEADLETTERED.labels(SOURCE, "inbound").inc()

    def _ack(self, code: AckCode, control_id: str, sender: tuple[str, str], error: AckError | None) -> str:
        self.counts[code] += 1
        return build_ack(
            code,
            acked_control_id=control_id,
            now=datetime.now(UTC),
            receiving_application=sender[0],
            receiving_facility=sender[1],
            trigger="I12",
            error=error,
        )

    async def handle(self, payload: bytes, ref: str) -> bytes:
        """The answer to one inbound frame (side effects: events appended or dead letters):
        the ACK of its message, or for a batch the batch of its messages' ACKs."""
        self.counts["frames"] += 1
        metrics.RECORDS_READ.labels(SOURCE).inc()
        text = decode_frame(payload)
        batch = split_batch(text)
        if not batch.wrapped:
            return (await self._one(text, payload, ref)).encode("utf-8")
        charset = frame_charset(payload)
        acks = []
        for i, message in enumerate(batch.messages, start=1):
            raw = message.encode(charset, errors="replace")  # the message's own bytes, for a dead letter
            acks.append(await self._one(message, raw, f"{ref}.{i}"))
        return wrap_batch(batch, acks, now=datetime.now(UTC)).encode("utf-8")

    async def _one(self, text: str, payload: bytes, ref: str) -> str:
        """The ACK of one message. When its answer cannot be recorded (a
        :class:`hub.kernel.errors.HubError` from the ledger, the key store or the log): ``AE``
        207, nothing recorded, the EHR resends."""
        try:
            return await self._answer(text, payload, ref)
        except HubError as exc:
            if exc.retriable:
                log.warning("listener: an inbound message could not be recorded (%s); answering AE "
                            "so the EHR resends", describe_failure(exc))
            else:
                log.exception("listener: an inbound message could not be recorded; answering AE so "
                              "the EHR resends")
            try:
                t = triage(text)
                control_id, sender = t.control_id, (t.sending_application, t.sending_facility)
            except InboundRefused:
                control_id, sender = "", ("", "")
            return self._ack("AE", control_id, sender, AckError("207", "temporary failure; resend later"))

    async def _answer(self, text: str, payload: bytes, ref: str) -> str:
        """The ACK of one decoded message (:meth:`_one`); errors of the services propagate."""
        try:
            t = triage(text)
        except InboundRefused as exc:
            await self._dead_letter(ref, exc.error.reason, payload)
            return self._ack(exc.code, "", ("", ""), exc.error)
        sender = (t.sending_application, t.sending_facility)
        record_ref = f"{t.control_id or ref}"
        try:
            answer = read_rri(text)
        except InboundRefused as exc:
            await self._dead_letter(record_ref, exc.error.reason, payload)
            return self._ack(exc.code, t.control_id, sender, exc.error)
        if answer.kind is None:
            return self._ack("AA", t.control_id, sender, None)
        row = await self.ledger.find_referral(answer.referral_id, "hl7v2")
        problem = None
        if row is None:
            problem = "RF1-6 names no referral this hub sent over HL7 v2"
        elif answer.person != row.person:
            problem = "PID-3 does not match the referral's person"
        if problem or row is None:
            err = AckError(UNKNOWN_KEY_IDENTIFIER, problem or "unknown referral", "RF1^1^6")
            named = row.person if row is not None else answer.person  # whose data it carries
            await self._dead_letter(record_ref, err.reason, payload, named)
            return self._ack("AE", t.control_id, sender, err)
        note = None
        if answer.note:
            keys = await self.deps.keyring.resolve([row.person], create=True)
            with contextlib.suppress(KeyDestroyedError):  # erased: keep the answer, not the note
                note = seal(keys, row.person, {"text": answer.note},
                            context=seal_context(row.destination, row.referral_id, answer.kind, "note"))
        env = answer_event(
            answer.kind,
            referral_id=row.referral_id,
            person=row.person,
            destination=row.destination,
            at=answer.sent_at or datetime.now(UTC),
            remote_id=answer.control_id,
            source_status=answer.status_code,
            note=note,
            causation_id=row.request_event_id,
        )
        result = await self.deps.log.append([env])
        if result.appended:
            self.counts["events"] += 1
            metrics.EVENTS_APPENDED.labels(SOURCE).inc()
        else:
            metrics.EVENTS_DUPLICATE.labels(SOURCE).inc()
        return self._ack("AA", t.control_id, sender, None)
