"""The report's tables from rows (pure): areas at the grain the feed publishes, the
monotone referral funnel and its suppression."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections import tables as T
from projections.config import FoldConfig
from projections.fold import derive
from projections.outcomes import PUBLISHED_METRICS
from projections.referrals import FUNNEL_STAGES, reached_stages
from projections.reporting import (
    FORCE_TYPES,
    area_group,
    calls_for_service,
    funnel_values,
    outcome_table,
    published_cells,
    referral_funnel,
    stage_counts,
    use_of_force_table,
)
from projections.suppression import Equation, exposed
from schemas.referral import (
    ReferralAccepted,
    ReferralCancelled,
    ReferralCompleted,
    ReferralDeclined,
    ReferralDelivered,
    ReferralRequested,
)
from tests.unit.projections.projection_events import PERSONS, at, fact

CFG = FoldConfig(timezone="UTC")
T0 = datetime(2024, 3, 10, 12, tzinfo=UTC)
P1 = PERSONS[0]


def incident(n: int, precinct: str | None, district: str | None, outcome: str | None) -> dict:
    return {
        "incident_id": f"i{n}",
        "received_at": T0 + timedelta(hours=n),
        "call_category": "behavioral_health",
        "behavioral_health": True,
        "precinct": precinct,
        "district": district,
        "outcome": outcome,
        "referral_made": n % 3 == 0,
        "connected_to_services": n % 4 == 0,
        "co_responder": n % 2 == 0,
    }


# ----------------------------------------------------------------------------- areas


def test_area_follows_the_published_grain() -> None:
    assert area_group({"precinct": "N", "district": "D1"}) == ("precinct", "N")
    assert area_group({"precinct": None, "district": "MISSION"}) == ("district", "MISSION")
    assert area_group({"precinct": None, "district": None}) == ("area", "unknown")


def test_district_only_feed_is_reported_by_district_not_unknown() -> None:
    rows = [incident(i, None, ("NORTH", "SOUTH")[i % 2], "no_enforcement") for i in range(60)]
    table = outcome_table(rows, by="area", tz="UTC", small_cell_max=10)
    groups = {(r["group_kind"], r["group"]): r["metrics"]["calls"]["value"] for r in table["rows"]}
    assert groups == {("district", "NORTH"): 30, ("district", "SOUTH"): 30}
    assert table["total"]["calls"]["value"] == 60


def test_mixed_grains_partition_the_total_and_hide_small_areas() -> None:
    rows = (
        [incident(i, "P1", "D1", "voluntary_transport") for i in range(25)]
        + [incident(100 + i, None, "D2", "no_enforcement") for i in range(30)]
        + [incident(200 + i, None, None, "no_enforcement") for i in range(4)]  # small: suppressed
    )
    table = outcome_table(rows, by="area", tz="UTC", small_cell_max=10)
    calls = {(r["group_kind"], r["group"]): r["metrics"]["calls"]["value"] for r in table["rows"]}
    assert set(calls) == {("precinct", "P1"), ("district", "D2"), ("area", "unknown")}
    assert calls[("area", "unknown")] is None
    # the unknown area's 4 cannot be derived as total - P1 - D2: one more cell is hidden
    others = (calls[("precinct", "P1")], calls[("district", "D2")])
    assert table["total"]["calls"]["value"] is None or None in others
    assert not [v for _, v in published_cells(table) if 1 <= v <= 10]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from([None, "P1", "P2"]),
            st.sampled_from([None, "D1", "D2"]),
            st.sampled_from([None, "no_enforcement", "voluntary_transport", "arrest_or_citation"]),
            st.integers(1, 14),
        ),
        max_size=8,
    )
)
def test_area_table_never_publishes_small_or_derivable_cells(groups) -> None:  # type: ignore[no-untyped-def]
    rows, n = [], 0
    for precinct, district, outcome, k in groups:
        for _ in range(k):
            rows.append(incident(n, precinct, district, outcome))
            n += 1
    table = outcome_table(rows, by="area", tz="UTC", small_cell_max=10)
    assert not [v for _, v in published_cells(table) if 1 <= v <= 10]
    # the published area groups add up to the total: a true partition of the calls
    true_calls = Counter(area_group(r) for r in rows)
    for r in table["rows"]:
        v = r["metrics"]["calls"]["value"]
        assert v is None or v == true_calls[(r["group_kind"], r["group"])]
    assert sum(true_calls.values()) == len(rows)
    for r in table["rows"]:
        assert set(r["metrics"]) == set(PUBLISHED_METRICS)


# ----------------------------------------------------------------------------- funnel


def req(rid: str = "r1", m: float = 0) -> ReferralRequested:
    return ReferralRequested(
        referral_id=rid, person=P1, at=at(m), destination="d", channel="fhir", service_type="bh",
        requester="t",
    )


def funnel_row(*events) -> dict:  # type: ignore[no-untyped-def]
    rows = derive([fact(e) for e in events], CFG)[T.REFERRAL_FUNNEL.name]
    (row,) = rows.values()
    return row


def test_completed_without_accepted_implies_acceptance_with_no_invented_time() -> None:
    row = funnel_row(
        req(),
        ReferralDelivered(referral_id="r1", person=P1, at=at(1), destination="d", channel="fhir"),
        ReferralCompleted(referral_id="r1", person=P1, at=at(90)),
    )
    assert row["furthest_stage"] == "completed" and row["implied_stages"] == ["accepted"]
    assert row["accepted_at"] is None and row["completed_at"] == at(90)
    assert row["seconds_delivered_to_accepted"] is None and row["seconds_accepted_to_completed"] is None
    assert row["seconds_requested_to_delivered"] == 60.0
    assert stage_counts([row]) == {"requested": 1, "delivered": 1, "accepted": 1, "completed": 1}


def test_an_ehr_answer_implies_delivery() -> None:
    row = funnel_row(req(), ReferralDeclined(referral_id="r1", person=P1, at=at(5)))
    assert row["furthest_stage"] == "delivered" and row["implied_stages"] == ["delivered"]
    assert row["status"] == "declined" and row["delivered_at"] is None
    row = funnel_row(req(), ReferralCompleted(referral_id="r1", person=P1, at=at(5)))
    assert row["implied_stages"] == ["delivered", "accepted"]


def test_answers_before_the_request_are_not_in_the_funnel() -> None:
    row = funnel_row(ReferralCompleted(referral_id="r1", person=P1, at=at(5)))
    assert row["requested_at"] is None and row["furthest_stage"] is None
    assert stage_counts([row]) == dict.fromkeys(FUNNEL_STAGES, 0)


def test_observed_stages_keep_their_times() -> None:
    row = funnel_row(
        req(),
        ReferralDelivered(referral_id="r1", person=P1, at=at(1), destination="d", channel="fhir"),
        ReferralAccepted(referral_id="r1", person=P1, at=at(2)),
        ReferralCompleted(referral_id="r1", person=P1, at=at(4)),
    )
    assert row["implied_stages"] == [] and row["furthest_stage"] == "completed"
    assert (row["seconds_delivered_to_accepted"], row["seconds_accepted_to_completed"]) == (60.0, 120.0)


def test_reached_stages_is_monotone_by_construction() -> None:
    t = at(0)
    assert reached_stages({"requested": t, "completed": t}, True) == ("completed", ["delivered", "accepted"])
    assert reached_stages({"requested": t}, False) == ("requested", [])
    assert reached_stages({"completed": t}, True) == (None, [])


ANSWERS = [ReferralDelivered, ReferralAccepted, ReferralCompleted, ReferralDeclined, ReferralCancelled]


def _answer(cls, rid: str, m: int):  # type: ignore[no-untyped-def]
    extra = {"destination": "d", "channel": "fhir"} if cls is ReferralDelivered else {}
    return cls(referral_id=rid, person=P1, at=at(m), **extra)


referral_sets = st.lists(
    st.tuples(
        st.booleans(),  # the request is known
        st.sets(st.sampled_from(ANSWERS), max_size=4),
        st.integers(1, 25),  # how many such referrals
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(referral_sets, st.integers(0, 50))
def test_funnel_counts_are_monotone_and_suppression_is_consistent(groups, offset) -> None:  # type: ignore[no-untyped-def]
    events, n = [], 0
    for with_request, answers, k in groups:
        for _ in range(k):
            rid = f"r{n}"
            n += 1
            if with_request:
                events.append(req(rid, offset))
            events += [_answer(cls, rid, offset + 1 + i) for i, cls in enumerate(sorted(answers, key=str))]
    rows = list(derive([fact(e) for e in events], CFG)[T.REFERRAL_FUNNEL.name].values())
    counts = stage_counts(rows)
    ordered = [counts[s] for s in FUNNEL_STAGES]
    assert ordered == sorted(ordered, reverse=True)  # monotone: requested ≥ delivered ≥ accepted ≥ completed
    for r in rows:  # an observed stage is always counted as reached
        if r["furthest_stage"] is not None:
            reached = FUNNEL_STAGES[: FUNNEL_STAGES.index(r["furthest_stage"]) + 1]
            for s in FUNNEL_STAGES:
                if r[f"{s}_at"] is not None:
                    assert s in reached
    values, eqs, hidden = funnel_values(counts)
    for eq in eqs:  # every equation holds exactly (no clipped complements)
        assert values[eq.total] == sum(values[p] for p in eq.parts)
    out = referral_funnel([r for r in rows if r["requested_at"] is not None], 10)
    published = {s: out[s]["value"] for s in FUNNEL_STAGES}
    assert not [v for v in published.values() if v is not None and 1 <= v <= 10]
    for s, v in published.items():
        assert v is None or v == counts[s]
    unknown = set(hidden) | {s for s, v in published.items() if v is None}
    small, narrow = exposed(values, eqs, unknown, 10)
    assert small == set() and narrow == []


# ----------------------------------------------------------------------------- use of force

FORCES = [None, "none", "none", "physical_control", "restraints", "conducted_energy_device"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["P1", "P2", None]),
            st.sampled_from([None, "no_enforcement", "arrest_or_citation", "involuntary_hold"]),
            st.sampled_from(FORCES),
            st.integers(1, 14),
        ),
        max_size=8,
    ),
    st.sampled_from([None, "area", "month"]),
)
def test_use_of_force_never_publishes_small_or_derivable_cells(groups, by) -> None:  # type: ignore[no-untyped-def]
    """An analyst who knows every equation (groupings add up to the total, recorded = no
    force + force used = the types, calls = recorded + not recorded) derives no small cell
    from what the table publishes, across the outcome and the area or month groupings."""
    rows, n = [], 0
    for precinct, outcome, force, k in groups:
        for _ in range(k):
            rows.append({**incident(n * 37, precinct, None, outcome), "use_of_force": force})
            n += 1
    out = use_of_force_table(rows, by=by, tz="UTC", small_cell_max=10)
    assert not [v for _, v in published_cells(out) if 1 <= v <= 10]
    # the analyst's model of the table, from the true rows
    published: dict[tuple[tuple[str, str], str], int | None] = {
        (("all", "all"), m): c["value"] for m, c in out["total"].items()
    }
    for r in [*out["by_outcome"], *out["rows"]]:
        published.update({((r["group_kind"], r["group"]), m): c["value"] for m, c in r["metrics"].items()})
    groups_seen = {g for g, _ in published}
    truth: Counter[tuple[tuple[str, str], str]] = Counter()
    for row in rows:
        mine = {("all", "all"), ("outcome", row["outcome"] or "none")}
        if by == "area":
            mine.add(area_group(row))
        elif by == "month":
            mine.add(("month", row["received_at"].strftime("%Y-%m")))
        f = row["use_of_force"]
        for g in mine:
            truth[(g, "calls")] += 1
            truth[(g, "not.force_recorded")] += f is None
            if f is not None:
                truth[(g, "force_recorded")] += 1
                truth[(g, "no_force" if f == "none" else "force_used")] += 1
                if f != "none":
                    truth[(g, f"force.{f}")] += 1
    for cell_key, v in published.items():
        assert v is None or v == truth[cell_key], cell_key
    eqs = []
    for g in groups_seen:
        eqs.append(Equation((g, "calls"), ((g, "force_recorded"), (g, "not.force_recorded"))))
        eqs.append(Equation((g, "force_recorded"), ((g, "no_force"), (g, "force_used"))))
        eqs.append(Equation((g, "force_used"), tuple((g, f"force.{t}") for t in FORCE_TYPES)))
    grain = [("precinct", "district", "area")] if by == "area" else [("month",)] if by else []
    kinds = [("outcome",), *grain]
    for ks in kinds:
        members = tuple(g for g in groups_seen if g[0] in ks)
        for m in {m for _, m in published} | {"not.force_recorded"}:
            eqs.append(Equation((("all", "all"), m), tuple((g, m) for g in members)))
    unknown = {k for k, v in published.items() if v is None}
    unknown |= {(g, "not.force_recorded") for g in groups_seen}
    values = {k: truth[k] for k in {*published, *unknown}}
    small, narrow = exposed(values, eqs, unknown, 10)
    assert small == set() and narrow == []


def test_use_of_force_shares_are_of_the_calls_that_recorded_it() -> None:
    rows = [
        {**incident(i, "P1", None, "arrest_or_citation" if i < 30 else "no_enforcement"),
         "use_of_force": "restraints" if i < 12 else "none" if i < 60 else None}
        for i in range(80)
    ]
    out = use_of_force_table(rows, by=None, tz="UTC", small_cell_max=10)
    total = out["total"]
    counts = (total["calls"]["value"], total["force_recorded"]["value"], total["force_used"]["value"])
    assert counts == (80, 60, 12)
    assert total["force_used"]["share"] == 0.2 and total["force_recorded"]["share"] == 0.75
    assert [r["group"] for r in out["by_outcome"]] == ["arrest_or_citation", "no_enforcement"]
    assert out["rows"] == []


# ----------------------------------------------------------------------------- interventions


def test_outcomes_side_by_side_by_intervention_partition_the_total() -> None:
    rows = [
        {**incident(n, "P1", None, "no_enforcement" if n % 3 else "arrest_or_citation"),
         "mode": "phone" if n % 2 else None, "program": "coresp-1" if n % 2 else None,
         "team": None, "referral_type": "outpatient_mh" if n % 4 == 1 else None}
        for n in range(120)
    ]
    for by, groups in (
        ("response", {"co_responder", "police_only"}),
        ("mode", {"phone", "none"}),
        ("program", {"coresp-1", "none"}),
        ("referral_type", {"outpatient_mh", "none"}),
    ):
        table = outcome_table(rows, by=by, tz="UTC", small_cell_max=10)
        assert {r["group"] for r in table["rows"]} == groups
        assert {r["group_kind"] for r in table["rows"]} == {by}
        calls = [r["metrics"]["calls"]["value"] for r in table["rows"]]
        assert None in calls or sum(calls) == table["total"]["calls"]["value"] == 120
        assert not [v for _, v in published_cells(table) if 1 <= v <= 10]


def _bh(beat: str | None, sector: str | None = "K", precinct: str | None = "WEST") -> dict[str, object]:
    return {"received_at": datetime(2024, 3, 5, tzinfo=UTC), "call_category": "crisis",
            "behavioral_health": True, "precinct": precinct, "district": None, "sector": sector, "beat": beat,
            "outcome": "no_enforcement", "referral_made": False, "connected_to_services": False,
            "co_responder": False}


def test_report_by_beat_has_calls_for_service_and_rates_and_keeps_its_cells() -> None:
    # beats K1: 30 BH calls + 70 others; K2: 25 BH + 25 others; K3: 3 BH calls (withheld)
    rows = [_bh("K1")] * 30 + [_bh("K2")] * 25 + [_bh("K3")] * 3
    others = [{"precinct": "WEST", "district": None, "sector": "K", "beat": "K1", "n": 70},
              {"precinct": "WEST", "district": None, "sector": "K", "beat": "K2", "n": 25}]
    service = calls_for_service(rows, others, "beat", "UTC")
    assert service == {("all", "all"): 153, ("beat", "K1"): 100, ("beat", "K2"): 50, ("beat", "K3"): 3}
    plain = outcome_table(rows, by="beat", tz="UTC", small_cell_max=10)
    rated = outcome_table(rows, by="beat", tz="UTC", small_cell_max=10, service_calls=service,
                          population={("beat", "K1"): 6000, ("all", "all"): 58_000})
    by = {r["group"]: r["metrics"] for r in rated["rows"]}
    assert by["K1"]["calls"]["value"] == 30 and by["K1"]["all_calls"]["value"] == 100
    assert by["K1"]["calls"]["rate_per_1000_calls"] == 300.0  # 30 of 100 calls for service
    assert by["K1"]["calls"]["rate_per_1000_residents"] == 5.0  # 30 per 6,000 residents
    # K3's 3 BH calls are small: K2's 25 (the smallest other part of 58) are withheld with them;
    # likewise K3's 3 calls for service and K2's 50 (of 153). Withheld counts have no rates.
    assert by["K3"]["calls"]["value"] is None and by["K2"]["calls"]["value"] is None
    assert by["K3"]["all_calls"]["value"] is None and by["K2"]["all_calls"]["value"] is None
    assert all(by[b]["calls"][r] is None for b in ("K2", "K3")
               for r in ("rate_per_1000_calls", "rate_per_1000_residents"))
    assert rated["total"]["calls"]["rate_per_1000_residents"] == 1.0  # 58 per 58,000
    # adding calls for service changed no cell of the table
    for p, r in zip(plain["rows"], rated["rows"], strict=True):
        assert {m: c["value"] for m, c in p["metrics"].items()} == {
            m: c["value"] for m, c in r["metrics"].items() if m != "all_calls"}
