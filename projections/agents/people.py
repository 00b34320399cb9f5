"""People domain: case-system facts (service enrolments), consents, identity link /
unlink, and erasure. They feed person clusters, person timelines, repeat encounters and
the "3+ contacts enrolled in services" share; an unlink recomputes the affected timelines
and counts (the folds work on components, see :mod:`projections.fold`)."""

from __future__ import annotations

import faust

from hub.kernel.settings import Settings
from projections.agents.base import BatchSink, family_agent

FAMILIES = ("case", "consent", "identity", "erasure")


def register(app: faust.App, settings: Settings, sink: BatchSink) -> set[str]:
    return {family_agent(app, settings, sink, f) for f in FAMILIES}
