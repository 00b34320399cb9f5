"""The bundled demo's headline, purely: the seeded county model (the demo's seed, days and
start) through the hub's mapping code and the projections' folds and report tables —
no services. Issue 6's acceptance: the report includes the headline metrics (the shares
of behavioral-health calls with no enforcement action, a voluntary mental-health
transport, an enforcement action; the share of people with 3+ contacts enrolled in
services), every one published, and no published cell shows a value from 1 to 10.

The EHR's answers in the live demo are random and timed by the wall clock, so the check
runs twice, bracketing them: no answer at all, and every deliverable referral completed.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connectors.cad.used_profile import UsedProfile
from hub.devtools.demo import CAD_OVERRIDES, DemoOptions, demo_vocabularies
from hub.devtools.simulate.model import CountyModel
from hub.devtools.simulate.pipeline import county_envelopes
from hub.kernel.vocabulary import load_vocabularies
from projections import reporting
from projections import tables as T
from projections.areas import path_counts
from projections.config import FoldConfig
from projections.facts import fact_from_envelope
from projections.fold import derive
from projections.referrals import FUNNEL_STAGES
from projections.releases import month_release
from tests.unit.projections.release_adversary import adversary

OPTS = DemoOptions()
TZ = "America/Los_Angeles"
KEY = b"demo-headline-test-pseudonym-key"


def _report(answers: str, by: str | None) -> dict[str, Any]:
    county = CountyModel(OPTS.seed, OPTS.days, OPTS.start, calls_per_day=OPTS.calls_per_day).generate()
    profile = UsedProfile.of("san_francisco", CAD_OVERRIDES).profile  # as the demo's CAD poller
    envelopes = county_envelopes(county, profile, KEY, answers=answers)  # type: ignore[arg-type]
    # as the demo's projector: the county's vocabulary applied
    cfg = FoldConfig(timezone=TZ, vocabularies=load_vocabularies(demo_vocabularies()))
    rows = derive([fact_from_envelope(e) for e in envelopes], cfg)
    incidents = [
        r for r in rows[T.INCIDENT_SUMMARY.name].values() if r["behavioral_health"] and r["received_at"]
    ]
    people = [(s["contacts"], s["enrolled_in_services"]) for s in rows[T.PERSON_SUMMARY.name].values()]
    referrals = [r for r in rows[T.REFERRAL_FUNNEL.name].values() if r["requested_at"] is not None]
    doc = reporting.report_document(
        table=reporting.outcome_table(incidents, by=by, tz=TZ, small_cell_max=10),
        repeat=reporting.repeat_table(people, 10),
        times=reporting.response_times(incidents, 10),
        funnel=reporting.referral_funnel(referrals, 10),
        force=reporting.use_of_force_table(incidents, by=by, tz=TZ, small_cell_max=10),
        by=by,
    )
    doc["_all_calls"] = len(county.calls)
    return doc


@pytest.fixture(scope="module", params=[("none", "area"), ("complete", None)], ids=["no-answers", "all-done"])
def demo_report(request: pytest.FixtureRequest) -> dict[str, Any]:
    answers, by = request.param
    return _report(answers, by)


def test_every_headline_metric_is_published(demo_report: dict[str, Any]) -> None:
    headline = demo_report["headline"]
    assert set(headline) == {
        "calls", "no_enforcement", "voluntary_transport", "enforcement", "involuntary_hold",
        "emergency_department", "referral_made", "connected_to_services", "repeat_three_plus_enrolled",
    }
    for name in headline:
        assert not headline[name]["suppressed"], name
        assert headline[name]["value"] > 10, name


def test_no_published_cell_shows_1_to_10(demo_report: dict[str, Any]) -> None:
    small = [(path, v) for path, v in reporting.published_cells(demo_report) if 1 <= v <= 10]
    assert small == []


def test_use_of_force_is_answered_on_the_demo_data(demo_report: dict[str, Any]) -> None:
    force = demo_report["use_of_force"]["total"]
    assert 0.5 < force["force_recorded"]["share"] < 1  # the calls a co-responder team worked
    assert force["no_force"]["share"] > 0.8 and force["force_used"]["value"] > 10


def test_shares_look_like_the_published_programs(demo_report: dict[str, Any]) -> None:
    h = demo_report["headline"]
    calls = h["calls"]["value"]
    assert 0.05 <= calls / demo_report["_all_calls"] <= 0.10  # behavioral-health share
    assert 0.35 <= h["no_enforcement"]["share"] <= 0.45  # ABQ COAST ~40 %
    assert 0.28 <= h["voluntary_transport"]["share"] <= 0.38  # ~33 %
    assert 0.02 <= h["enforcement"]["share"] <= 0.045  # ~3 %


def test_repeat_encounters_match_colorado(demo_report: dict[str, Any]) -> None:
    rep = demo_report["repeat_encounters"]
    three, enrolled = rep["three_plus"]["value"], rep["three_plus_enrolled"]["value"]
    assert 40 <= three <= 80
    assert enrolled >= 11 and three - enrolled >= 11  # both sides publishable
    assert 0.65 <= enrolled / three <= 0.72  # Colorado: 68.8 %


def test_referral_funnel_is_monotone_and_published(demo_report: dict[str, Any]) -> None:
    funnel = demo_report["referral_funnel"]
    values = [funnel[s]["value"] for s in FUNNEL_STAGES]
    published = [v for v in values if v is not None]
    assert published == sorted(published, reverse=True)
    assert funnel["requested"]["value"] > 10


def test_areas_are_the_districts_the_feed_publishes(demo_report: dict[str, Any]) -> None:
    rows = demo_report["outcomes"]["rows"]
    if demo_report["by"] != "area":
        assert rows == []
        return
    # an SF-style feed publishes police districts and no precincts: rows by district, no "unknown"
    assert {r["group_kind"] for r in rows} == {"district"}
    assert sum(r["metrics"]["calls"]["value"] for r in rows) == demo_report["headline"]["calls"]["value"]


def _month_counts(answers: str) -> dict[date, dict[tuple[Any, str], int]]:
    """What the publisher reads: (area path, metric) counts per month, calls for service included."""
    county = CountyModel(OPTS.seed, OPTS.days, OPTS.start, calls_per_day=OPTS.calls_per_day).generate()
    profile = UsedProfile.of("san_francisco", CAD_OVERRIDES).profile
    envelopes = county_envelopes(county, profile, KEY, answers=answers)  # type: ignore[arg-type]
    cfg = FoldConfig(timezone=TZ, vocabularies=load_vocabularies(demo_vocabularies()))
    rows = derive([fact_from_envelope(e) for e in envelopes], cfg)[T.INCIDENT_SUMMARY.name].values()
    months: dict[date, list[dict[str, Any]]] = {}
    for r in rows:
        if r["received_at"] is not None:
            months.setdefault(r["received_at"].astimezone(ZoneInfo(TZ)).date().replace(day=1), []).append(r)
    return {m: path_counts(rs) for m, rs in months.items()}


def test_no_daily_or_small_value_can_be_recovered_from_the_demos_releases() -> None:
    """Everything an analyst obtains of the demo: each month's releases — first before any EHR
    answer, then corrected once every referral completed. The adversary (every grain, both
    releases, subtracted) recovers no value from 1 to 10; a single day is never released."""
    before, after = _month_counts("none"), _month_counts("complete")
    assert set(before) == set(after) == {date(2024, 3, 1)}  # the demo's 30 days are one month
    for month in before:
        first = month_release(month, before[month], seq=1, max_small=10, attribute_max=20)
        second = month_release(
            month, after[month], seq=2, max_small=10, attribute_max=20, known_before=first.known
        )
        assert adversary([first, second], [before[month], after[month]]) == []
        assert {r.period for r in (*first.records, *second.records)} == {"2024-03"}  # months only
        calls = {r.value for r in first.records if r.metric == "calls" and r.area_kind == "all"}
        assert calls and all(v is not None and v > 10 for v in calls)  # the headline is published
