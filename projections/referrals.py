"""Referral funnel (pure): requested → delivered → accepted → completed, from the set of
one referral's facts. Stage times are the earliest fact of each stage, so arrival order
and duplicates do not matter; the status is the furthest stage reached, a terminal
answer (declined / cancelled / rejected / delivery failed) counting when nothing later
happened.

The funnel is monotone: a referral that reached a stage passed through every earlier
one. An EHR that answers "completed" (or "in progress") without a separate "accepted" —
or a poll that missed it — still accepted the referral, and any EHR answer (accepted,
declined, completed, cancelled) means the referral was delivered. Such a stage is
*implied*: counted as reached (``furthest_stage``, listed in ``implied_stages``) but its
time stays unknown (``<stage>_at`` is null: only observed facts carry times), and the
time spent entering or leaving it is unknown too (the ``seconds_…`` columns are null)
rather than invented. The request itself is never implied: while only answers are
known, ``furthest_stage`` is null (the referral enters the funnel with its request)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from projections.facts import Fact, with_payload
from schemas.referral import (
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

FUNNEL_STAGES = ("requested", "delivered", "accepted", "completed")
STATUSES = ("requested", "held_for_consent", "delivery_failed", "rejected", "delivered", "declined",
            "cancelled", "accepted", "completed")


def _first(facts: list[Fact], *kinds: type) -> datetime | None:
    times = [f.at for f in facts if isinstance(f.payload, kinds)]
    return min(times) if times else None


def _secs(a: datetime | None, b: datetime | None) -> float | None:
    return None if a is None or b is None else max(0.0, (b - a).total_seconds())


def reached_stages(observed: dict[str, datetime | None], answered: bool) -> tuple[str | None, list[str]]:
    """(furthest funnel stage reached, implied stages) from the observed stage times.
    ``answered``: the EHR sent any answer (which implies delivery). Pure; monotone by
    construction — every stage before the furthest one counts as reached."""
    if observed.get("requested") is None:
        return None, []
    furthest = 0
    for i, stage in enumerate(FUNNEL_STAGES):
        if observed.get(stage) is not None:
            furthest = i
    if answered:
        furthest = max(furthest, FUNNEL_STAGES.index("delivered"))
    implied = [s for s in FUNNEL_STAGES[: furthest + 1] if observed.get(s) is None]
    return FUNNEL_STAGES[furthest], implied


def referral_row(referral_id: str, facts: Iterable[Fact]) -> dict[str, Any]:
    facts = sorted(facts, key=lambda f: f.order)
    requested = with_payload(facts, ReferralRequested)
    req = requested[0][1] if requested else None
    sent = [f.payload for f in facts if isinstance(f.payload, ReferralDelivered | ReferralRejected |
                                                   ReferralDeliveryFailed | ReferralHeldForConsent)]
    times = {
        "requested": _first(facts, ReferralRequested),
        "held_for_consent": _first(facts, ReferralHeldForConsent),
        "delivery_failed": _first(facts, ReferralDeliveryFailed),
        "rejected": _first(facts, ReferralRejected),
        "delivered": _first(facts, ReferralDelivered),
        "declined": _first(facts, ReferralDeclined),
        "cancelled": _first(facts, ReferralCancelled),
        "accepted": _first(facts, ReferralAccepted),
        "completed": _first(facts, ReferralCompleted),
    }
    status = "requested"
    for name in STATUSES:
        if times[name] is not None:
            status = name
    if status == "requested" and times["requested"] is None:
        status = "unknown"  # answers arrived before the request itself
    closed = [t for k in ("declined", "cancelled", "rejected", "delivery_failed")
              if (t := times[k]) is not None]
    delivered = times["delivered"]
    accepted = times["accepted"]
    completed = times["completed"]
    answered = any(times[k] is not None for k in ("accepted", "declined", "completed", "cancelled"))
    furthest, implied = reached_stages(times, answered)
    return {
        "referral_id": referral_id,
        "person": facts[0].person if facts else None,
        "incident_id": req.incident_id if req else None,
        "destination": req.destination if req else (sent[0].destination if sent else None),
        "channel": req.channel if req else None,
        "service_type": req.service_type if req else None,
        "substance_use": req.substance_use if req else False,
        "requested_at": times["requested"],
        "delivered_at": delivered,
        "accepted_at": accepted,
        "completed_at": completed,
        "closed_at": min(closed) if closed else None,
        "status": status,
        "furthest_stage": furthest,
        "implied_stages": implied,
        "seconds_requested_to_delivered": _secs(times["requested"], delivered),
        "seconds_delivered_to_accepted": _secs(delivered, accepted),
        "seconds_accepted_to_completed": _secs(accepted, completed),
    }
