"""The outcome topic's record: one de-identified, small-cell-suppressed cell for analysts.
:mod:`projections.outcomes` builds them from the read models."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Primary outcomes, most severe first: one per call (the more severe of the CAD disposition's
# and the co-responder's on-scene outcome). "other": unable to locate, cancelled,
# administrative (process codes), unknown.
PRIMARY_OUTCOMES = (
    "arrest_or_citation",
    "involuntary_hold",
    "emergency_department",
    "voluntary_transport",
    "no_enforcement",
    "other",
)
#: hub outcome (:data:`schemas.base.Outcome`) -> primary outcome
PRIMARY_OF = {
    "arrest": "arrest_or_citation",
    "citation": "arrest_or_citation",
    "involuntary_hold": "involuntary_hold",
    "emergency_department": "emergency_department",
    "voluntary_transport": "voluntary_transport",
    "no_enforcement": "no_enforcement",
    "referral": "no_enforcement",
    "unable_to_locate": "other",
    "cancelled": "other",
    "administrative": "other",
    "unknown": "other",
}
#: the published flags of a call
FLAG_METRICS = ("referral_made", "connected_to_services", "co_responder")
#: the published time statistics
TIME_METRICS = ("response_seconds", "time_on_scene_seconds", "officer_time_returned_seconds")
#: every metric a vocabulary can declare its sources cannot measure (``not_measured``)
MEASURABLE_METRICS = (
    *(f"outcome.{o}" for o in PRIMARY_OUTCOMES),
    *FLAG_METRICS,
    *TIME_METRICS,
    "repeat_three_plus_enrolled",
)


class OutcomeRecord(BaseModel):
    """One de-identified outcome cell for analysts (the value of the outcome topic).

    ``value`` is null when suppressed (CMS small-cell rule: 1 to 10, plus complementary
    cells) or not measured (``measured`` false, ``reason`` says why: the sources cannot
    express it — never published as 0); ``share`` is ``value / calls`` of the same period
    and area, null when either is withheld or there were no calls. ``vocabulary`` names the
    vocabularies (``name@version``) that gave the source's codes their meaning."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: str = Field(description="calls, with_outcome, no_outcome, outcome.<primary>, referral_made, "
                                     "connected_to_services, co_responder, all_calls (calls for service of "
                                     "every kind, behavioral-health or not), or a county metric: custom.<id> "
                                     "(its numerator) and custom.<id>.denominator")
    segment: Literal["behavioral_health"] = "behavioral_health"
    period_kind: Literal["month"] = "month"
    period: str = Field(description="YYYY-MM in the agency's time zone")
    period_start: date
    area_kind: Literal["all", "precinct", "district", "sector", "beat"] = Field(
        description="all (the jurisdiction), or the grain of the area as the feed publishes it: beat within "
        "sector within precinct (Seattle), beat within district (New Orleans), district (San Francisco)"
    )
    area: str = Field(description="area name; 'all' for the whole jurisdiction; 'unknown' when not reported")
    value: int | None = Field(
        description="count of behavioral-health calls; null when suppressed or not measured"
    )
    suppressed: bool
    measured: bool = Field(True, description="false: the sources cannot express this metric (value null)")
    reason: str | None = Field(None, description="why the metric is not measured")
    vocabulary: str | None = Field(
        None, description="name@version of the vocabularies applied, comma-separated"
    )
    release: str | None = Field(
        None, description="the release that published this cell: YYYY-MM.r<seq> (a month is released "
        "once closed; a correction is a new release of the whole month)"
    )
    share: float | None = Field(description="value / calls in the same period and area (custom.<id>: value "
                                "/ custom.<id>.denominator), rounded to 4 places")
    rate_per_1000_calls: float | None = Field(
        None, description="value per 1,000 calls for service (all_calls) of the same period and area, one "
        "decimal; null when the value or all_calls is withheld"
    )
    rate_per_1000_residents: float | None = Field(
        None, description="value per 1,000 residents of the area (the county's population table), one "
        "decimal; null when the value is withheld or the area has no population"
    )
    small_cell_max: int = 10

    def key(self) -> str:
        return f"{self.metric}|{self.period}|{self.area_kind}:{self.area}"
