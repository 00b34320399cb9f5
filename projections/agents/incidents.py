"""Incident domain: CAD dispatch facts and on-scene encounter facts. They feed the
incident summary (response times, primary outcome, co-responder takeover), the incident
timeline and the outcome counts."""

from __future__ import annotations

import faust

from hub.kernel.settings import Settings
from projections.agents.base import BatchSink, family_agent

FAMILIES = ("dispatch", "encounter")


def register(app: faust.App, settings: Settings, sink: BatchSink) -> set[str]:
    return {family_agent(app, settings, sink, f) for f in FAMILIES}
