"""Tamper evidence on the real broker: seal, then delete records with the Kafka admin API or
produce a forged record straight to a fact topic; ``hub verify`` must fail and name the offset."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from aiokafka import TopicPartition
from aiokafka.admin import RecordsToDelete

from hub.entry.api.readmodels import PostgresReadModels
from hub.kernel import metrics
from hub.kernel.kafka import KafkaClients
from hub.kernel.runtime import Runtime
from hub.kernel.seal import Sealer
from hub.kernel.verify import run_verify
from schemas.dispatch import UnitDispatched
from schemas.envelope import new_event
from tests.integration.hubcli import run_hub

T0 = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)


async def fill(rt: Runtime, n: int = 30, tag: str = "v") -> list:
    batch = [
        new_event(UnitDispatched(incident_id=f"sea:{tag}{i % 4}", at=T0 + timedelta(seconds=i)),
                  source="cad/test", record_id=f"{tag}{i}")
        for i in range(n)
    ]
    return (await rt.log.append(batch)).appended


async def test_delete_records_is_reported_as_missing_with_its_offsets(fresh_runtime) -> None:
    async with fresh_runtime() as rt:
        appended = await fill(rt)
        first = await Sealer(rt.settings, rt.pool, rt.kafka).run_once()
        assert first.records == len(appended) and first.seals
        assert (await Sealer(rt.settings, rt.pool, rt.kafka).run_once()).seals == []  # nothing new
        intact = await run_verify(rt.settings, rt.pool, rt.kafka)
        assert intact.ok, [b.describe() for b in intact.breaks]
        assert metrics.VERIFY_OK._value.get() == 1
        more = await fill(rt, 6, tag="w")  # unsealed records are fine
        assert (await run_verify(rt.settings, rt.pool, rt.kafka)).ok

        counts: dict[int, int] = {}
        for a in appended:
            counts[a.partition] = counts.get(a.partition, 0) + 1
        victim = max(counts, key=counts.__getitem__)
        topic = appended[0].topic
        admin = KafkaClients(rt.settings.kafka).admin("tamper")
        await admin.start()
        try:
            await admin.delete_records({TopicPartition(topic, victim): RecordsToDelete(before_offset=2)})
        finally:
            await admin.close()

        report = await run_verify(rt.settings, rt.pool, rt.kafka)
        assert not report.ok
        assert [(b.kind, b.topic, b.partition, b.offset, b.last_offset) for b in report.breaks] == [
            ("missing", topic, victim, 0, 1)
        ]
        assert metrics.VERIFY_OK._value.get() == 0 and metrics.VERIFY_BREAKS._value.get() == 1
        stored = await PostgresReadModels(rt.settings, rt.pool).verification()  # what the API reports
        assert stored is not None and stored["ok"] is False and stored["break_details"][0]["offset"] == 0
        assert more  # appended after sealing

        cli = await asyncio.to_thread(run_hub, rt.settings, "verify", "--json")
        assert cli.returncode == 2, cli.stderr
        out = json.loads(cli.stdout)
        assert out["ok"] is False
        assert {(b["kind"], b["partition"], b["offset"], b["last_offset"]) for b in out["breaks"]} == {
            ("missing", victim, 0, 1)
        }
        text = await asyncio.to_thread(run_hub, rt.settings, "verify")
        assert text.returncode == 2 and f"{topic}[{victim}]@0..1" in text.stderr


async def test_a_forged_record_is_reported_with_its_offset(fresh_runtime) -> None:
    async with fresh_runtime() as rt:
        appended = await fill(rt, 12)
        cli = await asyncio.to_thread(run_hub, rt.settings, "seal", "--once")
        assert cli.returncode == 0 and "seal(s) over 12 new record(s)" in cli.stdout, cli.stderr
        assert (await asyncio.to_thread(run_hub, rt.settings, "verify")).returncode == 0

        # a well-formed envelope produced straight to the fact topic, bypassing the log
        forged = new_event(UnitDispatched(incident_id="sea:v0", at=T0), source="cad/test", record_id="evil")
        producer = KafkaClients(rt.settings.kafka).producer("tamper", enable_idempotence=False)
        await producer.start()
        try:
            meta = await producer.send_and_wait(
                appended[0].topic, forged.to_bytes(), key=forged.partitionkey.encode(),
                headers=[("ce_id", forged.id.encode()), ("ce_type", forged.type.encode())],
            )
        finally:
            await producer.stop()

        report = await run_verify(rt.settings, rt.pool, rt.kafka)
        expected = [("forged", meta.partition, meta.offset)]
        assert [(b.kind, b.partition, b.offset) for b in report.breaks] == expected
        # sealing the forged record does not bless it
        await Sealer(rt.settings, rt.pool, rt.kafka).run_once()
        again = await run_verify(rt.settings, rt.pool, rt.kafka)
        assert [(b.kind, b.partition, b.offset) for b in again.breaks] == expected
        cli = await asyncio.to_thread(run_hub, rt.settings, "verify", "--json")
        assert cli.returncode == 2
        assert json.loads(cli.stdout)["breaks"][0]["offset"] == meta.offset


async def test_an_altered_seal_table_is_detected(fresh_runtime) -> None:
    async with fresh_runtime() as rt:
        await fill(rt, 10)
        made = (await Sealer(rt.settings, rt.pool, rt.kafka).run_once()).seals
        victim = made[0]
        # someone rewrites a sealed digest in PostgreSQL: the published seal still disagrees
        await rt.pool.execute(
            f"UPDATE {rt.settings.core_schema}.sealed_records SET digest = $4 "
            'WHERE topic = $1 AND "partition" = $2 AND "offset" = $3',
            victim.topic, victim.partition, victim.first_offset, b"\0" * 32,
        )
        report = await run_verify(rt.settings, rt.pool, rt.kafka)
        assert [(b.kind, b.offset) for b in report.breaks] == [("chain", victim.first_offset)]
    assert "digest in PostgreSQL was altered" in report.breaks[0].detail
