"""``python -m bench``: event-log throughput against raw aiokafka on the local broker.

Append: :meth:`hub.log.EventLog.append` (exactly-once index in PostgreSQL + idempotent
producer, acks=all) vs a raw idempotent aiokafka producer sending the same records.
Replay: :meth:`hub.log.EventLog.replay` (decode + upcast + merge) vs a raw ``getmany`` loop
over the same topic. Same process, same record count; runs on its own topic prefix and
PostgreSQL schema, removed afterwards. Prints a table and writes ``var/bench/latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
import uuid
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from hub.db import open_pool
from hub.kafka_io import scan_records
from hub.log import record_headers
from hub.runtime import Runtime
from hub.settings import Settings, get_settings
from schemas.dispatch import CallReceived
from schemas.envelope import Envelope, new_event
from schemas.topics import fact_topic

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def envelopes(n: int, tag: str) -> list[Envelope]:
    return [
        new_event(
            CallReceived(incident_id=f"sea:{tag}-{i % 5000}", agency="sea", cad_number=str(i),
                         at=T0 + timedelta(seconds=i), source_timezone="UTC", category="welfare",
                         behavioral_health=i % 3 == 0),
            source=f"bench/{tag}", record_id=str(i), recorded_at=T0 + timedelta(seconds=i),
        )
        for i in range(n)
    ]


async def bench(settings: Settings, n: int, batch: int) -> dict:
    prefix = settings.kafka.topic_prefix
    topic = fact_topic(prefix, "dispatch")
    raw_topic = f"{prefix}.bench.raw"
    results: dict = {"records": n, "batch": batch}
    async with Runtime.open(settings) as rt:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
        await admin.start()
        from aiokafka.admin import NewTopic

        await admin.create_topics([NewTopic(raw_topic, settings.kafka.partitions, 1)])
        await admin.close()
        evs = envelopes(n, "a")
        await rt.log.append(envelopes(10, "warm"))  # connections, metadata

        t = time.perf_counter()
        for i in range(0, n, batch):
            await rt.log.append(evs[i : i + batch])
        results["append_log_s"] = time.perf_counter() - t

        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, acks="all",
                                    enable_idempotence=True, max_batch_size=512 * 1024, linger_ms=5)
        await producer.start()
        try:
            await producer.send_and_wait(raw_topic, b"warm")
            raw = [(e.to_bytes(), e.partitionkey.encode(), record_headers(e)) for e in envelopes(n, "b")]
            t = time.perf_counter()
            for i in range(0, n, batch):
                futs = [await producer.send(raw_topic, value=v, key=k, headers=h)
                        for v, k, h in raw[i : i + batch]]
                await asyncio.gather(*futs)
            results["append_raw_s"] = time.perf_counter() - t
        finally:
            await producer.stop()

        t = time.perf_counter()
        count = 0
        async for _ in rt.log.replay(families=["dispatch"]):
            count += 1
        results["replay_log_s"] = time.perf_counter() - t
        results["replay_log_records"] = count

        t = time.perf_counter()
        raw_count = 0
        async for _ in scan_records(settings.kafka.bootstrap, [topic], client_id="bench-raw"):
            raw_count += 1
        results["replay_raw_s"] = time.perf_counter() - t
        results["replay_raw_records"] = raw_count
    return results


async def cleanup(settings: Settings) -> None:
    prefix = settings.kafka.topic_prefix
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(prefix + ".")]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()
    async with open_pool(settings, max_size=1) as pool:
        await pool.execute(f'DROP SCHEMA IF EXISTS "{settings.core_schema}" CASCADE')


def table(r: dict) -> str:
    n = r["records"]
    rows = [
        ("append", n / r["append_log_s"], n / r["append_raw_s"]),
        ("replay", r["replay_log_records"] / r["replay_log_s"], r["replay_raw_records"] / r["replay_raw_s"]),
    ]
    out = [f"{'operation':<10}{'EventLog rec/s':>16}{'raw aiokafka rec/s':>20}{'ratio':>8}"]
    for name, ours, raw in rows:
        out.append(f"{name:<10}{ours:>16,.0f}{raw:>20,.0f}{ours / raw:>8.2f}")
        r[f"{name}_ratio"] = ours / raw
        r[f"{name}_log_rps"], r[f"{name}_raw_rps"] = ours, raw
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100000)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    base = get_settings()
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    settings = base.model_copy(update={"kafka": base.kafka.model_copy(update={"topic_prefix": prefix})})

    async def run() -> dict:
        try:
            return await bench(settings, args.records, args.batch)
        finally:
            await cleanup(settings)

    results = asyncio.run(run())
    print(f"{args.records} records, batches of {args.batch}, broker {settings.kafka.bootstrap}")
    print(table(results))
    results |= {"at": datetime.now(UTC).isoformat(), "python": platform.python_version()}
    out = settings.state_dir / "bench" / "latest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
