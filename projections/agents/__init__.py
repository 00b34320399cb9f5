"""The projection agents, one module per domain (faust's larger-project layout).

Every agent consumes one fact topic and hands batches (``stream.take_events(batch_size,
within=TAKE_WITHIN)``) to a :class:`~projections.agents.base.BatchSink` (the projector),
which applies them to PostgreSQL effectively once. The domains only decide which fact
families they consume: the folds recompute whole components across families (an
incident's dispatch, encounter and referral facts together), so the split is about
ownership and observability (one agent, one consumer stream per topic), not about
separate state.
"""

from __future__ import annotations

import faust

from hub.kernel.settings import Settings
from projections.agents import incidents, people, referrals
from projections.agents.base import BatchSink

DOMAINS = (incidents, referrals, people)


def register_all(app: faust.App, settings: Settings, sink: BatchSink) -> set[str]:
    """Register every domain's agents; returns the topics they consume."""
    topics: set[str] = set()
    for domain in DOMAINS:
        mine = domain.register(app, settings, sink)
        if mine & topics:
            raise RuntimeError(f"two domains consume {sorted(mine & topics)}")
        topics |= mine
    return topics
