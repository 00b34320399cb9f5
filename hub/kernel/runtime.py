"""The runtime of one hub process: the container that the composition root
(:mod:`hub.bootstrap`) fills and every command, worker, API and test uses.

Usage::

    async with open_runtime(settings) as rt:        # hub.bootstrap: every migration set
        await rt.log.append(envelopes)

Opening, in order: builds the one Kafka client
factory (:class:`~hub.kernel.kafka.KafkaClients`: the only place connection security is
applied), applies every registered migration set to the
namespace's schemas (core sets to ``<prefix>_core``, read-model sets to
``postgres.schema``) through a short-lived OWNER connection that also grants the runtime
role its privileges (:func:`hub.kernel.db.grant_runtime`) — or, with ``postgres.migrations:
check``, only checks as the runtime role that the migrate job applied them all — and serves
the process with a pool of the RUNTIME role (``rt.pool``: it cannot alter the audit tables
or any schema);
checks that the core schema's state belongs to the connected Kafka cluster (binding it at
first use; :mod:`hub.kernel.binding` — another cluster raises
:class:`~hub.kernel.binding.ClusterMismatchError`), makes sure the topic catalogue exists,
and starts the event log and the keyring (its keys on the PKCS#11 token); closing stops
them in reverse order. Nothing else constructs an :class:`~hub.kernel.log.EventLog` or a
keyring.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import asyncpg

from hub.kernel.audit import AuditTopic
from hub.kernel.binding import ensure_bound
from hub.kernel.db import (
    CORE_MIGRATIONS,
    Home,
    MigrationSet,
    apply_sets,
    create_pool,
    open_owner_pool,
    open_pool,
    prepare_sets,
    runtime_grantee,
)
from hub.kernel.errors import InfraError
from hub.kernel.kafka import KafkaClients
from hub.kernel.keys import secret_bytes
from hub.kernel.keystore import DeadLetterSealer, TokenKeyring
from hub.kernel.log import EventLog
from hub.kernel.namespace import Namespace
from hub.kernel.quarantine import Quarantine, RecordGuard
from hub.kernel.settings import Settings, get_settings
from hub.kernel.topics import ensure_topics as apply_catalogue


@dataclass
class Runtime:
    """A started hub process: settings and their namespace, the Kafka client factory, the
    PostgreSQL pool (runtime role), the event log, the person keyring, the pseudonym key, the
    dead-letter sealer, the migration registry it was opened with and the audit topic."""

    settings: Settings
    namespace: Namespace
    kafka: KafkaClients
    pool: asyncpg.Pool
    log: EventLog
    keyring: TokenKeyring
    pseudonym_key: bytes
    deadletter_sealer: DeadLetterSealer
    migrations: tuple[MigrationSet, ...]
    #: the audit topic every audit row is also appended to (producer started on first use)
    audit: AuditTopic

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        settings: Settings | None = None,
        *,
        migrations: Sequence[MigrationSet] = (CORE_MIGRATIONS,),
        ensure_topics: bool = True,
    ) -> AsyncIterator[Runtime]:
        """Start everything; stop everything on exit (also on error). ``migrations`` is the
        registry to apply (:data:`hub.bootstrap.MIGRATIONS` for a whole process); the core
        set is always applied first."""
        settings = settings or get_settings()
        sets = (CORE_MIGRATIONS, *(m for m in migrations if m != CORE_MIGRATIONS))
        namespace = Namespace.of(settings)
        clients = KafkaClients(settings.kafka)
        async with AsyncExitStack() as stack:
            pool = await create_pool(settings, role="runtime")
            stack.push_async_callback(pool.close)
            async with open_owner_pool(settings) as owner:
                await prepare_sets(settings, owner, pool, sets, "core", namespace.core_schema)
                await ensure_bound(owner or pool, settings)  # before any topic or record is written
                await prepare_sets(settings, owner, pool, sets, "read_models", namespace.read_model_schema)
            if ensure_topics:
                # the admin principal creates what is missing (topics, ACLs); any other only checks
                report = await apply_catalogue(settings, create=clients.is_admin)
                if report.errors:
                    raise InfraError("topic catalogue could not be applied: " + "; ".join(report.errors))
            log = EventLog(settings, pool, clients)
            await log.start()
            stack.push_async_callback(log.stop)
            audit = AuditTopic(clients, settings.kafka.topic_prefix)
            stack.push_async_callback(audit.stop)
            keyring = TokenKeyring(settings, pool)
            await keyring.start()
            stack.push_async_callback(keyring.stop)
            yield cls(
                settings=settings,
                namespace=namespace,
                kafka=clients,
                pool=pool,
                log=log,
                keyring=keyring,
                pseudonym_key=secret_bytes(settings, "pseudonym.key"),
                deadletter_sealer=DeadLetterSealer.from_settings(settings),
                migrations=sets,
                audit=audit,
            )

    def record_guard(self) -> RecordGuard:
        """A fresh check of consumed records (:mod:`hub.kernel.quarantine`) with this
        process's record-MAC keys."""
        return RecordGuard(self.log.mac_keys, self.pool, self.settings.core_schema)

    def quarantine(self, consumer: str) -> Quarantine:
        """The quarantine for the records ``consumer`` refuses."""
        return Quarantine(self.log, self.deadletter_sealer, consumer)

    async def migrate_schema(self, home: Home, schema: str) -> None:
        """Apply this runtime's migration sets of ``home`` to another schema (a replay into
        a fresh read-model schema), as the owner, granting the runtime role as usual."""
        async with open_pool(self.settings, role="owner", max_size=1) as owner:
            await apply_sets(owner, self.migrations, home, schema, grant_to=runtime_grantee(self.settings))
