"""Who may read what: the role policy of the read API as pure functions (no I/O).

Roles and what they see:

- ``dispatcher``: CAD (dispatch) facts of an incident only; no person timelines, no
  aggregates, no clinical facts.
- ``clinician`` / ``case_manager``: timelines of their own program's people and incidents,
  including clinical facts; 42 CFR Part 2 (substance-use) facts only under a recorded,
  unexpired, unrevoked consent whose recipients include their program. They alone submit
  encounter forms (the intake), for their own program only.
- ``analyst``: de-identified aggregates only (small cells suppressed by the read models'
  queries, :mod:`projections.queries`); never a timeline.
- ``auditor``: verification results, dead-letter metadata and the access log.
- ``admin``: everything an operator needs, but never Part 2 facts: those go only to a
  program role under consent (no role may bypass Part 2); no encounter forms and no
  frequent-user worklist either (the program roles' own work).

Invariants (unit- and property-tested):

- :func:`authorize` is total over (role, family): every pair is either allowed or raises
  :class:`Forbidden`; the matrix :data:`POLICY` is the single source of truth;
- :func:`filter_timeline` never returns an entry the role may not see, never returns a Part 2
  entry without a covering consent, never returns a Part 2 consent (granted or revoked) to a
  reader it does not name as a recipient (:func:`consent_entry_visible`), and never invents
  entries (the result is a sub-sequence);
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from hub.kernel.errors import PermanentError


class Role(StrEnum):
    DISPATCHER = "dispatcher"
    CLINICIAN = "clinician"
    CASE_MANAGER = "case_manager"
    ANALYST = "analyst"
    AUDITOR = "auditor"
    ADMIN = "admin"


class Family(StrEnum):
    """Endpoint families of the read API."""

    INCIDENT_TIMELINE = "incident_timeline"
    PERSON_TIMELINE = "person_timeline"
    AGGREGATES = "aggregates"  # outcome counts, referral funnel, repeat encounters
    PIPELINE = "pipeline"  # lag, dead-letter counts, verification summary (no PHI)
    DEADLETTERS = "deadletters"
    VERIFICATION = "verification"
    ACCESS_LOG = "access_log"
    INTAKE = "intake"  # submit and amend encounter forms, find the incident to link them to
    WORKLIST = "worklist"  # the frequent-user worklist of a program's people (person-level)


PROGRAM_ROLES = frozenset({Role.CLINICIAN, Role.CASE_MANAGER})

POLICY: dict[Family, frozenset[Role]] = {
    Family.INCIDENT_TIMELINE: frozenset({Role.DISPATCHER, Role.CLINICIAN, Role.CASE_MANAGER, Role.ADMIN}),
    Family.PERSON_TIMELINE: frozenset({Role.CLINICIAN, Role.CASE_MANAGER, Role.ADMIN}),
    Family.AGGREGATES: frozenset({Role.ANALYST, Role.ADMIN}),
    Family.PIPELINE: frozenset({Role.ANALYST, Role.AUDITOR, Role.ADMIN}),
    Family.DEADLETTERS: frozenset({Role.AUDITOR, Role.ADMIN}),
    Family.VERIFICATION: frozenset({Role.AUDITOR, Role.ADMIN}),
    Family.ACCESS_LOG: frozenset({Role.AUDITOR, Role.ADMIN}),
    Family.INTAKE: frozenset({Role.CLINICIAN, Role.CASE_MANAGER}),
    Family.WORKLIST: frozenset({Role.CLINICIAN, Role.CASE_MANAGER}),
}

#: Families whose reads disclose person-level data: each read needs a purpose and is logged.
PERSON_LEVEL = frozenset({Family.INCIDENT_TIMELINE, Family.PERSON_TIMELINE, Family.WORKLIST})

#: what a person-level read's subject must look like (the routes' path patterns)
PSEUDONYM_PATTERN = r"^psn_[0-9a-f]{32}$"
#: ``<agency>:<CAD number>``; no control characters (a NUL cannot reach PostgreSQL), at most 200
INCIDENT_PATTERN = r"^[A-Za-z0-9_.-]{1,64}:[^\x00-\x1f\x7f]{1,135}$"
#: a free-text filter (the access log's ``subject``): printable, at most 200 characters
FILTER_PATTERN = r"^[^\x00-\x1f\x7f]{1,200}$"
SUBJECT_PATTERNS: dict[Family, re.Pattern[str]] = {
    Family.INCIDENT_TIMELINE: re.compile(INCIDENT_PATTERN),
    Family.PERSON_TIMELINE: re.compile(PSEUDONYM_PATTERN),
}
#: what the access log records instead of a subject that is not a well-formed id (it could
#: be anything a caller typed, a name included)
INVALID_SUBJECT = "<invalid>"


def loggable_subject(family: Family, value: str | None) -> str:
    """``value`` when it is a well-formed subject id of ``family`` (an incident id or a
    pseudonym, never a clear identifier), otherwise :data:`INVALID_SUBJECT`."""
    pattern = SUBJECT_PATTERNS.get(family)
    if value is None or pattern is None or len(value) > 200 or not pattern.fullmatch(value):
        return INVALID_SUBJECT
    return value


def loggable_purpose(value: str | None) -> str:
    """The canonical purpose when ``value`` is an accepted one, else ``<none>`` (nothing
    declared) or ``<invalid>`` (free text is never copied into the log)."""
    if value is None or not value.strip():
        return "<none>"
    try:
        return normalize_purpose(value)
    except BadPurpose:
        return "<invalid>"

#: Purposes of use accepted for person-level reads (HL7 PurposeOfUse, lower-cased words).
PURPOSES = frozenset(
    {"treatment", "emergency", "care-coordination", "operations", "audit", "legal", "quality"}
)


class Forbidden(PermanentError):
    """The principal's role or program does not cover the request (HTTP 403)."""


