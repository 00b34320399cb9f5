"""The runtime of one hub process: the container that the composition root
(:mod:`hub.bootstrap`) fills and every command, worker, API and test uses.

Usage::

    async with open_runtime(settings) as rt:        # hub.bootstrap: every migration set
        await rt.log.append(envelopes)

Opening, in order: configures logging (``settings.log_level``), builds the one Kafka client
factory (:class:`~hub.kernel.kafka.KafkaClients`: the only place connection security is
applied), creates the PostgreSQL pool, applies every registered migration set to the
namespace's schemas (core sets to ``<prefix>_core``, read-model sets to
``postgres.schema``), checks that the core schema's state belongs to the connected Kafka
cluster (binding it at first use; :mod:`hub.kernel.binding` — another cluster raises
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

from hub.kernel.binding import ensure_bound
from hub.kernel.db import CORE_MIGRATIONS, Home, MigrationSet, apply_sets, create_pool
from hub.kernel.errors import InfraError
from hub.kernel.kafka import KafkaClients
from hub.kernel.keys import secret_bytes
from hub.kernel.keystore import DeadLetterSealer, TokenKeyring
from hub.kernel.log import EventLog
from hub.kernel.logs import configure_logging
from hub.kernel.namespace import Namespace
from hub.kernel.settings import Settings, get_settings
from hub.kernel.topics import ensure_topics as apply_catalogue


@dataclass
class Runtime:
    """A started hub process: settings and their namespace, the Kafka client factory, the
    PostgreSQL pool, the event log, the person keyring, the pseudonym key, the dead-letter
    sealer and the migration registry it was opened with."""

    settings: Settings
    namespace: Namespace
    kafka: KafkaClients
    pool: asyncpg.Pool
    log: EventLog
    keyring: TokenKeyring
    pseudonym_key: bytes
    deadletter_sealer: DeadLetterSealer
    migrations: tuple[MigrationSet, ...]

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
        configure_logging(settings)
        sets = (CORE_MIGRATIONS, *(m for m in migrations if m != CORE_MIGRATIONS))
        namespace = Namespace.of(settings)
        clients = KafkaClients(settings.kafka)
        async with AsyncExitStack() as stack:
            pool = await create_pool(settings)
            stack.push_async_callback(pool.close)
            await apply_sets(pool, sets, "core", namespace.core_schema)
            await ensure_bound(pool, settings)  # before any topic is created or record appended
            await apply_sets(pool, sets, "read_models", namespace.read_model_schema)
            if ensure_topics:
                report = await apply_catalogue(settings)
                if report.errors:
                    raise InfraError("topic catalogue could not be applied: " + "; ".join(report.errors))
            log = EventLog(settings, pool, clients)
            await log.start()
            stack.push_async_callback(log.stop)
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
            )

    async def migrate_schema(self, home: Home, schema: str) -> None:
        """Apply this runtime's migration sets of ``home`` to another schema (a replay into
        a fresh read-model schema)."""
        await apply_sets(self.pool, self.migrations, home, schema)
