"""Simulating an appender that crashed after Kafka acknowledged and before the index commit."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka.structs import RecordMetadata

from hub.kernel.kafka import KafkaClients
from hub.kernel.keys import record_mac_keys
from hub.kernel.log import record_headers, timestamp_ms, topic_for
from hub.kernel.settings import Settings
from schemas.envelope import Envelope


async def produce_as_crashed_appender(settings: Settings, envelopes: list[Envelope]) -> list[RecordMetadata]:
    """Write envelopes to their fact topics exactly as :meth:`hub.kernel.log.EventLog.append` does
    (topic, key, value, ``ce_id``/``ce_type`` headers, the record MAC, timestamp) but leave
    the event index untouched: what a process that died before its PostgreSQL commit
    leaves behind."""
    keys = record_mac_keys(settings)
    producer = KafkaClients(settings.kafka).producer("crash")  # acks=all, idempotent
    await producer.start()
    try:
        now = datetime.now(UTC)
        sent = []
        for env in envelopes:
            topic = topic_for(settings.kafka.topic_prefix, env)
            key, value = env.partitionkey.encode(), env.to_bytes()
            sent.append(await producer.send_and_wait(
                topic, value, key=key, headers=keys.sign(topic, key, value, record_headers(env)),
                timestamp_ms=timestamp_ms(env, now),
            ))
        return sent
    finally:
        await producer.stop()
