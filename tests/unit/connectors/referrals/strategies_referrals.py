"""Hypothesis strategies for referral tests (shared by the FHIR, HL7 and consent tests)."""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime, timedelta

from hypothesis import assume
from hypothesis import strategies as st
from pydantic import ValidationError

from connectors.referrals.content import Disclosure, Endpoint, ReasonCode, ReferralReason
from schemas.consent import ConsentGranted
from schemas.referral import ReferralRequested

T0 = datetime(2024, 1, 1, tzinfo=UTC)
persons = st.text("0123456789abcdef", min_size=32, max_size=32).map(lambda h: "psn_" + h)
times = st.integers(0, 3 * 365 * 24 * 3600).map(lambda s: T0 + timedelta(seconds=s))
def _has_printable(s: str) -> bool:
    """A character that is neither white space nor a control: what is left after a builder
    clears control characters still holds text (``"\x01\x85"`` would clear to a lone NEL,
    which FHIR's string rule refuses: an edge value, see ``edge_disclosures``)."""
    return any(not c.isspace() and unicodedata.category(c) != "Cc" for c in s)


free_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x0b\x1c"), min_size=1, max_size=200
).filter(_has_printable)
ids = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30)
destinations = st.sampled_from(["clinic-a", "clinic-b", "clinic-c"])


@st.composite
def requests(draw, substance_use=st.booleans()) -> ReferralRequested:  # type: ignore[no-untyped-def]
    return ReferralRequested(
        referral_id=draw(ids),
        person=draw(persons),
        at=draw(times),
        incident_id=draw(st.none() | st.from_regex(r"[a-z]{2,5}:[A-Z0-9-]{1,12}", fullmatch=True)),
        destination=draw(destinations),
        channel=draw(st.sampled_from(["fhir", "hl7v2"])),
        service_type=draw(
            st.sampled_from(["behavioral_health", "substance_use_treatment", "housing", "primary care"])
        ),
        priority=draw(st.sampled_from(["routine", "urgent", "asap", "stat"])),
        substance_use=draw(substance_use),
        requester=draw(st.from_regex(r"[a-z0-9-]{1,16}", fullmatch=True)),
    )


codes = st.builds(
    ReasonCode,
    code=st.from_regex(r"[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?", fullmatch=True),
    display=st.none() | free_text,
    system=st.sampled_from(["http://hl7.org/fhir/sid/icd-10-cm", "http://snomed.info/sct"]),
)


@st.composite
def reasons(draw) -> ReferralReason:  # type: ignore[no-untyped-def]
    start = draw(st.none() | times)
    return ReferralReason(
        text=draw(free_text),
        codes=tuple(draw(st.lists(codes, max_size=3))),
        note=draw(st.none() | free_text),
        gender=draw(st.none() | st.sampled_from(["male", "female", "other", "unknown"])),
        birth_date=draw(st.none() | st.dates(date(1920, 1, 1), date(2020, 1, 1))),
        postal_code=draw(st.none() | st.from_regex(r"[0-9]{5}", fullmatch=True)),
        occurrence_start=start,
        occurrence_end=draw(st.none() | times),
    )


@st.composite
def disclosures(draw) -> Disclosure:  # type: ignore[no-untyped-def]
    req = draw(requests())
    consent = None
    if req.substance_use:
        consent = ConsentGranted(
            consent_id=draw(ids),
            person=req.person,
            at=req.at - timedelta(days=1),
            recipients=(req.destination,),
            scope=("part2",),
            expires_at=draw(st.none() | st.just(req.at + timedelta(days=90))),
        )
    return Disclosure(
        event_id=draw(st.uuids()).hex,
        request=req,
        reason=draw(st.none() | reasons()),
        requester=Endpoint(id=req.requester, display=draw(free_text)),
        performer=Endpoint(id=req.destination, display=draw(free_text)),
        shared_demographics=frozenset(
            draw(st.sets(st.sampled_from(["gender", "birth_date", "birth_year", "postal_code"])))
        ),
        consent=consent,
    )


# Text at the edges of the FHIR and HL7 rules: empty, whitespace of every kind (Unicode
# White_Space, U+001C..U+001F which Python but not FHIR's patterns count as whitespace),
# the HL7 delimiters and escape character, control characters, non-BMP characters.
EDGE_CHARACTERS = " \t\r\n\x0b\x0c\x1c\x1f\x85\xa0\u2028\u3000|^&~\\\x00\x7fa-Z.\U0001f600"
edge_text = st.text(st.sampled_from(EDGE_CHARACTERS), max_size=6)


@st.composite
def edge_disclosures(draw) -> Disclosure:  # type: ignore[no-untyped-def]
    """Disclosures whose free-text and identifier fields sit at the edges of the wire
    formats' rules (some render, some are refused); invalid inputs to the models are skipped."""
    d = draw(disclosures())
    text = draw(edge_text)
    try:
        req = ReferralRequested.model_validate({
            **d.request.model_dump(),
            "referral_id": draw(st.one_of(ids, edge_text)),
            "service_type": draw(st.one_of(st.just(d.request.service_type), edge_text)),
        })
        reason = d.reason
        if reason is not None:
            reason = ReferralReason.model_validate({
                **reason.model_dump(),
                "text": text,
                "note": draw(st.none() | edge_text),
                "postal_code": draw(st.none() | edge_text),
                "codes": [{**c.model_dump(), "display": draw(st.none() | edge_text)} for c in reason.codes],
            })
        consent = d.consent
        if consent is not None:
            consent = ConsentGranted.model_validate({**consent.model_dump(), "consent_id": draw(edge_text)})
        return Disclosure(
            event_id=d.event_id,
            request=req,
            reason=reason,
            requester=Endpoint(id=req.requester, display=draw(edge_text)),
            performer=Endpoint(
                id=draw(st.one_of(st.just(req.destination), edge_text)), display=draw(edge_text)
            ),
            shared_demographics=d.shared_demographics,
            consent=consent,
            sending_facility=draw(st.one_of(st.just("COHUB"), edge_text)),
        )
    except ValidationError:
        assume(False)
        raise
