"""Incident domain: CAD dispatch facts and on-scene encounter facts. They feed the
incident summary (response times, primary outcome, co-responder takeover), the incident
timeline and the outcome counts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import faust

from hub.settings import Settings
from projections.agents import family_agent

if TYPE_CHECKING:
    from projections.projector import Projector

FAMILIES = ("dispatch", "encounter")


def register(app: faust.App, settings: Settings, projector: Projector) -> set[str]:
    return {family_agent(app, settings, projector, f) for f in FAMILIES}
