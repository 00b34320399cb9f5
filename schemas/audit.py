"""The audit record: one row of an audit table (``access_log`` or ``deadletter_access`` in
the core schema), as appended to the audit topic (``<prefix>.audit``) when the row is
written. ``hub verify`` compares the topic with the tables, so a row deleted or altered in
PostgreSQL (by anyone, the owner role included) is a break.

The value is the canonical JSON of this model (:func:`hub.kernel.audit.audit_value`:
sorted keys, no spaces); the key is ``<table>:<id>``. Rows carry no clear identifier: who
(token subject or operator name), what (endpoint family / action), which subject (incident
id or pseudonym), why (purpose, reason), outcome."""

from __future__ import annotations

from typing import Any, Literal

from schemas.base import Frozen

AuditTable = Literal["access_log", "deadletter_access"]


class AuditRecord(Frozen):
    """One audit row: its table, its id there and its columns (JSON values; times in ISO 8601)."""

    table: AuditTable
    id: int
    row: dict[str, Any]
