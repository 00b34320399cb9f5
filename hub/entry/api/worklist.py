"""The case managers' frequent-user worklist, as a reader may see it (pure).

Rows come from :meth:`projections.queries.ReadModelReader.frequent_users` (the people in
the program's care with N+ behavioral-health contacts in the window). What leaves the API:
the person's pseudonym, contacts and last contact, enrolment status, open referrals and
consent state — and 42 CFR Part 2 facts (a substance-use referral or enrolment) only when
a recorded, unexpired, unrevoked Part 2 consent of that person names the reader's program
(:func:`hub.entry.api.roles.part2_permitted`); otherwise they are left out, unmarked, as
on a timeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from hub.entry.api.roles import Consent, Principal, part2_permitted

#: referral statuses that still need a case manager's follow-up
OPEN_REFERRAL_STATUSES = frozenset({"requested", "held_for_consent", "delivered", "accepted"})


def _consent(row: Mapping[str, Any], person: str) -> Consent | None:
    if row.get("granted_at") is None:
        return None
    return Consent(
        consent_id=row["consent_id"],
        person=person,
        recipients=tuple(row.get("recipients") or ()),
        scope=tuple(row.get("scope") or ()),
        granted_at=row["granted_at"],
        expires_at=row.get("expires_at"),
        revoked_at=row.get("revoked_at"),
    )


def _active(c: Consent, now: datetime) -> bool:
    return c.granted_at <= now and c.revoked_at is None and (c.expires_at is None or c.expires_at > now)


def worklist_entry(row: Mapping[str, Any], principal: Principal, now: datetime) -> dict[str, Any]:
    """One person's line of the worklist for ``principal`` at ``now``."""
    person = row["person"]
    consents = [c for r in row.get("consents", ()) if (c := _consent(r, person)) is not None]
    part2 = part2_permitted(principal, person, consents, now)
    referrals = [
        {k: r[k] for k in ("referral_id", "destination", "service_type", "status", "requested_at")}
        for r in row.get("referrals", ())
        if r["status"] in OPEN_REFERRAL_STATUSES and (part2 or not r.get("substance_use"))
    ]
    enrolments = [e for e in row.get("enrolments", ()) if part2 or not e.get("substance_use")]
    active = [c for c in consents if _active(c, now)]
    return {
        "person": person,
        "contacts": row["contacts"],
        "last_contact_at": row["last_contact_at"],
        "last_incident_id": row.get("last_incident_id"),
        "enrolled_in_services": bool(enrolments),
        "enrolments": [{"service_type": e["service_type"], "at": e["at"]} for e in enrolments],
        "open_referrals": referrals,
        "consent": {
            "general": any("general" in c.scope for c in active),
            "part2_for_program": part2,
            "expires_at": min((c.expires_at for c in active if c.expires_at is not None), default=None),
        },
    }


def worklist(rows: Sequence[Mapping[str, Any]], principal: Principal, now: datetime) -> list[dict[str, Any]]:
    return [worklist_entry(r, principal, now) for r in rows]
