"""The incremental live fold equals the full re-derivation, over random logs."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.kernel.vocabulary import VocabularySet, load_vocabularies
from projections import tables as T
from projections.config import FoldConfig
from projections.fold import ProjectionState, derive
from projections.livefold import fold_live, needs_component
from schemas.case import ServiceEnrolled
from schemas.consent import ConsentGranted, ConsentRevoked
from schemas.dispatch import CallReceived, UnitDispatched
from schemas.encounter import PersonIdentified
from schemas.erasure import PersonErased
from schemas.identity import PersonLinked
from schemas.referral import ReferralAccepted, ReferralRequested
from tests.unit.projections.projection_events import INCIDENTS, PERSONS, any_event, at, fact, minutes, person

CFG = FoldConfig(connected_window=timedelta(days=30), repeat_window=timedelta(days=365), timezone="UTC")
#: another vocabulary set: the agency's own vocabulary dropped, its calls fall back
OTHER_WORDS = FoldConfig(
    connected_window=CFG.connected_window, repeat_window=CFG.repeat_window, timezone="UTC",
    vocabularies=VocabularySet(tuple(v for v in load_vocabularies().vocabularies if v.name != "seattle")),
)
P1, P2, P3, _ = PERSONS

# consent ids belong to one person (the case system's id of that person's consent)
granted = st.builds(
    lambda p, m, part2: ConsentGranted(
        consent_id=f"k-{p[-1]}", person=p, at=at(m), recipients=("clinic",),
        scope=("part2",) if part2 else ("general",),
    ),
    person, minutes, st.booleans(),
)
revoked = st.builds(lambda p, m: ConsentRevoked(consent_id=f"k-{p[-1]}", person=p, at=at(m)), person, minutes)
erased = st.builds(lambda p, m: PersonErased(person=p, at=at(m), requested_by="t", basis="request"),
                   person, minutes)
substance = st.builds(
    lambda p, m: ServiceEnrolled(case_id="k2", person=p, at=at(m), service_type="substance_use",
                                 provider="x", substance_use=True),
    person, minutes,
)
events = st.one_of(any_event, granted, revoked, erased, substance)
logs = st.lists(events.map(fact), min_size=1, max_size=30, unique_by=lambda f: f.event_id)


def live(batches, cfg=CFG, state=None):
    state = state or ProjectionState()
    for batch in batches:
        state, _ = fold_live(state, batch, cfg)
    return state


def batches_of(facts, rnd, most=6):
    """``facts`` duplicated, shuffled (out of order) and cut into batches of 1..``most``."""
    shuffled = list(facts) + rnd.sample(facts, k=rnd.randint(0, len(facts)))
    rnd.shuffle(shuffled)
    out, i = [], 0
    while i < len(shuffled):
        n = rnd.randint(1, most)
        out.append(shuffled[i : i + n])
        i += n
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(logs, st.randoms(use_true_random=False))
def test_incremental_live_folds_equal_the_full_derivation(facts, rnd):
    assert live(batches_of(facts, rnd)).rows == derive(facts, CFG)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(logs, logs, st.randoms(use_true_random=False))
def test_after_a_vocabulary_change_live_folds_continue_from_the_re_derivation(before, after, rnd):
    """A vocabulary change re-derives every row (``ReadModelStore.reclassify``); the live
    folds after it equal the derivation of the whole log with the new vocabularies."""
    state = live(batches_of(before, rnd))
    state.rows = derive(state.facts.values(), OTHER_WORDS)
    state = live(batches_of(after, rnd), OTHER_WORDS, state)
    assert state.rows == derive([*before, *after], OTHER_WORDS)


# many incidents of two people within a short repeat window: the person summaries' contact
# statistics are maintained from the stored row (added contacts counted in the window
# before them, an earlier contact by the contacts around it, a moved one by all of them)
WINDOWS = FoldConfig(connected_window=timedelta(minutes=60), repeat_window=timedelta(minutes=90),
                     timezone="UTC")
MANY = tuple(f"sea:2{k:03d}" for k in range(12))
_when = st.integers(0, 600)
contact_events = st.one_of(
    st.builds(lambda i, m: CallReceived(incident_id=i, agency="sea", cad_number=i[4:], at=at(m),
                                        source_timezone="UTC", call_type_final="CRISIS"),
              st.sampled_from(MANY), _when),
    st.builds(lambda i, m, p: PersonIdentified(incident_id=i, at=at(m), person=p),
              st.sampled_from(MANY), _when, st.sampled_from(PERSONS[:2])),
    st.builds(lambda p, m: ServiceEnrolled(case_id="k1", person=p, at=at(m), service_type="bh", provider="x"),
              st.sampled_from(PERSONS[:2]), _when),
    st.builds(lambda i, m: UnitDispatched(incident_id=i, at=at(m), unit_id="u1", unit_kind="police"),
              st.sampled_from(MANY), _when),
)
contact_logs = st.lists(contact_events.map(fact), min_size=1, max_size=40, unique_by=lambda f: f.event_id)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(contact_logs, st.booleans(), st.randoms(use_true_random=False))
def test_contact_statistics_maintained_from_the_summary_equal_the_derivation(facts, in_order, rnd):
    """In time order (a live feed: every added contact is the person's latest) or shuffled
    (a backfill, revisions of the opening time), the summaries equal ``derive``'s."""
    if in_order:
        ordered = sorted(facts, key=lambda f: f.at)
        cut = sorted(rnd.sample(range(1, len(ordered)), k=min(len(ordered) - 1, rnd.randint(0, 12))))
        batches = [ordered[a:b] for a, b in zip([0, *cut], [*cut, len(ordered)], strict=True)]
    else:
        batches = batches_of(facts, rnd, most=4)
    assert live(batches, WINDOWS).rows == derive(facts, WINDOWS)


def test_a_batch_with_a_contact_it_keeps_and_one_it_adds_counts_each_once():
    """The batch's incident already holding the person's contact (stored, kept) and a new
    incident of theirs: the window before the new contact holds both, once each."""
    a, b = MANY[:2]
    def call(i, m):
        return fact(CallReceived(incident_id=i, agency="sea", cad_number=i[4:], at=at(m),
                                 source_timezone="UTC"))

    history = [call(a, 0), fact(PersonIdentified(incident_id=a, at=at(1), person=P1))]
    batch = [fact(UnitDispatched(incident_id=a, at=at(5), unit_id="u1", unit_kind="police")),
             call(b, 10), fact(PersonIdentified(incident_id=b, at=at(11), person=P1))]
    state = live([history, batch], WINDOWS)
    assert state.rows == derive([*history, *batch], WINDOWS)
    assert state.rows[T.PERSON_SUMMARY.name][(P1,)]["max_contacts_in_window"] == 2


def test_a_batch_costs_its_own_facts_not_the_persons_history():
    """The rows a batch writes for a person with a long history are the new incident's, the
    new timeline lines and the person's summary — not their history's rows."""
    history = []
    for i in range(60):
        inc = f"sea:9{i:03d}"
        history += [
            fact(CallReceived(incident_id=inc, agency="sea", cad_number=inc[4:], at=at(i * 60),
                              source_timezone="UTC", call_type_final="CRISIS")),
            fact(PersonIdentified(incident_id=inc, at=at(i * 60 + 5), person=P1)),
        ]
    state = live([history])
    new = [fact(CallReceived(incident_id=INCIDENTS[0], agency="sea", cad_number="1001", at=at(9000),
                             source_timezone="UTC", call_type_final="CRISIS")),
           fact(PersonIdentified(incident_id=INCIDENTS[0], at=at(9005), person=P1))]
    state, changes = fold_live(state, new, CFG)
    assert state.rows == derive([*history, *new], CFG)
    written = {(c.table, c.key) for c in changes if c.op != "add"}
    assert written == {
        (T.INCIDENT_SUMMARY.name, (INCIDENTS[0],)),
        *((T.TIMELINE_ENTRIES.name, (f.event_id,)) for f in new),
        *((T.PERSON_TIMELINE.name, (P1, f.event_id)) for f in new),
        (T.PERSON_SUMMARY.name, (P1,)),
        (T.PERSON_CONTACTS.name, (P1, INCIDENTS[0])),
    }


def test_links_unlinks_and_erasures_re_derive_their_components():
    link = fact(PersonLinked(person=P1, other=P2, at=at(1), actor="t"))
    erasure = fact(PersonErased(person=P3, at=at(2), requested_by="t", basis="request"))
    call = fact(CallReceived(incident_id=INCIDENTS[1], agency="sea", cad_number="1002", at=at(0),
                             source_timezone="UTC"))
    assert needs_component([call, link]) and needs_component([erasure]) and not needs_component([call])


def test_a_late_request_moves_its_referrals_lines_to_the_incident_it_names():
    """A referral's answers recorded before its request sit on no incident; the request
    places them (and the person timeline of the incident's persons) on its incident."""
    base = [
        fact(CallReceived(incident_id=INCIDENTS[0], agency="sea", cad_number="1001", at=at(0),
                          source_timezone="UTC")),
        fact(PersonIdentified(incident_id=INCIDENTS[0], at=at(1), person=P2)),
        fact(ServiceEnrolled(case_id="k1", person=P1, at=at(20), service_type="bh", provider="x")),
    ]
    request = fact(ReferralRequested(referral_id="ref-a", person=P1, at=at(3), incident_id=INCIDENTS[0],
                                     destination="clinic", channel="fhir", service_type="bh",
                                     substance_use=True, requester="t"))
    answer = fact(ReferralAccepted(referral_id="ref-a", person=P1, at=at(30)))
    state = live([base, [answer], [request]])
    assert state.rows == derive([*base, answer, request], CFG)
    assert state.rows[T.TIMELINE_ENTRIES.name][(answer.event_id,)]["incident_id"] == INCIDENTS[0]
    assert state.rows[T.TIMELINE_ENTRIES.name][(answer.event_id,)]["part2"] is True
    assert (P2, answer.event_id) in state.rows[T.PERSON_TIMELINE.name]
