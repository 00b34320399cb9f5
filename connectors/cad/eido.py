"""Pure mapping of a NENA EIDO (NENA-STA-021) JSON document into dispatch facts: the
document is translated into a :class:`~connectors.cad.calls.NormalizedCall`
(:func:`normalized_call`) and the facts are built by :func:`connectors.cad.calls.call_events`,
as for CSV rows.

Tolerates both spellings in circulation:

- published 1.0: ``eidoVersion``, ``lastUpdateTimeStamp``, ``incidentComponent`` (object),
  ``callComponent``, ``locationComponent``, the incident id in the document's ``$id`` or
  in the incident component's (``incidentComponent.$id``);
- 2020 draft: ``EIDOVersion``, ``LastUpdateTimeStamp``, ``incidentComponent`` (array),
  ``locationInformationComponent``, ``incidentTrackingIdentifier``.

Keys are matched case-insensitively; timestamps are RFC 3339 ``date-time`` values, whose
``T`` and ``Z`` may be lowercase. The incident id is ``<agency>:<incident id>`` from
``urn:emergency:uid:incidentid:<id>:<agency domain>`` (a profile may fix the agency). The
document's last-update time is its revision: the first revision seen of an incident
gives ``CallReceived`` (+ unit and disposition facts), a later one a ``CallRevised``.
Location payloads (PIDF-LO, civic addresses) are not copied into the log.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from connectors.cad.calls import NormalizedCall, UnitStatus, UnitStatusName, map_call
from connectors.cad.profile import Profile
from connectors.core.jsondoc import BadJson, parse_json
from connectors.core.records import MapResult, RawRecord, Rejection, RevisionKey
from hub.kernel.errors import PermanentError
from schemas.base import Area
from schemas.dispatch import UnitKind

_INCIDENT_URN = re.compile(r"incidentid:([^:]+):([A-Za-z0-9_.-]+?)(?::header)?$", re.IGNORECASE)
#: primaryUnitStatusRegistryText (letters only, case-folded) -> the unit status it reports
_UNIT_STATUS: dict[str, UnitStatusName] = {
    "dispatched": "dispatched",
    "assigned": "dispatched",
    "enroute": "enroute",
    "responding": "enroute",
    "onscene": "onscene",
    "arrived": "onscene",
    "atscene": "onscene",
    "cleared": "cleared",
    "available": "cleared",
    "released": "cleared",
}


class EidoError(PermanentError, ValueError):
    """The document is not a usable EIDO; the message says which element is wrong."""


def ci_get(obj: Any, *names: str) -> Any:
    """The value of the first of ``names`` present in ``obj`` (keys case-insensitive)."""
    if not isinstance(obj, dict):
        return None
    folded = {k.casefold(): v for k, v in obj.items() if isinstance(k, str)}
    for name in names:
        if name.casefold() in folded:
            return folded[name.casefold()]
    return None


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def parse_timestamp(value: Any, what: str) -> datetime:
    if not isinstance(value, str) or not value.strip():
        raise EidoError(f"{what}: missing timestamp")
    text = value.strip()
    if len(text) > 10 and text[10] == "t":  # RFC 3339 5.6: "T" and "Z" may be lowercase
        text = text[:10] + "T" + text[11:]
    if text.endswith("z"):
        text = text[:-1] + "Z"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise EidoError(f"{what}: not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        raise EidoError(f"{what}: timestamp has no UTC offset")
    return parsed.astimezone(UTC)


def incident_of(doc: dict[str, Any], profile: Profile) -> tuple[str, str]:
    """(agency, incident number) of an EIDO: from its incident tracking identifier or
    ``$id``, else from its incident component's (an object, or the first of an array)."""
    incidents = [i for i in as_list(ci_get(doc, "incidentComponent")) if isinstance(i, dict)]
    component = incidents[0] if incidents else {}
    for candidate in (
        ci_get(doc, "incidentTrackingIdentifier"),
        ci_get(doc, "$id"),
        ci_get(component, "incidentTrackingIdentifier"),
        ci_get(component, "$id"),
    ):
        if isinstance(candidate, str):
            m = _INCIDENT_URN.search(candidate.strip())
            if m:
                return (profile.agency or m.group(2)), m.group(1)
    raise EidoError("no incident tracking identifier (urn:emergency:uid:incidentid:<id>:<agency>)")


def parse_document(raw: bytes) -> dict[str, Any]:
    """The EIDO JSON object of ``raw``, else :class:`EidoError` (not UTF-8 or JSON, nested
    too deep, NUL characters: :func:`connectors.core.jsondoc.parse_json`)."""
    try:
        doc = parse_json(raw)
    except BadJson as exc:
        raise EidoError(str(exc)) from None
    if not isinstance(doc, dict):
        raise EidoError("an EIDO is a JSON object")
    return doc


#: a word of emergencyResourceTypeCommonRegistryText -> the unit kind (first match wins)
_UNIT_KINDS: tuple[tuple[str, UnitKind], ...] = (
    ("police", "police"),
    ("law", "police"),
    ("ems", "ems"),
    ("ambulance", "ems"),
    ("fire", "fire"),
    ("crisis", "co_responder"),
    ("mental", "co_responder"),
    ("behavioral", "co_responder"),
    ("clinician", "clinician"),
)


def _unit_kind(resource: dict[str, Any]) -> UnitKind:
    kind = str(ci_get(resource, "emergencyResourceTypeCommonRegistryText") or "").casefold()
    for word, unit in _UNIT_KINDS:
        if word in kind:
            return unit
    return "other"


def last_update(doc: dict[str, Any]) -> datetime:
    """The document's last-update time: its revision."""
    return parse_timestamp(ci_get(doc, "lastUpdateTimeStamp"), "lastUpdateTimeStamp")


