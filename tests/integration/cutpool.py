"""A PostgreSQL pool whose connections run through a :class:`~hub.devtools.faults.tcpcut.CutProxy`,
and an event log on it: a test arms a cut at a chosen statement (the event index's
``INSERT``, issued right after Kafka acknowledged an append) and the connection dies there,
the way a crashed PostgreSQL connection does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from hub.devtools.faults.tcpcut import CutProxy
from hub.kernel.db import dsn
from hub.kernel.log import EVENTS, EventLog
from hub.kernel.runtime import Runtime


def index_statement(schema: str) -> bytes:
    """The SQL of :func:`hub.kernel.log.produce_then_index`'s index statement (the first
    statement after Kafka acknowledged an append; it writes the ids with their offsets)."""
    return EVENTS.window_marker(schema)


@dataclass
class CutLog:
    proxy: CutProxy
    pool: asyncpg.Pool
    log: EventLog


@asynccontextmanager
async def cut_log(rt: Runtime) -> AsyncIterator[CutLog]:
    """An :class:`EventLog` (started) on a runtime-role pool through a fresh :class:`CutProxy`."""
    pg = rt.settings.postgres
    proxy = CutProxy(pg.host, pg.port)
    await proxy.start()
    settings = rt.settings.model_copy(update={"postgres": pg.model_copy(update={"port": proxy.port})})
    # in clear (no TLS) between the hub and the proxy, and without asyncpg's statement cache
    # (a cached statement is executed by name), so that the proxy reads every statement's SQL
    pool = await asyncpg.create_pool(
        dsn(settings, "runtime"), min_size=1, max_size=4, ssl=False, statement_cache_size=0
    )
    assert pool is not None
    log = EventLog(rt.settings, pool, rt.kafka)
    await log.start()
    try:
        yield CutLog(proxy, pool, log)
    finally:
        await log.stop()
        await pool.close()
        await proxy.stop()
