"""People domain: case-system facts (service enrolments), consents, identity link /
unlink, and erasure. They feed person clusters, person timelines, repeat encounters and
the "3+ contacts enrolled in services" share; an unlink recomputes the affected timelines
and counts (the folds work on components, see :mod:`projections.fold`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import faust

from hub.settings import Settings
from projections.agents import family_agent

if TYPE_CHECKING:
    from projections.projector import Projector

FAMILIES = ("case", "consent", "identity", "erasure")


def register(app: faust.App, settings: Settings, projector: Projector) -> set[str]:
    return {family_agent(app, settings, projector, f) for f in FAMILIES}
