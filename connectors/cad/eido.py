"""Pure mapping of a NENA EIDO (NENA-STA-021) JSON document into dispatch facts.

Tolerates both spellings in circulation:

- published 1.0: ``eidoVersion``, ``lastUpdateTimeStamp``, ``incidentComponent`` (object),
  ``callComponent``, ``locationComponent``, the incident id in the document's ``$id``;
- 2020 draft: ``EIDOVersion``, ``LastUpdateTimeStamp``, ``incidentComponent`` (array),
  ``locationInformationComponent``, ``incidentTrackingIdentifier``.

Keys are matched case-insensitively. The incident id is ``<agency>:<incident id>`` from
``urn:emergency:uid:incidentid:<id>:<agency domain>`` (a profile may fix the agency). The
document's last-update time is its revision: the first revision seen of an incident
gives ``CallReceived`` (+ unit and disposition facts), a later one a ``CallRevised``.
Location payloads (PIDF-LO, civic addresses) are not copied into the log.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from connectors.cad.mapping import INITIAL_REVISION, categorize, is_behavioral_health, map_disposition
from connectors.cad.profile import Profile
from connectors.core.records import Mapped, MapResult, RawRecord, Rejection, RevisionKey
from hub.kernel.errors import PermanentError
from schemas.base import Area
from schemas.dispatch import (
    CallDisposition,
    CallReceived,
    CallRevised,
    UnitCleared,
    UnitDispatched,
    UnitEnRoute,
    UnitOnScene,
)
from schemas.envelope import Envelope, new_event

_INCIDENT_URN = re.compile(r"incidentid:([^:]+):([A-Za-z0-9_.-]+?)(?::header)?$", re.IGNORECASE)
_UNIT_STATUS = {
    "dispatched": UnitDispatched,
    "assigned": UnitDispatched,
    "enroute": UnitEnRoute,
    "responding": UnitEnRoute,
    "onscene": UnitOnScene,
    "arrived": UnitOnScene,
    "atscene": UnitOnScene,
    "cleared": UnitCleared,
    "available": UnitCleared,
    "released": UnitCleared,
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
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise EidoError(f"{what}: not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        raise EidoError(f"{what}: timestamp has no UTC offset")
    return parsed.astimezone(UTC)


def incident_of(doc: dict[str, Any], profile: Profile) -> tuple[str, str]:
    """(agency, incident number) of an EIDO."""
    for candidate in (ci_get(doc, "incidentTrackingIdentifier"), ci_get(doc, "$id")):
        if isinstance(candidate, str):
            m = _INCIDENT_URN.search(candidate.strip())
            if m:
                return (profile.agency or m.group(2)), m.group(1)
    raise EidoError("no incident tracking identifier (urn:emergency:uid:incidentid:<id>:<agency>)")


def parse_document(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EidoError(f"not JSON: {exc.__class__.__name__}") from None
    if not isinstance(doc, dict):
        raise EidoError("an EIDO is a JSON object")
    return doc


def _unit_kind(resource: dict[str, Any]) -> str:
    kind = str(ci_get(resource, "emergencyResourceTypeCommonRegistryText") or "").casefold()
    for word, unit in (
        ("police", "police"),
        ("law", "police"),
        ("ems", "ems"),
        ("ambulance", "ems"),
        ("fire", "fire"),
        ("crisis", "co_responder"),
        ("mental", "co_responder"),
        ("behavioral", "co_responder"),
        ("clinician", "clinician"),
    ):
        if word in kind:
            return unit
    return "other"


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
            return RevisionKey(f"{agency}:{number}", self._revision(doc))
        except EidoError:
            return None

    @staticmethod
    def _revision(doc: dict[str, Any]) -> str:
        return parse_timestamp(ci_get(doc, "lastUpdateTimeStamp"), "lastUpdateTimeStamp").isoformat()

    def map(self, record: RawRecord, first_revision: str | None = None) -> MapResult:
        try:
            return self._map(self._doc(record), first_revision)
        except EidoError as exc:
            return Rejection("parse", str(exc))

    def _map(self, doc: dict[str, Any], first_revision: str | None) -> MapResult:
        p = self.profile
        version = ci_get(doc, "eidoVersion")
        if version is None:
            raise EidoError("not an EIDO: no eidoVersion / EIDOVersion")
        agency, number = incident_of(doc, p)
        incident_id = f"{agency}:{number}"
        revision = self._revision(doc)
        incident = next(iter(as_list(ci_get(doc, "incidentComponent"))), {}) or {}
        calls = as_list(ci_get(doc, "callComponent"))
        started = [ci_get(c, "callStartTimestamp") for c in calls if ci_get(c, "callStartTimestamp")]
        if started:
            received = min(parse_timestamp(s, "callComponent.callStartTimestamp") for s in started)
        elif incident:
            received = parse_timestamp(
                ci_get(incident, "lastUpdateTimeStamp"), "incidentComponent.lastUpdateTimeStamp"
            )
        else:
            received = datetime.fromisoformat(revision)

        type_text = ci_get(incident, "incidentTypeInternalText")
        common = ci_get(incident, "incidentTypeCommonRegistryText")
        local_type = next((ci_get(c, "localCallType") for c in calls if ci_get(c, "localCallType")), None)
        initial = str(local_type or type_text or common) if (local_type or type_text or common) else None
        final = str(type_text or common) if (type_text or common) else initial
        bh = is_behavioral_health(initial, final, p)
        category = categorize(initial, final, bh, p)
        priority = ci_get(incident, "incidentPriorityInternalText", "incidentCommonPriorityNumber")
        beat = ci_get(incident, "beatOrDispatchGroupText")
        area = Area(beat=str(beat) if beat else None)

        def event(data: Any, record_id: str = number, revision_: str = INITIAL_REVISION) -> Envelope:
            return new_event(data, source=self.source, record_id=f"{agency}:{record_id}", revision=revision_)

        events = [
            event(
                CallReceived(
                    incident_id=incident_id,
                    agency=agency,
                    cad_number=number,
                    at=received,
                    source_timezone="UTC",
                    call_type_initial=initial,
                    call_type_final=final,
                    priority=str(priority) if priority is not None else None,
                    category=category,  # type: ignore[arg-type]
                    behavioral_health=bh,
                    area=area,
                )
            )
        ]
        for resource in as_list(ci_get(doc, "emergencyResourceComponent")):
            status = str(ci_get(resource, "primaryUnitStatusRegistryText") or "")
            cls = _UNIT_STATUS.get(re.sub(r"[^a-z]", "", status.casefold()))
            if cls is None:
                continue
            unit = str(ci_get(resource, "emergencyResourceName", "$id") or "unit")
            at = parse_timestamp(
                ci_get(resource, "lastUpdateTimeStamp"), "emergencyResourceComponent.lastUpdateTimeStamp"
            )
            events.append(
                event(
                    cls(incident_id=incident_id, unit_id=unit, unit_kind=_unit_kind(resource), at=at),  # type: ignore[arg-type]
                    f"{number}/{unit}",
                    at.isoformat(),
                )
            )
        dispositions = as_list(ci_get(incident, "dispositionComponent"))
        chosen = next((d for d in dispositions if ci_get(d, "dispositionPrimaryIndicator")), None) or (
            dispositions[-1] if dispositions else None
        )
        outcome: tuple[str, bool] | None = None
        code = label = None
        if chosen is not None:
            code = ci_get(chosen, "dispositionCommonRegistryCode")
            label = ci_get(chosen, "dispositionDescriptionText")
            outcome = map_disposition(code, label, p)
            if outcome is not None:
                at_raw = ci_get(chosen, "lastUpdateTimeStamp")
                at = (
                    parse_timestamp(at_raw, "dispositionComponent.lastUpdateTimeStamp")
                    if at_raw
                    else received
                )
                events.append(
                    event(
                        CallDisposition(
                            incident_id=incident_id,
                            at=at,
                            disposition_code=code,
                            disposition_text=label,
                            outcome=outcome[0],  # type: ignore[arg-type]
                        )
                    )
                )
        if first_revision is not None and revision != first_revision:
            events.append(
                event(
                    CallRevised(
                        incident_id=incident_id,
                        at=datetime.fromisoformat(revision),
                        revision=revision,
                        call_type_final=final,
                        priority=str(priority) if priority is not None else None,
                        category=category,
                        behavioral_health=bh,
                        area=area,  # type: ignore[arg-type]
                        disposition_code=code,
                        disposition_text=label,
                        outcome=outcome[0] if outcome else None,  # type: ignore[arg-type]
                    ),
                    revision_=revision,
                )
            )
        return Mapped(tuple(events), unknown_disposition=outcome is not None and not outcome[1])


def eido_record(raw: bytes, ref: str) -> RawRecord:
    """A raw record for one EIDO document (parse problems become the record's problem)."""
    try:
        return RawRecord(ref=ref, raw=raw, fields=parse_document(raw))
    except EidoError as exc:
        return RawRecord(ref=ref, raw=raw, problem=str(exc))
