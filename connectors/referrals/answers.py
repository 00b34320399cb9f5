"""The EHR's answers to a referral as events (pure), shared by the HL7 listener and the FHIR
Task poller, and the deterministic ids of every delivery outcome.

Ids: ``source`` = the destination, ``record`` = the referral id, ``revision`` = 0, plus the
fact kind; so each kind of answer (accepted, declined, completed, cancelled) and each
delivery outcome (delivered, rejected, delivery failed) is recorded at most once per
referral and destination, whichever worker or poll appends it, however often. A hold is
the exception: ``revision`` is the hold's sequence number, since a referral can be held,
released, and held again after a revocation; and so is a delivery failure's: ``revision``
is the number of times the failed delivery was re-driven (``hub connectors redrive``), so
each failure of a re-driven referral is a fact of its own (never a conflicting copy).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from schemas.base import Sealed
from schemas.envelope import Envelope, new_event
from schemas.referral import (
    Channel,
    ReferralAccepted,
    ReferralCancelled,
    ReferralCompleted,
    ReferralDeclined,
    ReferralDelivered,
    ReferralDeliveryFailed,
    ReferralHeldForConsent,
    ReferralRejected,
    ReferralRequested,
)

AnswerKind = Literal["accepted", "declined", "completed", "cancelled"]
_ANSWER_CLASSES = {
    "accepted": ReferralAccepted,
    "declined": ReferralDeclined,
    "completed": ReferralCompleted,
    "cancelled": ReferralCancelled,
}

# FHIR Task.status → answer (None: no answer yet). ``in-progress`` implies acceptance: when a
# poll misses ``accepted``, the in-progress Task still records it (once: same event id).
TASK_STATUS_ANSWERS: dict[str, AnswerKind | None] = {
    "draft": None,
    "requested": None,
    "received": None,
    "ready": None,
    "on-hold": None,
    "accepted": "accepted",
    "in-progress": "accepted",
    "rejected": "declined",
    "completed": "completed",
    "cancelled": "cancelled",
    "failed": "cancelled",
    "entered-in-error": "cancelled",
}

# HL7 table 0283 (referral status; user-defined, so common local extensions are included).
RF1_STATUS_ANSWERS: dict[str, AnswerKind | None] = {
    "P": None,  # pending
    "A": "accepted",
    "R": "declined",
    "E": "cancelled",  # expired
    "C": "completed",  # local extension: completed
    "X": "cancelled",  # local extension: cancelled
}
_RF1_TEXT = {
    "PENDING": "P",
    "ACCEPTED": "A",
    "REJECTED": "R",
    "DECLINED": "R",
    "EXPIRED": "E",
    "COMPLETED": "C",
    "CANCELLED": "X",
    "CANCELED": "X",
}


def rf1_status_answer(code: str, text: str = "") -> tuple[bool, AnswerKind | None]:
    """(known, answer) for an RF1-1 status given as code or, failing that, as text."""
    c = code.strip().upper()
    if c in RF1_STATUS_ANSWERS:
        return True, RF1_STATUS_ANSWERS[c]
    t = _RF1_TEXT.get(text.strip().upper()) or _RF1_TEXT.get(c)
    if t is not None:
        return True, RF1_STATUS_ANSWERS[t]
    return False, None


def answer_event(
    kind: AnswerKind,
    *,
    referral_id: str,
    person: str,
    destination: str,
    at: datetime,
    remote_id: str | None,
    source_status: str | None,
    note: Sealed | None = None,
    causation_id: str | None = None,
    demographics: Sealed | None = None,
) -> Envelope:
    """The answer event of ``kind``; ``note`` and ``demographics`` (what the EHR's record says
    of the person, :func:`schemas.demographics.normalized`) sealed with the person's key."""
    cls = _ANSWER_CLASSES[kind]
    data = cls(
        referral_id=referral_id,
        person=person,
        at=at,
        remote_id=remote_id,
        source_status=source_status,
        note=note,
        demographics=demographics,
    )
    return new_event(data, source=destination, record_id=referral_id, revision=0, causation_id=causation_id)


def delivered_event(
    req: ReferralRequested,
    *,
    request_event_id: str,
    at: datetime,
    remote_id: str | None,
    ack_code: str | None,
    attempts: int,
) -> Envelope:
    data = ReferralDelivered(
        referral_id=req.referral_id,
        person=req.person,
        at=at,
        destination=req.destination,
        channel=req.channel,
        remote_id=remote_id,
        ack_code=ack_code,
        attempts=attempts,
    )
    return _outcome(data, req, request_event_id)


def rejected_event(
    req: ReferralRequested, *, request_event_id: str, at: datetime, code: str, detail: str
) -> Envelope:
    data = ReferralRejected(
        referral_id=req.referral_id,
        person=req.person,
        at=at,
        destination=req.destination,
        channel=req.channel,
        code=code,
        detail=detail[:500],
    )
    return _outcome(data, req, request_event_id)


def failed_event(
    req: ReferralRequested,
    *,
    request_event_id: str,
    at: datetime,
    attempts: int,
    last_error: str,
    channel: Channel | None = None,
    revision: int = 0,
) -> Envelope:
    data = ReferralDeliveryFailed(
        referral_id=req.referral_id,
        person=req.person,
        at=at,
        destination=req.destination,
        channel=channel or req.channel,
        attempts=attempts,
        last_error=last_error[:500],
    )
    return _outcome(data, req, request_event_id, revision)


def held_event(
    req: ReferralRequested, *, request_event_id: str, at: datetime, reason: str, hold_seq: int
) -> Envelope:
    data = ReferralHeldForConsent(
        referral_id=req.referral_id, person=req.person, at=at, destination=req.destination, reason=reason
    )
    return new_event(
        data,
        source=req.destination,
        record_id=req.referral_id,
        revision=hold_seq,
        correlation_id=request_event_id,
        causation_id=request_event_id,
    )


def _outcome(
    data: ReferralDelivered | ReferralRejected | ReferralDeliveryFailed,
    req: ReferralRequested,
    request_event_id: str,
    revision: int = 0,
) -> Envelope:
    return new_event(
        data,
        source=req.destination,
        record_id=req.referral_id,
        revision=revision,
        correlation_id=request_event_id,
        causation_id=request_event_id,
    )
