"""The append-only access log of person-level reads, in PostgreSQL.

Each row says who (subject claim and role of an API token, or the operator at the host's
``hub`` CLI with role ``operator``, or :data:`ANONYMOUS` when no valid token was shown;
program), what (endpoint family and the outcome: ``allowed``; ``denied`` — the role or
program does not cover it; ``refused`` — no or bad token, no or bad purpose, bad id;
``error`` — the read failed), which subject (incident id or person pseudonym — never a
clear identifier; ``<invalid>`` for a malformed one), when (server clock), why (the
purpose of use the caller declared) and, for anything but ``allowed``, the reason (a fixed
phrase or the policy's message, never PHI).

Append-only is enforced by the database, not by this code: a trigger raises on UPDATE,
DELETE and TRUNCATE, those privileges are revoked from PUBLIC, and the runtime role every
process serves with holds only INSERT and SELECT on the table (it owns nothing, so it can
neither disable the trigger nor drop the table; :func:`hub.kernel.db.grant_runtime`). Only
the owner role could alter history, and that is detectable: every row is also appended to
the sealed audit topic, which ``hub verify`` compares with the table.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import asyncpg
from aiokafka import AIOKafkaProducer

from hub.kernel import metrics
from hub.kernel.db import MigrationSet
from hub.kernel.kafka import KafkaClients
from hub.kernel.kafka_io import scan_records
from schemas.audit import AuditRecord, AuditTable
from schemas.topics import audit_topic

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def quote_schema(schema: str) -> str:
    if not _IDENT.match(schema):
        raise ValueError(f"not a plain PostgreSQL identifier: {schema!r}")
    return f'"{schema}"'


#: the access log, in the namespace's core schema (component name kept from its first home)
#: (and the append-only protection of the audit tables: ``access_log``, ``deadletter_access``
#: — which the core set creates — and ``release_log``, the outcome releases)
ACCESS_LOG_MIGRATIONS = MigrationSet(
    "api",
    Path(__file__).resolve().parent / "migrations" / "access_log",
    "core",
    append_only=("access_log", "deadletter_access", "release_log"),
)

#: the columns of each audit table, in the order the audit record carries them
AUDIT_COLUMNS: dict[AuditTable, tuple[str, ...]] = {
    "access_log": (
        "id", "at", "sub", "role", "program", "action", "subject", "purpose", "outcome", "entries",
        "request_id", "reason",
    ),
    "deadletter_access": ("id", "deadletter_id", "actor", "action", "reason", "at"),
    "release_log": (
        "id", "at", "release_id", "read_model_schema", "channel", "vocabulary", "code_version", "records",
        "records_sha256",
    ),
}  # fmt: skip


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def audit_key(table: AuditTable, row_id: int) -> bytes:
    """The audit topic's record key of one row: ``<table>:<id>``."""
    return f"{table}:{row_id}".encode()


