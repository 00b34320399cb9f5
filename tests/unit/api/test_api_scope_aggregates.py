"""Timeline scope derived from facts; de-identification of aggregate documents."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from hub.api.aggregates import deidentify, deidentify_report
from hub.api.scope import scope_from_entries

P = "psn_" + "b" * 32


def test_scope_programs_and_consents() -> None:
    entries = [
        {"event_type": "case.opened.v1", "data": {"program": "coresp-1"}},
        {"event_type": "encounter.clinician.engaged.v1", "data": {"program": "coresp-2"}},
        {
            "event_type": "consent.granted.v1",
            "person": P,
            "data": {
                "consent_id": "c1",
                "person": P,
                "at": "2026-01-02T00:00:00Z",
                "recipients": ["coresp-1"],
                "scope": ["part2"],
            },
        },
        {
            "event_type": "consent.granted.v1",
            "person": P,
            "data": {
                "consent_id": "c2",
                "person": P,
                "at": "2026-01-02T00:00:00+00:00",
                "recipients": ["coresp-1"],
                "scope": ["part2"],
            },
        },
        {
            "event_type": "consent.revoked.v1",
            "data": {"consent_id": "c2", "person": P, "at": "2026-01-05T00:00:00Z"},
        },
    ]
    scope = scope_from_entries(entries)
    assert scope.programs == {"coresp-1", "coresp-2"}
    by_id = {c.consent_id: c for c in scope.consents}
    assert by_id["c1"].revoked_at is None
    assert by_id["c2"].revoked_at == datetime(2026, 1, 5, tzinfo=UTC)
    assert by_id["c1"].covers("coresp-1", datetime(2026, 2, 1, tzinfo=UTC))
    assert not by_id["c2"].covers("coresp-1", datetime(2026, 2, 1, tzinfo=UTC))


def test_deidentify_keeps_shape_and_hides_small_cells() -> None:
    doc = {
        "small_cell_max": 10,
        "by": "area",
        "rows": [
            {"area": "north", "total": 50, "no_enforcement": 30, "arrest": 4, "referral": 16, "share": 0.6},
            {"area": "south", "total": 7, "no_enforcement": 7, "arrest": 0},
        ],
    }
    out = deidentify_report(doc, 10)
    north, south = out["rows"]
    assert north["arrest"] is None and north["referral"] is None  # primary + complementary
    assert north["no_enforcement"] == 30 and north["total"] == 50
    assert north["share"] is None  # a row that lost a cell publishes no derived shares
    assert south == {"area": "south", "total": None, "no_enforcement": None, "arrest": 0}
    assert out["small_cell_max"] == 10 and out["suppression"]["small_cell_max"] == 10


leaf = st.integers(0, 100)
doc_st = st.recursive(
    st.dictionaries(st.sampled_from(["a", "b", "c", "total"]), leaf, max_size=4),
    lambda children: st.dictionaries(
        st.sampled_from(["x", "y", "rows"]), children | st.lists(children, max_size=3), max_size=3
    ),
    max_leaves=20,
)


def _ints(doc: object) -> list[int]:
    if isinstance(doc, dict):
        return [i for v in doc.values() for i in _ints(v)]
    if isinstance(doc, list):
        return [i for v in doc for i in _ints(v)]
    return [doc] if isinstance(doc, int) and not isinstance(doc, bool) else []


@given(doc_st)
def test_no_published_value_in_small_range(doc: dict) -> None:
    assert not any(1 <= v <= 10 for v in _ints(deidentify(doc, 10)))
