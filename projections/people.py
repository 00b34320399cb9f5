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


def person_summary(
    person: str, members: Iterable[str], times: Iterable[datetime], services: list[datetime],
    window: timedelta,
) -> dict[str, Any]:
    """The ``person_summary`` row of one canonical person: ``times`` are their contact
    times (one per incident), ``services`` the times they were enrolled in
    behavioral-health services."""
    ordered = sorted(times)
    return summary_row(
        person, members, len(ordered), ordered[0] if ordered else None, ordered[-1] if ordered else None,
        max_in_window(ordered, window), services,
    )


def summary_row(
    person: str, members: Iterable[str], contacts: int, first: datetime | None, last: datetime | None,
    most_in_window: int, services: list[datetime],
) -> dict[str, Any]:
    """The ``person_summary`` row from its contact statistics (how many, first, last, most
    within the repeat window) — what :func:`person_summary` computes from the times, and
    the live fold maintains from the stored row without reading every contact."""
    return {
        "person": person,
        "members": sorted(set(members)),
        "contacts": contacts,
        "first_contact_at": first,
        "last_contact_at": last,
        "max_contacts_in_window": most_in_window,
        "enrolled_in_services": bool(services),
        "first_enrolled_at": min(services) if services else None,
    }


def contact_row(person: str, incident_id: str, at: datetime) -> dict[str, Any]:
    """One ``person_contacts`` row."""
    return {"person": person, "incident_id": incident_id, "contact_at": at}


def person_rows(
    person: str,
    members: Iterable[str],
    contacts: dict[str, datetime],
    services: list[datetime],
    window: timedelta,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(``person_summary`` row, ``person_contacts`` rows) of one canonical person.
    ``contacts`` maps incident id → contact time; ``services`` as for :func:`person_summary`."""
    summary = person_summary(person, members, contacts.values(), services, window)
    rows = [contact_row(person, i, t) for i, t in sorted(contacts.items())]
    return summary, rows
