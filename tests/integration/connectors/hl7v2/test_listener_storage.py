"""Junk bytes sent to the MLLP listener do not become permanent storage: against the real
log (Kafka dead-letter topic + PostgreSQL ``deadletters``), 1 MiB of junk on a connection
leaves one dead letter of a few KiB and the connection is closed (it used to leave one
sealed dead letter per 64 KiB read, ~3.8x the junk across Kafka and PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from connectors.hl7v2.listener import JUNK_SAMPLE, MllpListener
from connectors.referrals.worker import WorkerDeps
from hub.bootstrap import open_runtime
from hub.kernel.settings import Settings

pytestmark = pytest.mark.integration

JUNK = 1 << 20


async def test_a_mib_of_junk_leaves_a_few_kib_of_dead_letter(settings: Settings, topics: object) -> None:
    async with open_runtime(settings) as rt:
        listener = MllpListener(WorkerDeps.from_runtime(rt), host="127.0.0.1", port=0)
        await listener.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            host, port = writer.get_extra_info("sockname")[:2]
            try:
                writer.write(b"\x00junk" * (JUNK // 5))
                await writer.drain()
            except ConnectionError:
                pass  # the listener closed the connection while we were writing
            with contextlib.suppress(ConnectionResetError):  # closed by the listener
                assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
        finally:
            await listener.stop()
        rows = await rt.pool.fetch(
            f"SELECT reason, pg_column_size(d.*) AS bytes FROM {rt.settings.core_schema}.deadletters d"
            " WHERE source = 'ehr/mllp' AND record_ref = $1",
            f"{host}:{port}#junk",
        )
    assert len(rows) == 1, rows
    assert f"({JUNK_SAMPLE} of" in rows[0]["reason"]
    assert rows[0]["bytes"] < 4 * JUNK_SAMPLE < JUNK / 50
