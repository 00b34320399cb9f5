"""The delivery ledger (PostgreSQL): durable work queue and attempt memory of the delivery
workers. Tables live in ``settings.core_schema`` (migrations in ``migrations/``).

Invariants:

- one row per (destination, referral); inserting a referral twice is a no-op, so re-reading
  the log after a rebalance or a restart never queues a second delivery;
- an attempt is recorded (row ``sending``, ``attempts`` incremented, attempt row inserted)
  and committed *before* the message is sent;
- transactional outbox: a row reaches a final state (``delivered`` / ``rejected`` /
  ``failed``) or ``held`` in the same statement that stores its outcome envelope in
  ``outbox``; the worker appends that envelope to the log *as stored* and then clears it
  (:meth:`Ledger.outbox`, :meth:`Ledger.appended`). A crash anywhere in between (even after
  Kafka acknowledged and before the event index committed) is repaired by appending the
  stored bytes again: the log refuses it as a duplicate, or writes an identical copy that
  ``hub verify`` recognises as an orphan copy; an outcome is never re-stamped (a new ``at``
  or ``attempts`` would be a conflicting copy of one event id);
- per-destination order is ``seq`` order (the order the intake read the requests);
- re-drive (:meth:`Ledger.redrive`): only a ``failed`` row whose outcome is in the log (empty
  outbox) goes back to ``pending``, with ``redrives`` incremented and its attempts kept; its
  next failure is a new fact (revision ``redrives``), its delivery the one delivered fact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from connectors.referrals.content import hl7_referral_id
from hub.kernel.db import MigrationSet, check_schema_name
from hub.kernel.errors import outage_boundary
from schemas.envelope import Envelope
from schemas.referral import ReferralRequested

#: the delivery ledger, in the namespace's core schema
LEDGER_MIGRATIONS = MigrationSet("referrals", Path(__file__).resolve().parent / "migrations", "core")
FINAL_STATES = ("delivered", "rejected", "failed")


@dataclass(frozen=True)
class LedgerRow:
    seq: int
    destination: str
    referral_id: str
    channel: str
    person: str
    request_event_id: str
    request: Envelope
    state: str
    attempts: int
    hold_seq: int
    message_id: str | None
    remote_id: str | None
    last_error: str | None
    outbox: Envelope | None = None
    redrives: int = 0

    @property
    def referral(self) -> ReferralRequested:
        payload = self.request.payload()
        assert isinstance(payload, ReferralRequested)
        return payload

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> LedgerRow:
        raw = r["request"]
        return cls(
            seq=r["seq"],
            destination=r["destination"],
            referral_id=r["referral_id"],
            channel=r["channel"],
            person=r["person"],
            request_event_id=r["request_event_id"],
            request=Envelope.model_validate_json(raw)
            if isinstance(raw, str | bytes)
            else Envelope.model_validate(raw),
            state=r["state"],
            attempts=r["attempts"],
            hold_seq=r["hold_seq"],
            message_id=r["message_id"],
            remote_id=r["remote_id"],
            last_error=r["last_error"],
            outbox=Envelope.model_validate_json(r["outbox"]) if r.get("outbox") else None,
            redrives=r.get("redrives") or 0,
        )


@outage_boundary("delivery ledger")
class Ledger:
    """The referral delivery ledger (``referral_deliveries`` and their attempts); a
    PostgreSQL outage reaches callers as :class:`hub.kernel.errors.ServiceUnavailable`."""

    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.schema = check_schema_name(schema)
        self.t = f"{self.schema}.referral_deliveries"
        self.a = f"{self.schema}.referral_delivery_attempts"

    async def enqueue(self, envelope: Envelope, req: ReferralRequested) -> bool:
        """Queue one request (idempotent). True when the row is new. An HL7 v2 referral whose
        id RF1-6 cannot carry keeps the short form it is sent under (:func:`hl7_referral_id`)."""
        wire = hl7_referral_id(req.referral_id) if req.channel == "hl7v2" else req.referral_id
        row = await self.pool.fetchrow(
            f"""INSERT INTO {self.t} (destination, referral_id, channel, person, request_event_id, request,
                    hl7_referral_id)
                VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)
                ON CONFLICT (destination, referral_id) DO NOTHING RETURNING seq""",
            req.destination,
            req.referral_id,
            req.channel,
            req.person,
            envelope.id,
            envelope.model_dump_json(),
            wire if wire != req.referral_id else None,
        )
        return row is not None

    async def get(self, destination: str, referral_id: str) -> LedgerRow | None:
        r = await self.pool.fetchrow(
            f"SELECT * FROM {self.t} WHERE destination = $1 AND referral_id = $2", destination, referral_id
        )
        return LedgerRow.from_record(r) if r else None

    async def find_referral(self, referral_id: str, channel: str | None = None) -> LedgerRow | None:
        """The row of a referral (by its id, or the short form HL7 v2 sent it under) — how
        inbound answers find person and destination."""
        r = await self.pool.fetchrow(
            f"""SELECT * FROM {self.t} WHERE (referral_id = $1 OR hl7_referral_id = $1)
                AND ($2::text IS NULL OR channel = $2)
                ORDER BY referral_id = $1 DESC, seq LIMIT 1""",
            referral_id,
            channel,
        )
        return LedgerRow.from_record(r) if r else None

    async def next_open(self, destination: str, limit: int = 100) -> list[LedgerRow]:
        rows = await self.pool.fetch(
            f"""SELECT * FROM {self.t} WHERE destination = $1 AND state IN ('pending', 'sending')
                ORDER BY seq LIMIT $2""",
            destination,
            limit,
        )
        return [LedgerRow.from_record(r) for r in rows]

    async def held(self, destination: str) -> list[LedgerRow]:
        rows = await self.pool.fetch(
            f"SELECT * FROM {self.t} WHERE destination = $1 AND state = 'held' ORDER BY seq", destination
        )
        return [LedgerRow.from_record(r) for r in rows]

    async def begin_attempt(self, destination: str, referral_id: str, attempt: int, message_id: str) -> None:
        """Record that attempt ``attempt`` is about to send ``message_id`` (commits first).
        An HL7 v2 row queued before the RF1-6 short form existed gets it here, before the
        message carrying it leaves."""
        short = hl7_referral_id(referral_id)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"""UPDATE {self.t} SET state = 'sending', attempts = $3, message_id = $4, updated_at = now(),
                    hl7_referral_id = CASE WHEN channel = 'hl7v2' THEN $5::text END
                    WHERE destination = $1 AND referral_id = $2""",
                destination,
                referral_id,
                attempt,
                message_id,
                short if short != referral_id else None,
            )
            await conn.execute(
                f"""INSERT INTO {self.a} (destination, referral_id, attempt, message_id)
                    VALUES ($1, $2, $3, $4)
                    ON CONFLICT (destination, referral_id, attempt) DO UPDATE SET started_at = now(),
                    finished_at = NULL, result = NULL, detail = NULL""",
                destination,
                referral_id,
                attempt,
                message_id,
            )

    async def finish_attempt(
        self, destination: str, referral_id: str, attempt: int, result: str, detail: str | None
    ) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"""UPDATE {self.a} SET finished_at = now(), result = $4, detail = $5
                    WHERE destination = $1 AND referral_id = $2 AND attempt = $3""",
                destination,
                referral_id,
                attempt,
                result,
                detail,
            )
            await conn.execute(
                f"""UPDATE {self.t} SET updated_at = now(),
                    last_error = CASE WHEN $3 THEN last_error ELSE $4 END
                    WHERE destination = $1 AND referral_id = $2""",
                destination,
                referral_id,
                result in ("AA",) or result.startswith("2"),
                detail,
            )

    async def finish(
        self,
        destination: str,
        referral_id: str,
        state: str,
        outcome: Envelope,
        *,
        remote_id: str | None = None,
        last_error: str | None = None,
    ) -> Envelope:
        """Move the row to final ``state`` and store ``outcome`` in its outbox (one statement).
        Returns the envelope as stored: what the caller appends (and any later relay)."""
        if state not in FINAL_STATES:
            raise ValueError(f"not a final state: {state}")
        stored = outcome.model_dump_json()
        await self.pool.execute(
            f"""UPDATE {self.t} SET state = $3, outcome_event_id = $4, remote_id = COALESCE($5, remote_id),
                last_error = COALESCE($6, last_error), outbox = $7, updated_at = now()
                WHERE destination = $1 AND referral_id = $2""",
            destination,
            referral_id,
            state,
            outcome.id,
            remote_id,
            last_error,
            stored,
        )
        return Envelope.model_validate_json(stored)

    async def hold(
        self, destination: str, referral_id: str, hold_seq: int, reason: str, outcome: Envelope
    ) -> Envelope:
        """Hold the row and store its ``referral.held_for_consent`` envelope in the outbox."""
        stored = outcome.model_dump_json()
        await self.pool.execute(
            f"""UPDATE {self.t} SET state = 'held', hold_seq = $3, last_error = $4, outbox = $5,
                updated_at = now() WHERE destination = $1 AND referral_id = $2""",
            destination,
            referral_id,
            hold_seq,
            reason,
            stored,
        )
        return Envelope.model_validate_json(stored)

    async def unroutable(
        self, request: Envelope, req: ReferralRequested, outcome: Envelope
    ) -> Envelope | None:
        """Record a request whose destination no worker serves as ``failed``, with its
        ``referral.delivery_failed`` envelope in the outbox (idempotent). Returns the envelope
        as stored, or None when the row already existed (its outbox, if any, is relayed)."""
        stored = outcome.model_dump_json()
        row = await self.pool.fetchrow(
            f"""INSERT INTO {self.t} (destination, referral_id, channel, person, request_event_id, request,
                    state, last_error, outcome_event_id, outbox)
                VALUES ($1, $2, $3, $4, $5, $6::jsonb, 'failed', 'no route', $7, $8)
                ON CONFLICT (destination, referral_id) DO NOTHING RETURNING seq""",
            req.destination,
            req.referral_id,
            req.channel,
            req.person,
            request.id,
            request.model_dump_json(),
            outcome.id,
            stored,
        )
        return Envelope.model_validate_json(stored) if row is not None else None

    async def outbox(self, channel: str, destination: str | None = None, limit: int = 100) -> list[LedgerRow]:
        """Rows of ``channel`` (and ``destination``) whose outcome waits to be appended."""
        rows = await self.pool.fetch(
            f"""SELECT * FROM {self.t} WHERE outbox IS NOT NULL AND channel = $1
                AND ($2::text IS NULL OR destination = $2) ORDER BY seq LIMIT $3""",
            channel,
            destination,
            limit,
        )
        return [LedgerRow.from_record(r) for r in rows]

    async def appended(self, destination: str, referral_id: str, event_id: str) -> None:
        """The outbox's envelope ``event_id`` is in the log: clear it (a newer one stays)."""
        await self.pool.execute(
            f"""UPDATE {self.t} SET outbox = NULL WHERE destination = $1 AND referral_id = $2
                AND (outbox::jsonb ->> 'id') = $3""",
            destination,
            referral_id,
            event_id,
        )

    async def redrive(
        self, destination: str | None = None, referral_ids: Sequence[str] = (), *, channel: str | None = None
    ) -> list[tuple[str, str]]:
        """Put ``failed`` rows back in the queue (state ``pending``, ``redrives`` + 1): those of
        ``destination`` (every destination when None), of ``channel`` when given, and only
        ``referral_ids`` when any are given. A row whose failure is not yet in the log (its
        outbox still holds it) is left alone, so a failure is never lost from the log. Returns
        the (destination, referral id) pairs re-driven, in ``seq`` order. A running worker
        picks them up within its ``poll_interval_s``."""
        rows = await self.pool.fetch(
            f"""UPDATE {self.t} SET state = 'pending', redrives = redrives + 1, last_error = NULL,
                updated_at = now()
                WHERE state = 'failed' AND outbox IS NULL
                AND ($1::text IS NULL OR destination = $1)
                AND ($2::text IS NULL OR channel = $2)
                AND (cardinality($3::text[]) = 0 OR referral_id = ANY($3::text[]))
                RETURNING seq, destination, referral_id""",
            destination,
            channel,
            list(referral_ids),
        )
        return [(r["destination"], r["referral_id"]) for r in sorted(rows, key=lambda r: r["seq"])]

    async def release(self, destination: str, referral_id: str) -> None:
        await self.pool.execute(
            f"""UPDATE {self.t} SET state = 'pending', updated_at = now()
                WHERE destination = $1 AND referral_id = $2 AND state = 'held'""",
            destination,
            referral_id,
        )

    async def counts(self, destination: str | None = None) -> dict[str, int]:
        rows = await self.pool.fetch(
            f"""SELECT state, count(*) AS n FROM {self.t} WHERE $1::text IS NULL OR destination = $1
                GROUP BY state""",
            destination,
        )
        return {r["state"]: r["n"] for r in rows}

    async def load_cursor(self, destination: str) -> str | None:
        return await self.pool.fetchval(
            f"SELECT cursor FROM {self.schema}.referral_poll_cursors WHERE destination = $1", destination
        )

    async def save_cursor(self, destination: str, cursor: str) -> None:
        await self.pool.execute(
            f"""INSERT INTO {self.schema}.referral_poll_cursors (destination, cursor) VALUES ($1, $2)
                ON CONFLICT (destination) DO UPDATE SET cursor = EXCLUDED.cursor, updated_at = now()""",
            destination,
            cursor,
        )
