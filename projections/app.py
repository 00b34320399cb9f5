"""The faust app of the projections (``hub project``): one :class:`faust.App` per
(topic prefix, read-model schema), configured from :class:`hub.settings.Settings`.

Layout as faust's documentation recommends for larger projects: this app module, and one
agent module per domain under :mod:`projections.agents` (incidents: dispatch + encounter
facts; referrals; people: case, consent, identity and erasure facts). The agents are
registered on the app by :func:`create_app` rather than by import-time decorators on a
global app, because one process (tests, the demo) runs apps for several schemas and topic
prefixes.

Configuration and why:

- ``id`` = the consumer group, ``<projections.consumer_group>.<prefix>.<schema>``: two
  schemas never share offsets; several workers of one schema share the partitions.
- ``store="memory://"``, no tables: every piece of state lives in PostgreSQL (the folds
  recompute components from the stored facts), so there is nothing to recover from a
  changelog and no RocksDB.
- ``web_enabled=False``: metrics are served by :mod:`hub.metrics`, not faust's web view.
- ``topic_allow_declare=False``, ``topic_disable_leader=True``: the fact topics belong to
  the topic catalogue (``hub infra up``); the app creates no topics of its own.
- ``datadir`` under ``settings.state_dir/faust``: faust wants a data directory per app.
- session / heartbeat timeouts a few seconds long, so a SIGKILLed worker's partitions are
  reassigned in seconds (faust's default is a minute).

Effectively-once does not come from faust: the agents hand each ``stream.take_events``
batch to :meth:`projections.store.ReadModelStore.apply_batch` (rows + positions in one
PostgreSQL transaction, records below the stored position skipped); see
:mod:`projections.projector` for the seek-to-stored-positions hook and the ack ordering.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import faust

from hub.log import family_topics
from hub.settings import Settings
from schemas.topics import fact_topic

if TYPE_CHECKING:
    from projections.projector import Projector

SESSION_TIMEOUT = 10.0  # seconds; the broker's group.min.session.timeout.ms is 6 s
HEARTBEAT_INTERVAL = 2.0
REBALANCE_TIMEOUT = 20.0
COMMIT_INTERVAL = 1.0  # faust's own (monitoring-only) Kafka offset commits
TAKE_WITHIN = 0.2  # seconds an agent waits to fill a batch before applying what it has


def group_id(settings: Settings, schema: str) -> str:
    """One consumer group per (topic prefix, schema): two schemas never share offsets."""
    return f"{settings.projections.consumer_group}.{settings.kafka.topic_prefix}.{schema}"


def fact_source(app: faust.App, settings: Settings, family: str) -> faust.TopicT:
    """The fact topic of ``family`` as raw bytes (envelopes are decoded and validated by
    :func:`hub.log.decode_record`, so a bad record is dead-lettered, not a crashed agent)."""
    return app.topic(
        fact_topic(settings.kafka.topic_prefix, family),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        internal=False,
    )


def create_app(settings: Settings, schema: str, projector: Projector) -> faust.App:
    """A faust app whose agents feed ``projector`` (one agent per fact topic, grouped by
    domain module). Start it with ``await app.start()`` and stop with ``await app.stop()``."""
    from projections import agents

    gid = group_id(settings, schema)
    app = faust.App(
        gid,
        broker=f"kafka://{settings.kafka.bootstrap}",
        broker_client_id=f"{settings.kafka.client_id}-projector",
        store="memory://",
        datadir=str(settings.state_dir / "faust" / gid),
        web_enabled=False,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=SESSION_TIMEOUT,
        broker_heartbeat_interval=HEARTBEAT_INTERVAL,
        broker_rebalance_timeout=REBALANCE_TIMEOUT,
        broker_commit_interval=COMMIT_INTERVAL,
        stream_buffer_maxsize=max(4 * settings.projections.batch_size, 1000),
        producer_max_request_size=1_000_000,
        autodiscover=False,
    )
    covered = agents.register_all(app, settings, projector)
    expected = set(family_topics(settings.kafka.topic_prefix))
    if covered != expected:  # every fact family has exactly one agent
        raise RuntimeError(f"projection agents cover {sorted(covered)}, expected {sorted(expected)}")
    app.on_rebalance_complete.connect(projector.on_rebalance_complete)
    return app
