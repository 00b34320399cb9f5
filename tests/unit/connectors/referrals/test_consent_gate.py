"""The 42 CFR Part 2 gate against a brute-force oracle, plus its invariants."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from connectors.referrals.answers import delivered_event, held_event
from connectors.referrals.consent import Allow, ConsentBook, Hold, covers, decide
from schemas.consent import ConsentGranted, ConsentRevoked
from tests.unit.connectors.referrals.strategies_referrals import T0, destinations, persons, requests

PERSON = "psn_" + "a" * 32


@st.composite
def consent_facts(draw):  # type: ignore[no-untyped-def]
    n = draw(st.integers(0, 6))
    grants = []
    for i in range(n):
        start = T0 + timedelta(days=draw(st.integers(0, 40)))
        grants.append(
            ConsentGranted(
                consent_id=f"C{i}",
                person=draw(st.sampled_from([PERSON, "psn_" + "b" * 32])),
                at=start,
                recipients=tuple(draw(st.sets(destinations, max_size=3))),
                scope=tuple(draw(st.sets(st.sampled_from(["part2", "general"]), min_size=1))),
                expires_at=draw(st.none() | st.integers(1, 60).map(lambda d, s=start: s + timedelta(days=d))),
            )
        )
    revoked = draw(st.sets(st.sampled_from([f"C{i}" for i in range(n)]) if n else st.nothing()))
    revokes = [
        ConsentRevoked(consent_id=c, person=g.person, at=g.at)
        for c in revoked
        for g in grants
        if g.consent_id == c
    ]
    return grants, revokes


def oracle(req, grants, revoked_ids, now) -> bool:  # type: ignore[no-untyped-def]
    if not req.substance_use:
        return True
    return any(
        g.person == req.person
        and g.consent_id not in revoked_ids
        and "part2" in g.scope
        and req.destination in g.recipients
        and g.at <= now
        and (g.expires_at is None or now < g.expires_at)
        for g in grants
    )


@given(requests(), consent_facts(), st.integers(0, 120), st.randoms())
def test_gate_matches_oracle_in_any_fact_order(req, facts, day, rnd) -> None:  # type: ignore[no-untyped-def]
    req = req.model_copy(update={"person": PERSON})
    grants, revokes = facts
    events = grants + revokes
    rnd.shuffle(events)  # a revocation read before its grant still revokes it
    book = ConsentBook()
    for e in events:
        assert book.apply(e)
    now = T0 + timedelta(days=day)
    decision = decide(req, book.of(req.person), now)
    revoked_ids = {r.consent_id for r in revokes}
    assert isinstance(decision, Allow) == oracle(req, grants, revoked_ids, now)
    if isinstance(decision, Allow):
        if req.substance_use:
            c = decision.consent
            assert c is not None and covers(c, req.destination, now) and c.consent_id not in revoked_ids
        else:
            assert decision.consent is None
    else:
        assert (
            isinstance(decision, Hold)
            and req.destination in decision.reason
            and PERSON not in decision.reason
        )


@given(requests(substance_use=st.just(True)), consent_facts(), st.integers(0, 120))
def test_revocation_never_turns_a_hold_into_a_disclosure(req, facts, day) -> None:  # type: ignore[no-untyped-def]
    req = req.model_copy(update={"person": PERSON})
    grants, _ = facts
    book = ConsentBook()
    for g in grants:
        book.apply(g)
    now = T0 + timedelta(days=day)
    before = isinstance(decide(req, book.of(PERSON), now), Allow)
    for g in grants:
        book.apply(ConsentRevoked(consent_id=g.consent_id, person=g.person, at=now))
        after = isinstance(decide(req, book.of(PERSON), now), Allow)
        assert not (after and not before)
        before = after
    assert not isinstance(decide(req, book.of(PERSON), now), Allow)


@given(requests(), persons)
def test_other_peoples_consents_never_count(req, other) -> None:  # type: ignore[no-untyped-def]
    req = req.model_copy(update={"substance_use": True})
    g = ConsentGranted(consent_id="C", person=other, at=T0, recipients=(req.destination,), scope=("part2",))
    assert isinstance(decide(req, [g], req.at), Allow) == (other == req.person)


def test_book_tracks_changes_and_ignores_other_facts() -> None:
    book = ConsentBook()
    g = ConsentGranted(consent_id="C", person=PERSON, at=T0, recipients=("clinic-a",), scope=("part2",))
    assert book.apply(g) and book.version == 1 and book.take_changed() == {PERSON}
    assert book.take_changed() == set()
    from schemas.referral import ReferralRequested

    other = ReferralRequested(
        referral_id="R",
        person=PERSON,
        at=T0,
        destination="clinic-a",
        channel="fhir",
        service_type="x",
        requester="t",
    )
    assert not book.apply(other) and book.version == 1  # not a consent fact
    book.apply(ConsentRevoked(consent_id="C", person=PERSON, at=T0))
    assert book.of(PERSON) == [] and book.version == 2


def test_outcome_event_ids_are_deterministic() -> None:
    from datetime import UTC, datetime

    from schemas.referral import ReferralRequested

    req = ReferralRequested(
        referral_id="R-1",
        person=PERSON,
        at=T0,
        destination="clinic-a",
        channel="fhir",
        service_type="x",
        requester="t",
    )
    a = delivered_event(
        req, request_event_id="e", at=datetime.now(UTC), remote_id=None, ack_code="AA", attempts=1
    )
    b = delivered_event(
        req, request_event_id="e", at=datetime.now(UTC), remote_id="x", ack_code="201", attempts=3
    )
    assert a.id == b.id and a.source == "clinic-a"
    h1 = held_event(req, request_event_id="e", at=T0, reason="r", hold_seq=1)
    h2 = held_event(req, request_event_id="e", at=T0, reason="r", hold_seq=2)
    assert h1.id != h2.id and h1.id == held_event(req, request_event_id="e", at=T0, reason="r", hold_seq=1).id
