"""The parameters of the folds (taken from :class:`hub.kernel.settings.ProjectionSettings`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from zoneinfo import ZoneInfo

from hub.kernel.settings import Settings
from hub.kernel.vocabulary import VocabularySet, load_vocabularies


@dataclass(frozen=True)
class FoldConfig:
    """``connected_window``: a referral completed or a service enrolled within this time
    after an encounter counts as "connected to services". ``repeat_window``: the sliding
    window for repeat encounters. ``timezone``: the agency's zone, which decides which
    day / week / month an incident falls in. ``vocabularies``: what the source's words mean
    (:mod:`hub.kernel.vocabulary`), applied to every fact of every fold — so changing them
    and re-projecting reclassifies history."""

    connected_window: timedelta = timedelta(days=30)
    repeat_window: timedelta = timedelta(days=365)
    timezone: str = "America/Los_Angeles"
    vocabularies: VocabularySet = field(default_factory=load_vocabularies, hash=False)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def from_settings(cls, settings: Settings) -> FoldConfig:
        p = settings.projections
        return cls(
            connected_window=timedelta(days=p.connected_window_days),
            repeat_window=timedelta(days=p.repeat_window_days),
            timezone=settings.agency_timezone,
            vocabularies=load_vocabularies(p.vocabularies),
        )
