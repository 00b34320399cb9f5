"""The append-only access log of person-level reads, in PostgreSQL.

Each row says who (subject claim and role of an API token, or the operator at the host's
``hub`` CLI with role ``operator``; program), what (endpoint family and the outcome:
``allowed`` or ``denied``), which subject (incident id or person pseudonym — never a clear
identifier), when (server clock) and why (the purpose of use the caller declared).

Append-only is enforced by the database, not by this code: a trigger raises on UPDATE,
DELETE and TRUNCATE, and those privileges are revoked from PUBLIC. Only an operator who
drops the trigger as the table owner could alter history, and that is itself visible in
PostgreSQL's own logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import asyncpg

from hub.kernel import metrics
from hub.kernel.db import MigrationSet

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def quote_schema(schema: str) -> str:
    if not _IDENT.match(schema):
        raise ValueError(f"not a plain PostgreSQL identifier: {schema!r}")
    return f'"{schema}"'


#: the access log, in the namespace's core schema (component name kept from its first home)
ACCESS_LOG_MIGRATIONS = MigrationSet(
    "api", Path(__file__).resolve().parent / "migrations" / "access_log", "core", append_only=("access_log",)
)


OPERATOR_ROLE = "operator"


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
class AccessRecord:
    """One row to append."""

    principal: Actor
    action: str
    subject: str
    purpose: str
    outcome: str
    entries: int = 0
    request_id: str | None = None


class AccessLog:
    """Appends to and reads the access log of one core schema."""

    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.schema = schema
        self._table = f"{quote_schema(schema)}.access_log"

    async def append(self, rec: AccessRecord) -> int:
        p = rec.principal
        row_id = await self.pool.fetchval(
            f"INSERT INTO {self._table} (sub, role, program, action, subject, purpose, outcome, entries,"
            " request_id) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) RETURNING id",
            p.sub,
            str(p.role),  # a Role (StrEnum) is its value
            p.program,
            rec.action,
            rec.subject,
            rec.purpose,
            rec.outcome,
            rec.entries,
            rec.request_id,
        )
        metrics.ACCESS_LOG_APPENDS.labels(action=rec.action, outcome=rec.outcome).inc()
        return row_id

    async def count(self) -> int:
        return await self.pool.fetchval(f"SELECT count(*) FROM {self._table}")

    async def recent(
        self, *, limit: int = 100, subject: str | None = None, since: datetime | None = None
    ) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            f"SELECT id, at, sub, role, program, action, subject, purpose, outcome, entries, request_id"
            f" FROM {self._table} WHERE ($1::text IS NULL OR subject = $1)"
            f" AND ($2::timestamptz IS NULL OR at >= $2) ORDER BY id DESC LIMIT $3",
            subject,
            since,
            limit,
        )
        return [dict(r) for r in rows]