def audit_value(table: AuditTable, row: Mapping[str, Any] | asyncpg.Record) -> bytes:
    """The canonical bytes of one audit row (the record value, and what ``hub verify``
    recomputes from the table): :class:`schemas.audit.AuditRecord` as JSON with sorted keys."""
    record = AuditRecord(
        table=table, id=int(row["id"]), row={c: _json_value(row[c]) for c in AUDIT_COLUMNS[table]}
    )
    return json.dumps(record.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()


class AuditTopic:
    """Appends audit rows to the audit topic (``<prefix>.audit``) through the Kafka client
    factory, one acknowledged (``acks=all``) record per row. The producer starts on first
    use; :meth:`stop` closes it."""

    def __init__(self, clients: KafkaClients, prefix: str) -> None:
        self.clients = clients
        self.topic = audit_topic(prefix)
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def publish(self, table: AuditTable, row: Mapping[str, Any] | asyncpg.Record) -> None:
        """Append ``row`` of ``table`` and wait for the broker's acknowledgement."""
        async with self._lock:
            if self._producer is None:
                producer = self.clients.producer("audit")
                await producer.start()
                self._producer = producer
        key = audit_key(table, int(row["id"]))
        await self._producer.send_and_wait(
            self.topic, value=audit_value(table, row), key=key, headers=[("ce_id", key)]
        )

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


async def append_audit_row(
    pool: asyncpg.Pool, topic: AuditTopic, schema: str, table: AuditTable, values: Mapping[str, Any]
) -> asyncpg.Record:
    """Insert one row into ``<schema>.<table>`` and append it to the audit topic; returns the
    row as stored. The row is in the table before it is on the topic: a failure in between
    (a crash, a SIGKILL while the broker has no leader) leaves a row not on the topic, which
    ``hub verify`` reports until :func:`republish_missing` (run by the row's writer on start)
    appends it — never the reverse."""
    names = list(values)
    placeholders = ", ".join(f"${i}" for i in range(1, len(names) + 1))
    row = await pool.fetchrow(
        f"INSERT INTO {quote_schema(schema)}.{table} ({', '.join(names)}) VALUES ({placeholders})"
        f" RETURNING {', '.join(AUDIT_COLUMNS[table])}",
        *values.values(),
    )
    assert row is not None
    await topic.publish(table, row)
    return row


async def republish_missing(
    pool: asyncpg.Pool,
    topic: AuditTopic,
    schema: str,
    table: AuditTable,
    *,
    only: tuple[str, Any] | None = None,
) -> int:
    """Append to the audit topic every row of ``<schema>.<table>`` (``only``: those whose
    column equals the value) that is not on it — the rows a crash left between their insert
    and their acknowledgement (:func:`append_audit_row`); returns how many. The record is
    rebuilt from the row (:func:`audit_value`), so a copy the crashed writer's last request
    still put on the topic is identical, which ``hub verify`` accepts (:func:`compare_audit`).
    Callers serialize it with the table's writers (the row being written now is not missing:
    its writer publishes it)."""
    columns = AUDIT_COLUMNS[table]
    where, args = "", []
    if only is not None:
        if only[0] not in columns:
            raise ValueError(f"{table} has no column {only[0]!r}")
        where, args = f" WHERE {only[0]} = $1", [only[1]]
    rows = await pool.fetch(
        f"SELECT {', '.join(columns)} FROM {quote_schema(schema)}.{table}{where} ORDER BY id", *args
    )
    if not rows:
        return 0
    prefix = f"{table}:".encode()
    on_topic = {
        rec.key
        async for rec in scan_records(topic.clients, [topic.topic], role="audit-repair")
        if rec.key is not None and rec.key.startswith(prefix)
    }
    missing = [r for r in rows if audit_key(table, int(r["id"])) not in on_topic]
    for row in missing:
        await topic.publish(table, row)
    return len(missing)


@dataclass(frozen=True)
class AuditGap:
    """A difference between an audit table and the audit topic (``hub verify`` reports each
    as a break: ``missing`` — the row is on the topic but not in the table (deleted);
    ``altered`` — the table's row differs from the topic's; ``forged`` — a row in the
    table that never went to the topic, or a second record of a row that differs from the
    first)."""

    kind: str
    key: str
    offset: int  # the topic record's offset, -1 when the topic has none
    detail: str


def compare_audit(
    table_rows: Mapping[bytes, bytes], topic_records: Iterable[tuple[int, bytes | None, bytes | None]]
) -> list[AuditGap]:
    """Every :class:`AuditGap` between ``table_rows`` (key → canonical value, recomputed
    from the tables) and ``topic_records`` ((offset, key, value) of the audit topic, in
    offset order). Pure. A key the topic holds twice is compared by its first record; a
    second record with the same bytes is a re-send (a writer's retry, or
    :func:`republish_missing` after a crash: the record is rebuilt from the row) and no gap,
    a second record that differs is ``forged``."""
    gaps: list[AuditGap] = []
    seen: dict[bytes, bytes | None] = {}
    for offset, key, value in topic_records:
        name = (key or b"").decode(errors="replace")
        if key is not None and key in seen and seen[key] == value:
            continue  # an identical re-send
        if key is None or key in seen:
            gaps.append(AuditGap("forged", name, offset, "a second, different audit record for the same row"
                                 if key in seen else "an audit record without a key"))
            continue
        seen[key] = value
        stored = table_rows.get(key)
        if stored is None:
            gaps.append(AuditGap("missing", name, offset, f"audit row {name} was deleted from the table"))
        elif stored != value:
            gaps.append(AuditGap("altered", name, offset, f"audit row {name} differs from its audit record"))
    for key in sorted(set(table_rows) - set(seen)):
        name = key.decode(errors="replace")
        gaps.append(AuditGap("forged", name, -1, f"audit row {name} is not in the audit topic"))
    return gaps


async def audit_table_values(pool: asyncpg.Pool, schema: str) -> dict[bytes, bytes]:
    """Key → canonical value of every row of every audit table of ``schema``."""
    out: dict[bytes, bytes] = {}
    for table, columns in AUDIT_COLUMNS.items():
        for row in await pool.fetch(f"SELECT {', '.join(columns)} FROM {quote_schema(schema)}.{table}"):
            out[audit_key(table, row["id"])] = audit_value(table, row)
    return out



OPERATOR_ROLE = "operator"
#: outcomes a row may carry (the table's CHECK constraint, migration 0002)
OUTCOMES = ("allowed", "denied", "refused", "error")


class Actor(Protocol):
    """Who read: an API token's principal (:class:`hub.entry.api.roles.Principal`) or an
    :class:`Operator` at the CLI."""

    @property
    def sub(self) -> str: ...

    @property
    def role(self) -> str: ...

    @property
    def program(self) -> str | None: ...


@dataclass(frozen=True)
class Operator:
    """Someone reading person-level data through the ``hub`` CLI on the hub's host (no
    token: the OS user or the ``--actor`` they name). Logged with role ``operator``; it is
    not an API role and grants nothing in :mod:`hub.entry.api.roles`."""

    sub: str
    program: str | None = None
    role: str = OPERATOR_ROLE


@dataclass(frozen=True)
class Anonymous:
    """Whoever called without a valid token: logged as sub ``anonymous``, role ``none``."""

    sub: str = "anonymous"
    program: str | None = None
    role: str = "none"


ANONYMOUS = Anonymous()


@dataclass(frozen=True)
class AccessRecord:
    """One row to append."""

    principal: Actor
    action: str
    subject: str
    purpose: str
    outcome: str
    entries: int = 0
    request_id: str | None = None
    reason: str | None = None


class AccessLog:
    """Appends to (table and audit topic) and reads the access log of one core schema."""

    def __init__(self, pool: asyncpg.Pool, schema: str, topic: AuditTopic) -> None:
        self.pool = pool
        self.schema = schema
        self.topic = topic
        self._table = f"{quote_schema(schema)}.access_log"

    async def append(self, rec: AccessRecord) -> int:
        """Append one row to the table and to the audit topic; returns its id."""
        p = rec.principal
        values = {
            "sub": p.sub,
            "role": str(p.role),  # a Role (StrEnum) is its value
            "program": p.program,
            "action": rec.action,
            "subject": rec.subject,
            "purpose": rec.purpose,
            "outcome": rec.outcome,
            "entries": rec.entries,
            "request_id": rec.request_id,
            "reason": rec.reason,
        }
        row = await append_audit_row(self.pool, self.topic, self.schema, "access_log", values)
        metrics.ACCESS_LOG_APPENDS.labels(action=rec.action, outcome=rec.outcome).inc()
        return int(row["id"])

    async def count(self) -> int:
        return await self.pool.fetchval(f"SELECT count(*) FROM {self._table}")

    async def recent(
        self, *, limit: int = 100, subject: str | None = None, since: datetime | None = None
    ) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            f"SELECT {', '.join(AUDIT_COLUMNS['access_log'])} FROM {self._table}"
            " WHERE ($1::text IS NULL OR subject = $1) AND ($2::timestamptz IS NULL OR at >= $2)"
            " ORDER BY id DESC LIMIT $3",
            subject,
            since,
            limit,
        )
        return [dict(r) for r in rows]


def records_digest(content_json: str) -> str:
    """``sha256:<hex>`` of a release's content (canonical JSON of its records and extras,
    :func:`projections.releases.release_content`): what the release log seals, so the
    stored release can be checked against it."""
    return "sha256:" + hashlib.sha256(content_json.encode()).hexdigest()


async def sealed_release_digests(pool: asyncpg.Pool, schema: str, release_id: str, read_model_schema: str
                                 ) -> list[str]:
    """The digests the release log sealed for one release of one read-model schema."""
    rows = await pool.fetch(
        f"""SELECT records_sha256 FROM {quote_schema(schema)}.release_log
            WHERE release_id = $1 AND read_model_schema = $2 ORDER BY id""",
        release_id, read_model_schema,
    )
    return [r["records_sha256"] for r in rows]
