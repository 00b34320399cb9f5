"""The county model's repeat encounters and engagement: a pool of frequent utilizers gives
a month realistic 3+ contact counts, and "enrolled in services" follows who engages —
whatever the EHR answers later — because only people who engage are referred and a case
opened for them enrolls them."""

from __future__ import annotations

import collections
from datetime import date

from hub.devtools.simulate.model import CountyModel


def test_frequent_utilizers_and_engagement_drive_the_colorado_metric() -> None:
    county = CountyModel(seed=5, days=30, start=date(2024, 3, 1), calls_per_day=300).generate()
    contacts = collections.Counter(e.person.person_id for e in county.encounters)
    three = [p for p, n in contacts.items() if n >= 3]
    assert 25 <= len(three) <= 70
    assert sum(p in county.frequent for p in three) > len(three) / 2  # mostly the frequent utilizers
    share = sum(p in county.engaged for p in three) / len(three)
    assert 0.5 <= share <= 0.85
    # only people who engage are referred ...
    assert county.referrals and all(r.person.person_id in county.engaged for r in county.referrals)
    # ... and everyone who engages and was met by the team is enrolled by the case system
    enrolled = {
        rec["person"]["id"]  # type: ignore[index]
        for rec in county.case_records
        if rec["record_type"] == "service_enrolled"
    }
    assert enrolled == {p for p in contacts if p in county.engaged}


def test_pool_scales_with_the_county_not_the_run_length() -> None:
    week = CountyModel(seed=5, days=7, calls_per_day=300).generate()
    month = CountyModel(seed=5, days=30, calls_per_day=300).generate()
    assert len(week.frequent) == len(month.frequent) == round(2.1 * 300 * 0.07)
    # a week sees fewer repeat contacts per frequent utilizer than a month
    per = [
        collections.Counter(e.person.person_id for e in c.encounters if e.person.person_id in c.frequent)
        for c in (week, month)
    ]
    assert sum(per[0].values()) / len(week.frequent) < sum(per[1].values()) / len(month.frequent)
