"""The role policy as pure functions: the matrix, timeline filtering, Part 2 consent and
small-cell suppression."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.entry.api.roles import (
    PERSON_LEVEL,
    POLICY,
    BadPurpose,
    Consent,
    Family,
    Forbidden,
    Principal,
    Role,
    TimelineScope,
    authorize,
    check_timeline_scope,
    filter_timeline,
    normalize_purpose,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PERSON = "psn_" + "a" * 32

EXPECTED_ALLOWED = {
    Role.DISPATCHER: {Family.INCIDENT_TIMELINE},
    Role.CLINICIAN: {Family.INCIDENT_TIMELINE, Family.PERSON_TIMELINE, Family.INTAKE, Family.WORKLIST},
    Role.CASE_MANAGER: {Family.INCIDENT_TIMELINE, Family.PERSON_TIMELINE, Family.INTAKE, Family.WORKLIST},
    Role.ANALYST: {Family.AGGREGATES, Family.PIPELINE},
    Role.AUDITOR: {Family.PIPELINE, Family.DEADLETTERS, Family.VERIFICATION, Family.ACCESS_LOG},
    Role.ADMIN: set(Family) - {Family.INTAKE, Family.WORKLIST},  # the program roles' own work
}


def principal(role: Role, program: str | None = "coresp-1") -> Principal:
    return Principal(sub="u1", role=role, program=program)


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("family", list(Family))
def test_matrix_allows_exactly_the_documented_pairs(role: Role, family: Family) -> None:
    if family in EXPECTED_ALLOWED[role]:
        authorize(principal(role), family)
    else:
        with pytest.raises(Forbidden):
            authorize(principal(role), family)


def test_policy_covers_every_family() -> None:
    assert set(POLICY) == set(Family)


@pytest.mark.parametrize("role", [Role.CLINICIAN, Role.CASE_MANAGER])
@pytest.mark.parametrize("family", sorted(PERSON_LEVEL))
def test_program_roles_without_program_cannot_read_people(role: Role, family: Family) -> None:
    with pytest.raises(Forbidden):
        authorize(principal(role, program=None), family)


def test_program_roles_only_see_their_programs_subjects() -> None:
    scope = TimelineScope(programs=frozenset({"coresp-2"}))
    with pytest.raises(Forbidden):
        check_timeline_scope(principal(Role.CLINICIAN), scope, Family.PERSON_TIMELINE)
    check_timeline_scope(principal(Role.CLINICIAN, "coresp-2"), scope, Family.PERSON_TIMELINE)
    check_timeline_scope(principal(Role.ADMIN, None), scope, Family.PERSON_TIMELINE)
    check_timeline_scope(principal(Role.DISPATCHER, None), scope, Family.INCIDENT_TIMELINE)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("treatment", "treatment"), (" Care_Coordination ", "care-coordination"), ("AUDIT", "audit")],
)
def test_purpose_normalized(raw: str, expected: str) -> None:
    assert normalize_purpose(raw) == expected


@pytest.mark.parametrize("raw", [None, "", "  ", "curiosity"])
def test_purpose_required_and_known(raw: str | None) -> None:
    with pytest.raises(BadPurpose):
        normalize_purpose(raw)


ENTRIES = [
    {
        "event_id": "1",
        "family": "dispatch",
        "event_type": "cad.call.received.v2",
        "at": "2026-01-01T00:00:00Z",
    },
    {"event_id": "2", "family": "encounter", "event_type": "encounter.clinician.engaged.v1", "data": {}},
    {
        "event_id": "3",
        "family": "referral",
        "event_type": "referral.requested.v1",
        "person": PERSON,
        "data": {"substance_use": True},
    },
    {
        "event_id": "4",
        "family": "case",
        "event_type": "case.service.enrolled.v1",
        "person": PERSON,
        "substance_use": False,
    },
]


def ids(entries: list[dict]) -> list[str]:
    return [e["event_id"] for e in entries]


def test_dispatcher_sees_cad_facts_only() -> None:
    out = filter_timeline(ENTRIES, principal(Role.DISPATCHER, None), TimelineScope(frozenset()), T0)
    assert ids(out) == ["1"]


def test_part2_withheld_without_consent_for_everyone() -> None:
    scope = TimelineScope(frozenset({"coresp-1"}))
    for role in (Role.CLINICIAN, Role.CASE_MANAGER, Role.ADMIN):
        assert ids(filter_timeline(ENTRIES, principal(role), scope, T0)) == ["1", "2", "4"]


def test_part2_disclosed_under_covering_consent_only() -> None:
    consent = Consent("c1", PERSON, ("coresp-1",), ("part2",), granted_at=T0)
    scope = TimelineScope(frozenset({"coresp-1"}), (consent,))
    later = T0 + timedelta(days=1)
    assert ids(filter_timeline(ENTRIES, principal(Role.CLINICIAN), scope, later)) == ["1", "2", "3", "4"]
    # another program is not a recipient
    assert "3" not in ids(filter_timeline(ENTRIES, principal(Role.CLINICIAN, "other"), scope, later))
    # before the grant, after revocation or expiry: withheld
    assert "3" not in ids(filter_timeline(ENTRIES, principal(Role.CLINICIAN), scope, T0 - timedelta(1)))
    revoked = Consent("c1", PERSON, ("coresp-1",), ("part2",), granted_at=T0, revoked_at=later)
    assert "3" not in ids(
        filter_timeline(
            ENTRIES, principal(Role.CLINICIAN), TimelineScope(frozenset({"coresp-1"}), (revoked,)), later
        )
    )
    expired = Consent("c1", PERSON, ("coresp-1",), ("part2",), granted_at=T0, expires_at=later)
    assert "3" not in ids(
        filter_timeline(
            ENTRIES, principal(Role.CLINICIAN), TimelineScope(frozenset({"coresp-1"}), (expired,)), later
        )
    )
    general = Consent("c1", PERSON, ("coresp-1",), ("general",), granted_at=T0)
    assert "3" not in ids(
        filter_timeline(
            ENTRIES, principal(Role.CLINICIAN), TimelineScope(frozenset({"coresp-1"}), (general,)), later
        )
    )


def test_non_timeline_roles_see_nothing() -> None:
    for role in (Role.ANALYST, Role.AUDITOR):
        assert filter_timeline(ENTRIES, principal(role), TimelineScope(frozenset({"coresp-1"})), T0) == []


entry_st = st.fixed_dictionaries(
    {
        "event_id": st.uuids().map(str),
        "family": st.sampled_from(["dispatch", "encounter", "referral", "case", "consent", "identity"]),
        "person": st.just(PERSON),
        "substance_use": st.booleans(),
    }
)


@given(st.lists(entry_st, max_size=30), st.sampled_from(list(Role)), st.booleans())
def test_filter_is_a_subsequence_and_never_leaks_part2(
    entries: list[dict], role: Role, consented: bool
) -> None:
    consents = (Consent("c", PERSON, ("coresp-1",), ("part2",), granted_at=T0),) if consented else ()
    out = filter_timeline(entries, principal(role), TimelineScope(frozenset({"coresp-1"}), consents), T0)
    it = iter(entries)
    assert all(any(o == e for e in it) for o in out)  # order-preserving subsequence
    if not consented or role not in (Role.CLINICIAN, Role.CASE_MANAGER):
        assert not any(e["substance_use"] for e in out)
    if role == Role.DISPATCHER:
        assert all(e["family"] == "dispatch" for e in out)


def _consent_entry(kind: str, cid: str, **data: object) -> dict:
    return {"family": "consent", "event_type": f"consent.{kind}.v1", "person": PERSON,
            "data": {"consent_id": cid, "person": PERSON, **data}}


def test_a_part2_consent_shows_only_to_program_roles_it_names_even_once_revoked() -> None:
    granted = _consent_entry("granted", "c1", recipients=["coresp-1"], scope=["part2"])
    revoked = _consent_entry("revoked", "c1")
    orphan = _consent_entry("revoked", "c-unknown")
    general = _consent_entry("granted", "g1", recipients=["coresp-2"], scope=["general"])
    entries = [granted, revoked, orphan, general]
    consent = Consent("c1", PERSON, ("coresp-1",), ("part2",), granted_at=T0, revoked_at=T0 + timedelta(1))
    scope = TimelineScope(frozenset({"coresp-1", "coresp-2"}), (consent,))
    later = T0 + timedelta(days=30)  # revoked by then: the record of it still goes to its recipients

    def seen(role: Role, program: str | None) -> list[tuple[str, str]]:
        p = Principal("s", role, program)
        return [(e["event_type"], e["data"]["consent_id"]) for e in filter_timeline(entries, p, scope, later)]

    assert seen(Role.CLINICIAN, "coresp-1") == [
        ("consent.granted.v1", "c1"), ("consent.revoked.v1", "c1"), ("consent.granted.v1", "g1")
    ]
    for role, program in ((Role.CLINICIAN, "coresp-2"), (Role.CASE_MANAGER, "coresp-2"), (Role.ADMIN, None)):
        assert seen(role, program) == [("consent.granted.v1", "g1")]
    assert seen(Role.DISPATCHER, None) == []
