"""Regression (reproduced defect): a key-store timeout while a case contact's note was being
sealed dead-lettered the *valid* record and blocked the event loop for up to 30 s, because
the "pure" case mapper called the keyring synchronously. Now the runner resolves the
batch's keys before mapping (awaited, bounded): with the key store unavailable — its table
locked by another connection, so every statement on it times out — the record is not
dead-lettered, the cursor does not advance, the event loop keeps running, and after the
outage the record is appended exactly once with its note sealed. The case webhook answers
503 + Retry-After meanwhile and accepts the sender's retry."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import asyncpg

from connectors.cases.mapping import CaseMapper, case_record
from connectors.cases.webhook import signed_headers, webhook_app
from connectors.core.backoff import Backoff
from connectors.core.http import RETRY_AFTER_S, serve
from connectors.core.records import Batch
from connectors.core.runner import DeadLetterSink, SourceRunner
from connectors.core.state import PostgresCursorStore, PostgresDeliveryStore
from hub.kernel import metrics
from hub.kernel.crypto import unseal
from hub.kernel.db import dsn
from hub.kernel.identity import pseudonymize
from hub.kernel.keystore import TokenKeyring
from hub.kernel.runtime import Runtime
from schemas.topics import fact_topic
from tests.integration.waiting import wait_for

NOTE = "talked about the shelter waitlist"
TIMEOUT = 1.0  # the key store's bound in these tests
MAX_LOOP_GAP = 0.5  # the event loop never stalls this long (a synchronous look-up would: TIMEOUT)


def contact(tag: str) -> dict[str, Any]:
    return {
        "record_id": f"contact-{tag}",
        "record_type": "contact_logged",
        "case_id": f"case-{tag}",
        "person": {"system": "mpi:county", "id": f"MPI-{tag}"},
        "occurred_at": "2024-03-02T10:00:00+00:00",
        "version": 1,
        "note": NOTE,
    }


class OnePageSource:
    """A case source serving one page (cursor None → "page-1"), then nothing new."""

    def __init__(self, name: str, rows: list[dict[str, Any]]) -> None:
        self.name = name
        self.rows = rows
        self.reads = 0

    async def read(self, cursor: Any | None) -> Batch:
        self.reads += 1
        if cursor is not None:
            return Batch([], cursor=cursor)
        rows = enumerate(self.rows)
        return Batch([case_record(r, f"{self.name}@{i}", json.dumps(r).encode()) for i, r in rows], "page-1")

    async def close(self) -> None:
        pass


@asynccontextmanager
async def key_store_locked(rt: Runtime) -> AsyncIterator[None]:
    """The key store unavailable: another connection holds an exclusive lock on
    ``person_keys`` until the block ends, so every statement on it waits (and times out)."""
    conn = await asyncpg.connect(dsn(rt.settings))
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.execute(f"LOCK TABLE {rt.settings.core_schema}.person_keys IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            await tx.rollback()
    finally:
        await conn.close()


async def dead_letters_of(rt: Runtime, source: str) -> int:
    sql = f"SELECT count(*) FROM {rt.settings.core_schema}.deadletters WHERE source = $1"
    return int(await rt.pool.fetchval(sql, source))


async def facts_of(rt: Runtime, source: str) -> list[Any]:
    out = []
    async for ev in rt.log.read([fact_topic(rt.settings.kafka.topic_prefix, "case")]):
        if ev.envelope.source == source:
            out.append(ev.envelope)
    return out


async def test_a_key_store_outage_backs_the_case_runner_off_and_appends_the_record_once_after(
    rt: Runtime,
) -> None:
    tag = uuid.uuid4().hex[:10]
    name = f"it-keys-{tag}"
    source_name = f"cases/{name}"
    keyring = TokenKeyring(rt.settings, rt.pool, timeout=TIMEOUT)  # its own, empty cache
    mapper = CaseMapper(source_name, rt.pseudonym_key, keyring)
    cursors = PostgresCursorStore(rt.pool, rt.settings.core_schema)
    runner = SourceRunner(
        OnePageSource(name, [contact(tag)]),
        mapper,
        rt.log,
        cursors,
        DeadLetterSink(source_name, "cases", rt.deadletter_sealer),
        interval=0.05,
        backoff=Backoff(base=0.05, cap=0.2),
    )
    await keyring.start()
    try:
        async with key_store_locked(rt):
            # the event loop keeps running while the key store does not answer
            gaps: list[float] = []

            async def ticker() -> None:
                last = time.monotonic()
                while True:
                    await asyncio.sleep(0.02)
                    now = time.monotonic()
                    gaps.append(now - last)
                    last = now

            ticking = asyncio.create_task(ticker())
            await runner.start()
            try:
                await wait_for(
                    lambda: _true(runner.failures >= 3 or runner.totals.dead_lettered > 0),
                    what="three backed-off attempts",
                )
            finally:
                ticking.cancel()
            assert runner.totals.dead_lettered == 0, "the valid record was dead-lettered"
            assert max(gaps) < MAX_LOOP_GAP, f"the event loop was blocked for {max(gaps):.2f}s"
            assert metrics.SOURCE_UP.labels(name)._value.get() == 0
            assert await cursors.load(name) is None  # the cursor did not advance
            assert await dead_letters_of(rt, source_name) == 0  # the valid record is not dead-lettered
            assert runner.totals.read == 0
        # the outage is over: the same record goes in, once
        await wait_for(lambda: _saved(cursors, name), what="the page committed after the outage")
    finally:
        await runner.stop()
        await keyring.stop()

    assert runner.totals.appended == 1 and runner.totals.dead_lettered == 0 and runner.totals.balanced()
    assert await dead_letters_of(rt, source_name) == 0
    (event,) = await facts_of(rt, source_name)
    person = pseudonymize(rt.pseudonym_key, "mpi:county", f"MPI-{tag}")
    assert event.data["person"] == person
    note = event.payload().note  # type: ignore[attr-defined]
    assert note is not None and note.kid == rt.keyring.key_id(person)
    keys = await rt.keyring.resolve_ids([note.kid])
    assert unseal(keys, note) == {"note": NOTE}
    assert NOTE not in event.model_dump_json() and f"MPI-{tag}" not in event.model_dump_json()


async def test_the_case_webhook_answers_503_while_the_key_store_is_down_then_accepts_the_retry(
    rt: Runtime,
) -> None:
    tag = uuid.uuid4().hex[:10]
    receiver = f"it-keys-hook-{tag}"
    source_name = f"cases/{receiver}"
    key = b"k" * 32
    keyring = TokenKeyring(rt.settings, rt.pool, timeout=TIMEOUT)
    app = webhook_app(
        receiver=receiver,
        key=key,
        mapper=CaseMapper(source_name, rt.pseudonym_key, keyring),
        log_port=rt.log,
        sink=DeadLetterSink(source_name, "cases", rt.deadletter_sealer),
        deliveries=PostgresDeliveryStore(rt.pool, rt.settings.core_schema),
    )
    body = json.dumps(contact(tag)).encode()
    await keyring.start()
    server, port = await serve(app)
    url = f"http://127.0.0.1:{port}/webhooks/cases"
    try:
        async with aiohttp.ClientSession() as http:
            async with key_store_locked(rt):
                async with http.post(url, data=body, headers=signed_headers(key, "d-1", body)) as resp:
                    assert resp.status == 503, await resp.text()
                    assert resp.headers["Retry-After"] == str(RETRY_AFTER_S)
                assert await dead_letters_of(rt, source_name) == 0
            async with http.post(url, data=body, headers=signed_headers(key, "d-1", body)) as resp:
                assert resp.status == 202, await resp.text()
                answer = await resp.json()
    finally:
        await server.cleanup()
        await keyring.stop()
    assert (answer["appended"], answer["dead_lettered"], answer["duplicate"]) == (1, 0, False)
    (event,) = await facts_of(rt, source_name)
    assert event.payload().note is not None  # type: ignore[attr-defined]


async def _true(value: bool) -> bool:
    return value


async def _saved(cursors: PostgresCursorStore, name: str) -> bool:
    return await cursors.load(name) == "page-1"
