"""Demographics in the outcome report: precedence and conflicts per person, the age band
at each contact, and suppression across the four breakdowns (and with the outcome table
grouped by a demographic) — numbers worked out by hand in the comments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.demographics import Reported, Resolved, demographics_table, resolve, with_demographics
from projections.reporting import hidden_cells, outcome_table, published_cells
from projections.suppression import Equation, exposed
from schemas.demographics import VOCABULARIES

T0 = datetime(2024, 6, 14, 12, tzinfo=UTC)
ALL = ("intake", "case", "ehr")


def test_the_authoritative_source_wins_and_a_disagreement_is_a_conflict() -> None:
    reports = [
        Reported("intake", T0, {"race": "white", "birth_date": "1990-06-15", "gender": "female"}),
        Reported("case", T0, {"race": "black_or_african_american", "ethnicity": "hispanic_or_latino"}),
        Reported("case", T0 - timedelta(days=9), {"race": "asian"}),  # older case value: superseded
        Reported("ehr", T0, {"gender": "not_reported"}),  # not reported is no value, no conflict
    ]
    by_case = resolve(reports, ("case", "intake", "ehr"))
    assert by_case.values["race"] == "black_or_african_american"
    assert by_case.values["gender"] == "female" and by_case.values["ethnicity"] == "hispanic_or_latino"
    assert by_case.conflicts == {"race"}
    assert resolve(reports, ("intake", "case")).values["race"] == "white"
    assert resolve(reports, ("ehr",)).values == {}  # sources left out are ignored


def test_age_band_is_taken_on_the_day_of_each_contact() -> None:
    person = Resolved({"birth_date": "2006-06-15"})
    rows = [
        {"incident_id": "a", "received_at": T0, "persons": ["p"]},  # 17 on 2024-06-14
        {"incident_id": "b", "received_at": T0 + timedelta(days=1), "persons": ["p"]},  # 18
        {"incident_id": "c", "received_at": T0, "persons": []},
    ]
    out = with_demographics(rows, {"p": person}, "UTC")
    assert [r["age_band"] for r in out] == ["under_18", "18_24", "not_reported"]
    assert out[0]["race"] == "not_reported" and out[0]["demographics_conflict"] is False


def _rows(spec: list[tuple[int, str, str, str, str, bool]]) -> list[dict]:
    rows, n = [], 0
    for k, race, eth, gender, band, conflict in spec:
        for _ in range(k):
            rows.append({"incident_id": f"i{n}", "received_at": T0 + timedelta(hours=n),
                         "behavioral_health": True, "outcome": "no_enforcement", "referral_made": False,
                         "connected_to_services": False, "co_responder": False, "race": race,
                         "ethnicity": eth, "gender": gender, "age_band": band,
                         "demographics_conflict": conflict})
            n += 1
    return rows


def test_demographics_table_by_hand() -> None:
    rows = _rows([
        (25, "white", "not_hispanic_or_latino", "female", "25_34", False),
        (12, "black_or_african_american", "hispanic_or_latino", "male", "18_24", False),
        (3, "asian", "hispanic_or_latino", "male", "18_24", True),
    ])
    out = demographics_table(rows, small_cell_max=10, sources=ALL)
    cells = {(r["group_kind"], r["group"]): r["metrics"]["calls"]["value"] for r in out["rows"]}
    assert out["total"]["calls"]["value"] == 40
    # asian 3 is small; 40 - 25 would give it away, so the next smallest part (black, 12) goes too
    assert cells[("race", "white")] == 25
    assert cells[("race", "asian")] is None and cells[("race", "black_or_african_american")] is None
    assert cells[("race", "multiple")] == 0  # every category is listed
    assert cells[("ethnicity", "hispanic_or_latino")] == 15 and cells[("gender", "male")] == 15
    assert cells[("age_band", "25_34")] == 25
    assert out["total"]["conflicting"]["value"] is None  # 3 calls with a conflict: small
    assert len(out["rows"]) == sum(len(v) for v in VOCABULARIES.values())
    assert not [v for _, v in published_cells(out) if 1 <= v <= 10]


SPEC = st.tuples(
    st.integers(1, 14),
    st.sampled_from(["white", "asian", "not_reported"]),
    st.sampled_from(["hispanic_or_latino", "not_reported"]),
    st.sampled_from(["male", "female"]),
    st.sampled_from(["18_24", "35_44", "not_reported"]),
    st.booleans(),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(SPEC, max_size=7), st.sampled_from([None, *VOCABULARIES]))
def test_demographic_breakdowns_never_publish_small_or_derivable_cells(spec, by) -> None:  # type: ignore[no-untyped-def]
    """An analyst holding the demographics section and the outcome table grouped by one
    demographic, and knowing that each breakdown adds up to the total and calls =
    conflicting + not, derives no small cell."""
    rows = _rows(spec)
    table = outcome_table(rows, by=by, tz="UTC", small_cell_max=10)
    out = demographics_table(rows, small_cell_max=10, sources=ALL,
                             also_hidden=hidden_cells(table) if by else ())
    assert not [v for _, v in published_cells(out) if 1 <= v <= 10]
    total = ("all", "all")
    truth: dict = {(total, "calls"): len(rows),
                   (total, "conflicting"): sum(r["demographics_conflict"] for r in rows)}
    truth[(total, "not.conflicting")] = truth[(total, "calls")] - truth[(total, "conflicting")]
    for d, vocab in VOCABULARIES.items():
        for v in vocab:
            truth[((d, v), "calls")] = sum(1 for r in rows if r[d] == v)
    known = {(total, "calls"): out["total"]["calls"]["value"],
             (total, "conflicting"): out["total"]["conflicting"]["value"]}
    for r in out["rows"]:
        known[((r["group_kind"], r["group"]), "calls")] = r["metrics"]["calls"]["value"]
    for r in table["rows"]:  # the outcome table's calls per group are known too
        v = r["metrics"]["calls"]["value"]
        if v is not None:
            known[((r["group_kind"], r["group"]), "calls")] = v
    for k, v in known.items():
        assert v is None or v == truth[k], k
    eqs = [Equation((total, "calls"), ((total, "conflicting"), (total, "not.conflicting")))]
    eqs += [
        Equation((total, "calls"), tuple(((d, v), "calls") for v in vocab))
        for d, vocab in VOCABULARIES.items()
    ]
    unknown = {k for k, v in known.items() if v is None} | {(total, "not.conflicting")}
    small, narrow = exposed(truth, eqs, unknown, 10)
    assert small == set() and narrow == []
