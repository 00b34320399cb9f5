"""The local stack as a whole: what ``hub infra up`` brings up and what ``hub infra status``
reports, for the command group (:mod:`hub.devtools.commands.infra`) and ``hub demo``."""

from __future__ import annotations

import asyncio

from hub.devtools.infra import kafka, postgres, softhsm
from hub.kernel.keys import ensure_dev_keys
from hub.kernel.settings import Settings
from hub.kernel.topics import TopicReport, ensure_topics


async def bring_up(settings: Settings) -> tuple[kafka.KafkaStatus, postgres.PostgresStatus, TopicReport]:
    """Everything ``hub infra up`` does, in order: keys and the SoftHSM2 token (development
    only), Kafka, PostgreSQL, the topic catalogue. Idempotent."""
    if settings.is_development:
        ensure_dev_keys(settings)
        await asyncio.to_thread(softhsm.setup, settings)
    k = await kafka.up(settings)
    p = await postgres.up(settings)
    report = await ensure_topics(settings)
    return k, p, report


async def collect_status(settings: Settings) -> dict[str, object]:
    """Broker and database health as one JSON-ready mapping (probes run concurrently)."""
    k, p = await asyncio.gather(kafka.probe(settings), postgres.probe(settings))
    return {"healthy": k.healthy and p.healthy, "kafka": k.to_dict(), "postgres": p.to_dict()}
