"""Upcasters: pure functions that turn an older version of an event's JSON into the next
one. Applied on read, in a chain, until the type is current; the log is never rewritten.

To retire a version: keep its upcaster forever (old records stay in the log forever).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

# old type -> (next type, function from old data to next data)
UPCASTERS: dict[str, tuple[str, Upcaster]] = {}


def upcaster(old: str, new: str) -> Callable[[Upcaster], Upcaster]:
    def decorate(fn: Upcaster) -> Upcaster:
        UPCASTERS[old] = (new, fn)
        return fn

    return decorate


def upcast(event_type: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    seen = set()
    while event_type in UPCASTERS:
        if event_type in seen:
            raise ValueError(f"upcaster cycle at {event_type}")
        seen.add(event_type)
        event_type, fn = UPCASTERS[event_type]
        data = fn(dict(data))
    return event_type, data


@upcaster("cad.call.received.v1", "cad.call.received.v2")
def _call_received_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 had flat ``precinct``/``sector``/``beat`` and naive local times with no zone;
    v2 groups the area and records the agency's zone (v1 feeds were all UTC)."""
    area = {k: data.pop(k, None) for k in ("precinct", "sector", "beat")}
    area["district"] = None
    data["area"] = area
    data.setdefault("source_timezone", "UTC")
    return data


def _stated_outcome(data: dict[str, Any]) -> dict[str, Any]:
    """Drop the outcome a fact carried; when the fact had no code or text of its own (clear
    or sealed), the outcome it stated (in the hub's names, which every vocabulary
    understands) becomes its code. A sealed text (``disposition_note``) stays sealed."""
    outcome = data.pop("outcome", None)
    words = ("disposition_code", "disposition_text", "disposition_note")
    if outcome is not None and all(data.get(w) is None for w in words):
        data["disposition_code"] = outcome
    return data


@upcaster("cad.call.received.v2", "cad.call.received.v3")
def _call_received_v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    """v2 carried the meaning (category, behavioral-health flag) given at ingest; v3 keeps the
    source's words only and the vocabulary is applied by the projections. No vocabulary is
    named: the projection takes the one claiming the call's agency. Sealed remarks and the
    coordinates (already at the profile's precision) are kept as they were."""
    data.pop("category", None)
    data.pop("behavioral_health", None)
    return data


@upcaster("cad.call.disposition.v1", "cad.call.disposition.v2")
def _call_disposition_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 carried the outcome mapped at ingest; v2 keeps the code and text only (a sealed
    clearance text, ``disposition_note``, as it was)."""
    return _stated_outcome(data)


@upcaster("cad.call.revised.v1", "cad.call.revised.v2")
def _call_revised_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 carried category, behavioral-health flag and outcome; v2 keeps the source's words
    (and adds corrected times, absent from v1)."""
    data.pop("category", None)
    data.pop("behavioral_health", None)
    return _stated_outcome(data)


@upcaster("cad.call.received.v3", "cad.call.received.v4")
def _call_received_v3_to_v4(data: dict[str, Any]) -> dict[str, Any]:
    """v4 adds the county-defined fields (``custom``); v3 calls carried none."""
    data.setdefault("custom", {})
    return data


@upcaster("cad.call.revised.v2", "cad.call.revised.v3")
def _call_revised_v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    """v3 adds the county-defined fields of the revised row (``custom``); v2 revisions
    carried none (so they change no county field)."""
    data.setdefault("custom", {})
    return data


@upcaster("encounter.intake.recorded.v1", "encounter.intake.recorded.v2")
def _intake_recorded_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v2 adds the county-defined fields of the form (``custom``); v1 forms had none."""
    data.setdefault("custom", {})
    return data


@upcaster("case.opened.v1", "case.opened.v2")
def _case_opened_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v2 adds the county-defined fields of the case record; v1 records had none."""
    data.setdefault("custom", {})
    return data


@upcaster("case.contact.logged.v1", "case.contact.logged.v2")
def _contact_logged_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v2 adds the county-defined fields of the case record; v1 records had none."""
    data.setdefault("custom", {})
    return data
