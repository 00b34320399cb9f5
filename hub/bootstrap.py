"""The composition root: the registries that name every part of a hub process, and the one
way to open a process with them.

A process (every ``hub`` command, the API, the workers, the demo, the benchmark and the
tests) opens with :func:`open_runtime`, which hands :class:`hub.kernel.runtime.Runtime`
the whole migration registry below. The registries are explicit lists — adding a part means
adding a line here, never a module that is found by scanning:

- :data:`MIGRATIONS` — every migration set, in the order they are applied;
- component kinds for ``hub connectors run`` live in :data:`connectors.registry.KINDS`;
- dead-letter re-drivers in :data:`connectors.registry.REDRIVERS` (``hub deadletters
  retry`` hands them to :func:`hub.kernel.deadletters.redrive`).

This module sits above the kernel, the connectors and the projections and below the entry
points (``hub.entry``) and the development tooling (``hub.devtools``), which both use it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from connectors.core.state import STATE_MIGRATIONS
from connectors.intake.service import INTAKE_MIGRATIONS
from connectors.referrals.ledger import LEDGER_MIGRATIONS
from hub.kernel.audit import ACCESS_LOG_MIGRATIONS, AccessLog, AuditTopic
from hub.kernel.db import (
    CORE_MIGRATIONS,
    MigrationSet,
    migrate_namespace,
    namespace_schemas,
    open_owner_pool,
    open_pool,
    prepare_sets,
)
from hub.kernel.errors import InfraError
from hub.kernel.kafka import KafkaClients
from hub.kernel.quarantine import RECORD_MAC_MIGRATIONS, record_cutover
from hub.kernel.runtime import Runtime
from hub.kernel.settings import Settings
from hub.kernel.topics import ensure_topics
from projections.store import READ_MODEL_MIGRATIONS

#: every migration set of the hub, applied in this order when a process opens
MIGRATIONS: tuple[MigrationSet, ...] = (
    CORE_MIGRATIONS,
    RECORD_MAC_MIGRATIONS,
    STATE_MIGRATIONS,
    LEDGER_MIGRATIONS,
    INTAKE_MIGRATIONS,
    ACCESS_LOG_MIGRATIONS,
    READ_MODEL_MIGRATIONS,
)


@asynccontextmanager
async def open_runtime(
    settings: Settings | None = None, *, ensure_topics: bool = True
) -> AsyncIterator[Runtime]:
    """A started :class:`Runtime` with every migration set applied (see the kernel's
    :meth:`Runtime.open` for what opening does). The first open of a namespace records
    where record MACs began (:func:`hub.kernel.quarantine.record_cutover`)."""
    async with Runtime.open(settings, migrations=MIGRATIONS, ensure_topics=ensure_topics) as rt:
        await record_cutover(rt.pool, rt.settings.core_schema, rt.kafka, rt.settings.kafka.topic_prefix)
        yield rt


async def migrate_all(pool: asyncpg.Pool, settings: Settings) -> None:
    """Apply every migration set to ``settings``' namespace through ``pool``, an OWNER pool
    (``hub.kernel.db.open_pool(settings, role="owner")``), granting the runtime role."""
    await migrate_namespace(pool, settings, MIGRATIONS)


@dataclass(frozen=True)
class Reader:
    """What a process that only reads PostgreSQL needs: a RUNTIME-role pool and the audit
    topic its access-log rows go to."""

    pool: asyncpg.Pool
    audit: AuditTopic

    def access_log(self, settings: Settings) -> AccessLog:
        return AccessLog(self.pool, settings.core_schema, self.audit)


@asynccontextmanager
async def open_reader(settings: Settings, *, max_size: int | None = None) -> AsyncIterator[Reader]:
    """For processes that read PostgreSQL only (``hub timeline``): make sure
    the topic catalogue exists (the audit topic), apply every migration set through a
    short-lived owner connection (``postgres.migrations: check``: only check them as the
    runtime role), then yield a :class:`Reader` (pool and producer closed on exit)."""
    clients = KafkaClients(settings.kafka)
    report = await ensure_topics(settings, create=clients.is_admin)  # other principals only check
    if report.errors:
        raise InfraError("topic catalogue could not be applied: " + "; ".join(report.errors))
    audit = AuditTopic(clients, settings.kafka.topic_prefix)
    try:
        async with open_pool(settings, role="runtime", max_size=max_size) as pool:
            async with open_owner_pool(settings) as owner:
                for home, schema in namespace_schemas(settings):
                    await prepare_sets(settings, owner, pool, MIGRATIONS, home, schema)
            yield Reader(pool, audit)
    finally:
        await audit.stop()
