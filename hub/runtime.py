"""The composition root: one place that builds a hub process's dependencies.

Usage (every command, worker, API and test that needs the log)::

    async with Runtime.open(settings) as rt:
        await rt.log.append(envelopes)

Opening creates the PostgreSQL pool, applies the core migrations (the log's index, dead
letters, seals, keys) to ``settings.core_schema``, checks that the schema's state belongs
to the connected Kafka cluster (binding it at first use; :mod:`hub.binding` — another
cluster raises :class:`~hub.binding.ClusterMismatchError`), makes sure the topic catalogue
exists, and starts the event log and the keyring; closing stops them in reverse order.
Nothing else constructs an :class:`~hub.log.EventLog` or a keyring.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from hub.binding import ensure_bound
from hub.db import create_pool, migrate
from hub.keys import secret_bytes
from hub.keystore import DeadLetterSealer, PostgresKeyring
from hub.log import EventLog
from hub.settings import Settings, get_settings

CORE_MIGRATIONS = Path(__file__).resolve().parent / "migrations" / "core"


async def migrate_core(pool: asyncpg.Pool, settings: Settings) -> list[int]:
    """Apply the log's own migrations to ``settings.core_schema``."""
    return await migrate(pool, component="core", package_dir=CORE_MIGRATIONS, schema=settings.core_schema)


@dataclass
class Runtime:
    """A started hub process: settings, the PostgreSQL pool, the event log, the person
    keyring, the pseudonym key and the dead-letter sealer."""

    settings: Settings
    pool: asyncpg.Pool
    log: EventLog
    keyring: PostgresKeyring
    pseudonym_key: bytes
    deadletter_sealer: DeadLetterSealer

    @classmethod
    @asynccontextmanager
    async def open(
        cls, settings: Settings | None = None, *, ensure_topics: bool = True
    ) -> AsyncIterator[Runtime]:
        """Start everything; stop everything on exit (also on error)."""
        settings = settings or get_settings()
        async with AsyncExitStack() as stack:
            pool = await create_pool(settings)
            stack.push_async_callback(pool.close)
            await migrate_core(pool, settings)
            await ensure_bound(pool, settings)  # before any topic is created or record appended
            if ensure_topics:
                from hub.infra.topics import ensure_topics as _ensure

                report = await _ensure(settings)
                if report.errors:
                    raise RuntimeError("topic catalogue could not be applied: " + "; ".join(report.errors))
            log = EventLog(settings, pool)
            await log.start()
            stack.push_async_callback(log.stop)
            keyring = PostgresKeyring(settings, pool)
            await keyring.start()
            stack.push_async_callback(keyring.stop)
            yield cls(
                settings=settings,
                pool=pool,
                log=log,
                keyring=keyring,
                pseudonym_key=secret_bytes(settings, "pseudonym.key"),
                deadletter_sealer=DeadLetterSealer.from_settings(settings),
            )