def _received(calls: list[Any], incident: dict[str, Any], updated: datetime) -> datetime:
    """The earliest call start, else the incident's last update, else the document's."""
    started = [ci_get(c, "callStartTimestamp") for c in calls if ci_get(c, "callStartTimestamp")]
    if started:
        return min(parse_timestamp(s, "callComponent.callStartTimestamp") for s in started)
    if incident:
        return parse_timestamp(
            ci_get(incident, "lastUpdateTimeStamp"), "incidentComponent.lastUpdateTimeStamp"
        )
    return updated


def _call_types(calls: list[Any], incident: dict[str, Any]) -> tuple[str | None, str | None]:
    """(initial, final) call type: the call's local type, else the incident's internal, else
    its common-registry type; the final type prefers the incident's."""
    type_text = ci_get(incident, "incidentTypeInternalText")
    common = ci_get(incident, "incidentTypeCommonRegistryText")
    local_type = next((ci_get(c, "localCallType") for c in calls if ci_get(c, "localCallType")), None)
    initial = str(local_type or type_text or common) if (local_type or type_text or common) else None
    final = str(type_text or common) if (type_text or common) else initial
    return initial, final


def _units(doc: dict[str, Any]) -> tuple[UnitStatus, ...]:
    """The status of every resource whose status is a known one, in document order."""
    units: list[UnitStatus] = []
    for resource in as_list(ci_get(doc, "emergencyResourceComponent")):
        status = str(ci_get(resource, "primaryUnitStatusRegistryText") or "")
        known = _UNIT_STATUS.get(re.sub(r"[^a-z]", "", status.casefold()))
        if known is None:
            continue
        at = parse_timestamp(
            ci_get(resource, "lastUpdateTimeStamp"), "emergencyResourceComponent.lastUpdateTimeStamp"
        )
        unit = str(ci_get(resource, "emergencyResourceName", "$id") or "unit")
        units.append(UnitStatus(known, at, unit, _unit_kind(resource)))
    return tuple(units)


def _disposition(incident: dict[str, Any]) -> tuple[Any, Any, datetime | None]:
    """(code, text, time) of the primary disposition, else the last one."""
    dispositions = as_list(ci_get(incident, "dispositionComponent"))
    chosen = next((d for d in dispositions if ci_get(d, "dispositionPrimaryIndicator")), None) or (
        dispositions[-1] if dispositions else None
    )
    if chosen is None:
        return None, None, None
    code = ci_get(chosen, "dispositionCommonRegistryCode")
    label = ci_get(chosen, "dispositionDescriptionText")
    at_raw = ci_get(chosen, "lastUpdateTimeStamp")
    if (code is None and label is None) or not at_raw:
        return code, label, None
    return code, label, parse_timestamp(at_raw, "dispositionComponent.lastUpdateTimeStamp")


def normalized_call(doc: dict[str, Any], profile: Profile) -> NormalizedCall:
    """One EIDO document as a normalized call (pure); raises :class:`EidoError` for a
    document that is not a usable EIDO. Times are UTC (``source_timezone`` ``UTC``); the
    revision is the document's last-update time, which also dates its ``CallRevised``."""
    if ci_get(doc, "eidoVersion") is None:
        raise EidoError("not an EIDO: no eidoVersion / EIDOVersion")
    agency, number = incident_of(doc, profile)
    updated = last_update(doc)
    incident: dict[str, Any] = next(iter(as_list(ci_get(doc, "incidentComponent"))), {}) or {}
    calls = as_list(ci_get(doc, "callComponent"))
    received = _received(calls, incident, updated)
    initial, final = _call_types(calls, incident)
    priority = ci_get(incident, "incidentPriorityInternalText", "incidentCommonPriorityNumber")
    beat = ci_get(incident, "beatOrDispatchGroupText")
    units = _units(doc)
    code, label, disposition_at = _disposition(incident)
    return NormalizedCall(
        agency=agency,
        cad_number=number,
        received=received,
        source_timezone="UTC",
        revision=updated.isoformat(),
        revised_at=updated,
        call_type_initial=initial,
        call_type_final=final,
        priority=str(priority) if priority is not None else None,
        area=Area(beat=str(beat) if beat else None),
        units=units,
        disposition_code=code,
        disposition_text=label,
        disposition_at=disposition_at,
    )


class EidoMapper:
    """The :class:`connectors.core.records.Mapper` for EIDO documents (``record.raw`` is
    the JSON; ``record.fields`` the parsed object when the shell already parsed it)."""

    def __init__(self, profile: Profile, source: str | None = None) -> None:
        self.profile = profile
        self.source = source or profile.source

    def _doc(self, record: RawRecord) -> dict[str, Any]:
        return record.fields if isinstance(record.fields, dict) else parse_document(record.raw)

    def revision_key(self, record: RawRecord) -> RevisionKey | None:
        try:
            doc = self._doc(record)
            agency, number = incident_of(doc, self.profile)
            return RevisionKey(f"{agency}:{number}", last_update(doc).isoformat())
        except EidoError:
            return None

    def map(self, record: RawRecord, first_revision: str | None = None) -> MapResult:
        try:
            call = normalized_call(self._doc(record), self.profile)
        except EidoError as exc:
            return Rejection("parse", str(exc))
        return map_call(call, self.profile, source=self.source, first_revision=first_revision)


def eido_record(raw: bytes, ref: str) -> RawRecord:
    """A raw record for one EIDO document (parse problems become the record's problem)."""
    try:
        return RawRecord(ref=ref, raw=raw, fields=parse_document(raw))
    except EidoError as exc:
        return RawRecord(ref=ref, raw=raw, problem=str(exc))
