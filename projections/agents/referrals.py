"""Referral domain: referral requested / delivered / accepted / completed facts. They feed
the referral funnel (time in each stage) and "referral made" / "connected to services"."""

from __future__ import annotations

from typing import TYPE_CHECKING

import faust

from hub.settings import Settings
from projections.agents import family_agent

if TYPE_CHECKING:
    from projections.projector import Projector

FAMILIES = ("referral",)


def register(app: faust.App, settings: Settings, projector: Projector) -> set[str]:
    return {family_agent(app, settings, projector, f) for f in FAMILIES}
