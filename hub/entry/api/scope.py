"""Derive a timeline's :class:`~hub.entry.api.roles.TimelineScope` from its own entries (pure).

The programs caring for a subject are those that opened a case for a person on it or
engaged a clinician on its incidents; its consents are the ``consent.granted`` facts not
followed by a ``consent.revoked`` of the same consent id. Because the facts come from the
log, the policy decision is reproducible from the log alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from hub.entry.api.roles import Consent, TimelineScope


def _time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def scope_from_entries(entries: Iterable[Mapping[str, Any]]) -> TimelineScope:
    programs: set[str] = set()
    granted: dict[str, Consent] = {}
    revoked: dict[str, datetime] = {}
    for entry in entries:
        data = entry.get("data") or {}
        kind = str(entry.get("event_type", ""))
        if kind.startswith(("case.opened.", "encounter.clinician.engaged.")) and data.get("program"):
            programs.add(str(data["program"]))
        elif kind.startswith("consent.granted."):
            at = _time(data.get("at") or entry.get("at"))
            if at is not None:
                granted[data["consent_id"]] = Consent(
                    consent_id=data["consent_id"],
                    person=data.get("person", entry.get("person", "")),
                    recipients=tuple(data.get("recipients", ())),
                    scope=tuple(data.get("scope", ())),
                    granted_at=at,
                    expires_at=_time(data.get("expires_at")),
                )
        elif kind.startswith("consent.revoked."):
            at = _time(data.get("at") or entry.get("at"))
            if at is not None and data.get("consent_id"):
                revoked[data["consent_id"]] = at
    consents = tuple(
        Consent(**{**c.__dict__, "revoked_at": revoked.get(cid)}) for cid, c in sorted(granted.items())
    )
    return TimelineScope(programs=frozenset(programs), consents=consents)