class BadPurpose(PermanentError, ValueError):
    """A person-level read without an accepted purpose of use (HTTP 400)."""


class UnknownPurpose(BadPurpose):
    """A purpose of use was declared but is not an accepted one."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller, taken from a verified token."""

    sub: str
    role: Role
    program: str | None = None
    issuer: str = ""
    token_id: str | None = None


def authorize(principal: Principal, family: Family) -> None:
    """Raise :class:`Forbidden` unless ``principal``'s role may use ``family``.
    Program roles without a program claim may not read person-level data."""
    if principal.role not in POLICY[family]:
        raise Forbidden(f"role {principal.role} may not read {family}")
    program_scoped = family in PERSON_LEVEL or family is Family.INTAKE
    if program_scoped and principal.role in PROGRAM_ROLES and not principal.program:
        raise Forbidden(f"role {principal.role} needs a program claim to use {family}")


def allowed_families(role: Role) -> frozenset[Family]:
    return frozenset(f for f, roles in POLICY.items() if role in roles)


def normalize_purpose(value: str | None) -> str:
    """The canonical purpose of use, or :class:`BadPurpose`."""
    if value is None or not value.strip():
        raise BadPurpose("a purpose of use is required (X-Purpose-Of-Use header or ?purpose=)")
    word = value.strip().lower().replace("_", "-").replace(" ", "-")
    if word not in PURPOSES:
        raise UnknownPurpose(f"unknown purpose of use; accepted: {', '.join(sorted(PURPOSES))}")
    return word


# --- timelines -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Consent:
    """A recorded Part 2 (or general) disclosure consent, as the read models hold it."""

    consent_id: str
    person: str
    recipients: tuple[str, ...]
    scope: tuple[str, ...]
    granted_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def covers(self, program: str | None, at: datetime) -> bool:
        """Part 2 disclosure to ``program`` at ``at`` is permitted by this consent."""
        if program is None or "part2" not in self.scope:
            return False
        if program not in self.recipients and "*" not in self.recipients:
            return False
        if at < self.granted_at:
            return False
        if self.revoked_at is not None and at >= self.revoked_at:
            return False
        return not (self.expires_at is not None and at >= self.expires_at)


