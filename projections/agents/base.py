"""What every projection agent shares: the batch window, the raw fact-topic source and the
sink an agent hands its batches to (the :class:`projections.projector.Projector`).

``take_events`` acks a batch's events only after the agent body has finished with it,
i.e. after the PostgreSQL transaction committed, so faust's Kafka offset commits never run
ahead of the stored positions. A batch that fails to apply stops the worker (its events
must not be acked past the stored positions while the worker keeps consuming).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, cast

import faust

from hub.kernel.settings import Settings
from schemas.topics import fact_topic

#: seconds between looks at an agent's batch buffer. Short, so that an idle projector applies
#: a new record at once; a busy one still applies large batches, because records queue up
#: while a batch is being applied and the next look takes all of them (up to
#: ``projections.batch_size``), and the projector applies the batches every agent handed
#: over meanwhile as one transaction (:meth:`projections.projector.Projector.apply_events`).
TAKE_WITHIN = 0.02


class BatchSink(Protocol):
    """Receives each ``take_events`` batch; raising stops the worker."""

    async def apply_events(self, events: Sequence[Any]) -> None: ...


def fact_source(app: faust.App, settings: Settings, family: str) -> faust.TopicT:
    """The fact topic of ``family`` as raw bytes (envelopes are decoded and validated by
    :func:`hub.kernel.log.decode_record`, so a bad record is dead-lettered, not a crashed agent)."""
    return app.topic(
        fact_topic(settings.kafka.topic_prefix, family),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        internal=False,
    )


def family_agent(app: faust.App, settings: Settings, sink: BatchSink, family: str) -> str:
    """Register the agent of one fact family; returns its topic."""
    source = fact_source(app, settings, family)

    async def project_family(stream: faust.StreamT) -> None:
        # iterate the generator inline: a local reference would keep it (and the events it has
        # not acked) alive in the traceback of a failed batch, and faust's stop would wait for them
        stream_ = cast(faust.Stream, stream)  # agents get a faust.Stream; StreamT lacks take_events
        async for events in stream_.take_events(settings.projections.batch_size, within=TAKE_WITHIN):
            await sink.apply_events(events)

    app.agent(source, name=f"projections.{family}")(project_family)
    return source.get_topic_name()
