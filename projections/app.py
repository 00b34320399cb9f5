"""The faust app of the projections (``hub project``): one :class:`faust.App` per
(topic prefix, read-model schema), configured from :class:`hub.kernel.settings.Settings`.

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
- ``web_enabled=False``: metrics are served by :mod:`hub.kernel.metrics`, not faust's web view.
- ``topic_allow_declare=False``, ``topic_disable_leader=True``: the fact topics belong to
  the topic catalogue (``hub infra up``); the app creates no topics of its own.
- ``datadir`` under ``settings.state_dir/faust``: faust wants a data directory per app.
- ``stream_wait_empty=False``: stopping (and a rebalance) does not wait for the acks of
  events in flight. A batch that failed is never acked, and faust's ``wait_empty`` waited
  for it forever — ``hub project`` hung after a PostgreSQL restart, deaf to SIGTERM (issue
  13, finding 3). Nothing depends on the wait: positions live in PostgreSQL, a batch
  commits whole or not at all, and a batch re-delivered to another worker is skipped below
  the stored position.
- session / heartbeat timeouts a few seconds long, so a SIGKILLed worker's partitions are
  reassigned in seconds (faust's default is a minute).

Effectively-once does not come from faust: the agents hand each ``stream.take_events``
batch to :meth:`projections.store.ReadModelStore.apply_batch` (rows + positions in one
PostgreSQL transaction, records below the stored position skipped); see
:mod:`projections.projector` for the seek-to-stored-positions hook and the ack ordering.
"""

from __future__ import annotations

from typing import Any, Protocol

import faust

from hub.kernel.kafka import KafkaClients
from hub.kernel.log import family_topics
from hub.kernel.settings import Settings
from projections.agents import register_all
from projections.agents.base import BatchSink

SESSION_TIMEOUT = 10.0  # seconds; the broker's group.min.session.timeout.ms is 6 s
HEARTBEAT_INTERVAL = 2.0
REBALANCE_TIMEOUT = 20.0
COMMIT_INTERVAL = 1.0  # faust's own (monitoring-only) Kafka offset commits


class ProjectorPort(BatchSink, Protocol):
    """What the app needs of the projector: batches, and the hook that moves the group's
    offsets to the stored positions after every assignment."""

    async def on_rebalance_complete(self, app: faust.App, **_: Any) -> None: ...


def group_id(settings: Settings, schema: str) -> str:
    """One consumer group per (topic prefix, schema): two schemas never share offsets."""
    return f"{settings.projections.consumer_group}.{settings.kafka.topic_prefix}.{schema}"


def create_app(settings: Settings, schema: str, projector: ProjectorPort, clients: KafkaClients) -> faust.App:
    """A faust app whose agents feed ``projector`` (one agent per fact topic, grouped by
    domain module). Start it with ``await app.start()`` and stop with ``await app.stop()``."""
    gid = group_id(settings, schema)
    app = faust.App(
        gid,
        **clients.faust_options("projector"),
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
        stream_wait_empty=False,
    )
    covered = register_all(app, settings, projector)
    expected = set(family_topics(settings.kafka.topic_prefix))
    if covered != expected:  # every fact family has exactly one agent
        raise RuntimeError(f"projection agents cover {sorted(covered)}, expected {sorted(expected)}")
    # faust awaits a coroutine receiver; its signal stub expects a keyword-only ``signal``
    app.on_rebalance_complete.connect(projector.on_rebalance_complete)  # type: ignore[arg-type]  # see above
    return app
