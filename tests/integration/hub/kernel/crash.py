"""Simulating an appender that crashed after Kafka acknowledged and before the index commit."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from hub.kernel.log import record_headers, timestamp_ms, topic_for
from hub.kernel.settings import Settings
from schemas.envelope import Envelope


async def produce_as_crashed_appender(settings: Settings, envelopes: list[Envelope]) -> list[RecordMetadata]:
    """Write envelopes to their fact topics exactly as :meth:`hub.kernel.log.EventLog.append` does
    (topic, key, value, ``ce_id``/``ce_type`` headers, timestamp) but leave the event index
    untouched: what a process that died before its PostgreSQL commit leaves behind."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        now = datetime.now(UTC)
        return [
            await producer.send_and_wait(
                topic_for(settings.kafka.topic_prefix, env), env.to_bytes(),
                key=env.partitionkey.encode(), headers=record_headers(env),
                timestamp_ms=timestamp_ms(env, now),
            )
            for env in envelopes
        ]
    finally:
        await producer.stop()
