"""Repeat encounters (pure): per person (canonical pseudonym of a linked cluster), the
incidents in which they were the subject, the most contacts within any sliding window of
``repeat_window``, and whether they were ever enrolled in behavioral-health services (a
service enrolment or a completed referral whose service type the vocabulary marks
behavioral-health; housing, shelter, benefits do not count). The Colorado metric — share
of people with 3+ contacts who were enrolled in behavioral-health services — is computed
from these rows by :mod:`projections.queries`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any


def max_in_window(times: list[datetime], window: timedelta) -> int:
    """Most events within any closed window of length ``window`` (two-pointer sweep)."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] > window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def person_rows(
    person: str,
    members: Iterable[str],
    contacts: dict[str, datetime],
    services: list[datetime],
    window: timedelta,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(``person_summary`` row, ``person_contacts`` rows) of one canonical person.
    ``contacts`` maps incident id → contact time; ``services`` are the times the person
    was enrolled in behavioral-health services."""
    times = sorted(contacts.values())
    summary = {
        "person": person,
        "members": sorted(set(members)),
        "contacts": len(contacts),
        "first_contact_at": times[0] if times else None,
        "last_contact_at": times[-1] if times else None,
        "max_contacts_in_window": max_in_window(times, window),
        "enrolled_in_services": bool(services),
        "first_enrolled_at": min(services) if services else None,
    }
    rows = [{"person": person, "incident_id": i, "contact_at": t} for i, t in sorted(contacts.items())]
    return summary, rows