@dataclass(frozen=True)
class TimelineScope:
    """Facts about the timeline's subject that decide what the principal sees.

    ``programs``: the programs that have this person (or, for an incident, the people and
    co-responders of this incident) in their care: case opened, clinician engaged.
    ``consents``: consents of the people on the timeline.
    """

    programs: frozenset[str]
    consents: tuple[Consent, ...] = ()


def is_part2(entry: Mapping[str, Any]) -> bool:
    """Substance-use facts: a referral or a service enrolment flagged ``substance_use``."""
    if entry.get("substance_use"):
        return True
    data = entry.get("data")
    return isinstance(data, Mapping) and bool(data.get("substance_use"))


def part2_permitted(
    principal: Principal, person: str | None, consents: Iterable[Consent], at: datetime
) -> bool:
    """Part 2 facts go only to program roles (the treating program) under a covering consent."""
    if principal.role not in PROGRAM_ROLES:
        return False
    return any(c.covers(principal.program, at) for c in consents if person is None or c.person == person)


def check_timeline_scope(principal: Principal, scope: TimelineScope, family: Family) -> None:
    """Program roles only see their own program's people and incidents (else 403)."""
    authorize(principal, family)
    if principal.role in PROGRAM_ROLES and principal.program not in scope.programs:
        raise Forbidden(f"the subject is not in program {principal.program}'s care")


def filter_timeline(
    entries: Sequence[Mapping[str, Any]],
    principal: Principal,
    scope: TimelineScope,
    now: datetime,
) -> list[dict[str, Any]]:
    """The entries ``principal`` may see, in their original order.

    Each entry is a mapping with at least ``family`` (the event family: dispatch,
    encounter, referral, case, consent, identity, erasure); Part 2 entries carry
    ``substance_use`` (top level or in ``data``) and ``person``.
    """
    visible: list[dict[str, Any]] = []
    for entry in entries:
        if principal.role == Role.DISPATCHER and entry.get("family") != "dispatch":
            continue
        if principal.role not in POLICY[Family.INCIDENT_TIMELINE] | POLICY[Family.PERSON_TIMELINE]:
            continue
        if entry.get("family") == "consent":
            if consent_entry_visible(entry, principal, scope.consents):
                visible.append(dict(entry))
            continue
        if is_part2(entry) and not part2_permitted(principal, entry.get("person"), scope.consents, now):
            continue
        visible.append(dict(entry))
    return visible


def consent_entry_visible(
    entry: Mapping[str, Any], principal: Principal, consents: Iterable[Consent]
) -> bool:
    """Whether ``principal`` may see a consent fact (granted or revoked). A Part 2 consent
    is itself Part 2 — its existence discloses substance-use treatment — so it shows only
    to a program role among its recipients (whether or not it is still in force); a
    general consent shows like any clinical fact. A consent whose grant is not known (a
    revocation without its grant) counts as Part 2 and is shown to no one."""
    data = entry.get("data")
    data = data if isinstance(data, Mapping) else {}
    cid = data.get("consent_id")
    known = {c.consent_id: c for c in consents}
    consent = known.get(cid) if isinstance(cid, str) else None
    if consent is None and str(entry.get("event_type", "")).startswith("consent.granted."):
        consent = Consent(
            consent_id=str(cid),
            person=str(data.get("person") or entry.get("person") or ""),
            recipients=tuple(data.get("recipients") or ()),
            scope=tuple(data.get("scope") or ()),
            granted_at=datetime.min,
        )
    if consent is None:
        return False
    if "part2" not in consent.scope:
        return True
    return principal.role in PROGRAM_ROLES and (
        principal.program in consent.recipients or "*" in consent.recipients
    )
