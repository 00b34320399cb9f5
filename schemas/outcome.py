"""The outcome topic's record: one de-identified, small-cell-suppressed cell for analysts.
:mod:`projections.outcomes` builds them from the read models."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class OutcomeRecord(BaseModel):
    """One de-identified outcome cell for analysts (the value of the outcome topic).

    ``value`` is null when suppressed (CMS small-cell rule: 1 to 10, plus complementary
    cells); ``share`` is ``value / calls`` of the same period and area, null when either
    is suppressed or there were no calls."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: str = Field(description="calls, with_outcome, no_outcome, outcome.<primary>, referral_made, "
                                     "connected_to_services or co_responder")
    segment: Literal["behavioral_health"] = "behavioral_health"
    period_kind: Literal["month"] = "month"
    period: str = Field(description="YYYY-MM in the agency's time zone")
    period_start: date
    area_kind: Literal["all", "precinct", "district"]
    area: str = Field(description="area name; 'all' for the whole jurisdiction; 'unknown' when not reported")
    value: int | None = Field(description="count of behavioral-health calls; null when suppressed")
    suppressed: bool
    share: float | None = Field(description="value / calls in the same period and area, rounded to 4 places")
    small_cell_max: int = 10

    def key(self) -> str:
        return f"{self.metric}|{self.period}|{self.area_kind}:{self.area}"
