"""The projection agents, one module per domain (faust's larger-project layout).

Every agent consumes one fact topic and hands batches (``stream.take_events(batch_size,
within=TAKE_WITHIN)``) to the shared :class:`projections.projector.Projector`, which
applies them to PostgreSQL effectively once. The domains only decide which fact families
they consume: the folds recompute whole components across families (an incident's
dispatch, encounter and referral facts together), so the split is about ownership and
observability (one agent, one consumer stream per topic), not about separate state.

``take_events`` acks a batch's events only after the agent body has finished with it,
i.e. after the PostgreSQL transaction committed, so faust's Kafka offset commits never run
ahead of the stored positions. A batch that fails to apply stops the worker (its events
must not be acked past the stored positions while the worker keeps consuming).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import faust

from hub.settings import Settings
from projections.app import TAKE_WITHIN, fact_source

if TYPE_CHECKING:
    from projections.projector import Projector


def family_agent(app: faust.App, settings: Settings, projector: Projector, family: str) -> str:
    """Register the agent of one fact family; returns its topic."""
    source = fact_source(app, settings, family)

    async def project_family(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.projections.batch_size, within=TAKE_WITHIN):
            await projector.apply_events(events)

    app.agent(source, name=f"projections.{family}")(project_family)
    return source.get_topic_name()


def register_all(app: faust.App, settings: Settings, projector: Projector) -> set[str]:
    """Register every domain's agents; returns the topics they consume."""
    from projections.agents import incidents, people, referrals

    domains: list[Callable[[faust.App, Settings, Projector], set[str]]] = [
        incidents.register,
        referrals.register,
        people.register,
    ]
    topics: set[str] = set()
    for register in domains:
        mine = register(app, settings, projector)
        if mine & topics:
            raise RuntimeError(f"two domains consume {sorted(mine & topics)}")
        topics |= mine
    return topics
