"""Referral domain: referral requested / delivered / accepted / completed facts. They feed
the referral funnel (time in each stage) and "referral made" / "connected to services"."""

from __future__ import annotations

import faust

from hub.kernel.settings import Settings
from projections.agents.base import BatchSink, family_agent

FAMILIES = ("referral",)


def register(app: faust.App, settings: Settings, sink: BatchSink) -> set[str]:
    return {family_agent(app, settings, sink, f) for f in FAMILIES}
