"""Pure mapping of one case-management record into case facts.

Record (JSON object, as the case system's REST API and webhooks send it)::

    {"record_id": "...", "record_type": "case_opened" | "contact_logged" |
     "service_enrolled" | "case_closed" | "referral_created", "case_id": "...",
     "person": {"system": "mpi:county", "id": "MPI-1234567"},
     "occurred_at": "<ISO 8601 with offset>", "version": 1,
     "cad_incident_id": "AGENCY:123" | "cad_incident_number": "123" (+ "cad_agency"),
     ... type-specific fields (program, contact_kind, note, service_type, provider,
     substance_use, reason; a referral: referral_id, destination, service_type, priority,
     substance_use, reason, program; a case opening may carry "demographics": {"race",
     "ethnicity", "gender", "birth_date", "age_band"}, sealed like a note; a case opening or
     a contact may carry "custom": {field: value} — the county's fields declared for ``case``)}

County-defined fields (:mod:`hub.kernel.custom_fields`): a case opening's or a contact's
``custom`` object is checked against the fields the county declared with ``case`` among
their sources — an undeclared field, a value that is not one of the field's, or ``custom``
on another record type rejects the record naming ``custom.<field>`` — and kept as given; a
field declared sensitive is sealed with the person's key (``custom_sealed``), never in clear.

A ``referral_created`` record becomes the same ``referral.requested`` fact the encounter
intake makes (:func:`connectors.referrals.request.referral_request`), so the delivery
workers send it whichever system the clinician used; its destination must be one of the
component's ``referral_destinations`` (destination → channel of its delivery worker), and
its id is ``case-<referral_id>``.

Invariants: the person identifier never enters the log: it becomes a pseudonym keyed
HMAC over (system, id); a contact note is sealed with the person's key (dropped when no
keyring is available or the person was erased, never stored clear); mapping does no I/O:
the mapper is a :class:`connectors.core.records.SealingMapper`, so the runner resolves the
keys of a batch's noted contacts first (:meth:`CaseMapper.persons_to_seal`) and maps with
that snapshot (:meth:`CaseMapper.with_keyring`) — a key-store outage backs the runner off
instead of rejecting valid records; a case-closure
reason enters the log only as a code from :data:`CLOSURE_REASONS` (free text such as
"moved to inpatient detox" is clinical narrative: it becomes ``other``); event ids come
from (source, record id, version), so the same record polled and pushed by webhook is one
fact.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, get_args

from connectors.core.recorded import MapperConfig
from connectors.core.records import Mapped, MapResult, RawRecord, Rejection, RevisionKey
from connectors.referrals.request import referral_request
from hub.kernel.crypto import KeyDestroyedError, Keyring, seal, seal_context
from hub.kernel.custom_fields import FieldDef
from hub.kernel.errors import PermanentError
from hub.kernel.identity import pseudonymize
from schemas.case import CaseClosed, CaseOpened, ContactLogged, ServiceEnrolled
from schemas.demographics import normalized
from schemas.envelope import new_event
from schemas.referral import Channel, Priority

#: the identifier namespace of a person given without one, unless a component configures its own
DEFAULT_NAMESPACE = "mpi:county"
RECORD_TYPES = ("case_opened", "contact_logged", "service_enrolled", "case_closed", "referral_created")
PRIORITIES: tuple[str, ...] = get_args(Priority)
#: what a case system's referral id may look like (it becomes part of the hub's referral id)
REFERRAL_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
CONTACT_KINDS = ("in_person", "phone", "outreach", "video", "other")
#: Case-closure reasons kept as codes; any other text (possibly narrative PHI) → ``other``.
CLOSURE_REASONS = (
    "goals_met", "lost_contact", "moved", "declined", "transferred", "referred_out",
    "hospitalized", "incarcerated", "deceased", "administrative", "other",
)


def closure_reason(value: str) -> str:
    """The closure code of a case system's reason (case, spaces and hyphens ignored)."""
    code = "_".join(value.casefold().replace("-", " ").split())
    return code if code in CLOSURE_REASONS else "other"


class CaseRecordError(PermanentError, ValueError):
    """The record lacks a field or has one in the wrong form (message names the field)."""


def _req(rec: dict[str, Any], name: str) -> str:
    value = rec.get(name)
    if value is None or not str(value).strip():
        raise CaseRecordError(f"{name}: missing")
    return str(value).strip()


def _time(rec: dict[str, Any], name: str) -> datetime:
    raw = _req(rec, name)
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise CaseRecordError(f"{name}: not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise CaseRecordError(f"{name}: time has no UTC offset")
    return parsed.astimezone(UTC)


class CaseMapping(MapperConfig):
    """What a case component's mapper is built from besides keys: the ``source`` of its
    events, the identifier ``namespace`` of persons given without one (it feeds the person
    pseudonym) and the ``agency`` of CAD incidents given without one. Recorded by the
    component (kind ``cases``, refs ``cases@sha256:<16 hex>``, see
    :mod:`connectors.core.recorded`) so a re-driven record maps as the live one did."""

    KIND: ClassVar[str] = "cases"

    source: str
    namespace: str = DEFAULT_NAMESPACE
    agency: str | None = None
    referral_destinations: dict[str, Literal["fhir", "hl7v2"]] = {}

    @property
    def ref_name(self) -> str:
        return self.KIND

    def mapper(self, pseudonym_key: bytes, keyring: Keyring | None = None,
               custom_fields: Mapping[str, FieldDef] | None = None) -> CaseMapper:
        """The mapper of this configuration with the given keys and the county's custom
        fields declared for case records (as the definitions file is now)."""
        return CaseMapper(
            self.source,
            pseudonym_key,
            keyring,
            default_namespace=self.namespace,
            default_agency=self.agency,
            referral_destinations=self.referral_destinations,
            custom_fields=custom_fields,
        )


class CaseMapper:
    """The :class:`connectors.core.records.Mapper` of case-system records."""

    def __init__(
        self,
        source: str,
        pseudonym_key: bytes,
        keyring: Keyring | None = None,
        *,
        default_namespace: str = DEFAULT_NAMESPACE,
        default_agency: str | None = None,
        referral_destinations: dict[str, Channel] | None = None,
        custom_fields: Mapping[str, FieldDef] | None = None,
    ) -> None:
        self.source = source
        self.pseudonym_key = pseudonym_key
        self.keyring = keyring
        self.default_namespace = default_namespace
        self.default_agency = default_agency
        self.referral_destinations = dict(referral_destinations or {})
        self.custom_fields = dict(custom_fields or {})

    def revision_key(self, record: RawRecord) -> RevisionKey | None:
        return None

    def persons_to_seal(self, record: RawRecord) -> list[str]:
        """The pseudonym whose key :meth:`map` seals this record's contact note or referral
        reason or case-opening demographics with (none
        for other records, or when the record is too broken to name a person: ``map``
        rejects it). Pure."""
        rec = record.fields
        if self.keyring is None or not isinstance(rec, dict):
            return []
        kind = rec.get("record_type")
        noted = kind == "contact_logged" and rec.get("note")
        described = kind == "case_opened" and normalized(rec.get("demographics"))
        custom = rec.get("custom")
        sensitive = isinstance(custom, dict) and any(
            (f := self.custom_fields.get(str(k))) is not None and f.sensitive for k in custom)
        if not (noted or described or sensitive or (kind == "referral_created" and rec.get("reason"))):
            return []
        try:
            return [self._person(rec)]
        except CaseRecordError:
            return []

    def person_of(self, record: RawRecord) -> str | None:
        """The pseudonym of the person a case record names, whatever else is wrong with it
        (its dead letter is sealed under that person's key); None when it names none. Pure."""
        rec = record.fields
        if not isinstance(rec, dict):
            return None
        try:
            return self._person(rec)
        except (CaseRecordError, TypeError, ValueError):
            return None

    def with_keyring(self, keyring: Keyring) -> CaseMapper:
        """The same mapper sealing with ``keyring`` (a batch's resolved keys)."""
        return CaseMapper(
            self.source,
            self.pseudonym_key,
            keyring,
            default_namespace=self.default_namespace,
            default_agency=self.default_agency,
            referral_destinations=self.referral_destinations,
            custom_fields=self.custom_fields,
        )

    def map(self, record: RawRecord, first_revision: str | None = None) -> MapResult:
        if not isinstance(record.fields, dict):
            return Rejection("parse", "case record is not a JSON object")
        try:
            return self._map(record.fields)
        except CaseRecordError as exc:
            return Rejection("validate", str(exc))

    def incident_of(self, rec: dict[str, Any]) -> str | None:
        if rec.get("cad_incident_id"):
            value = str(rec["cad_incident_id"]).strip()
            if ":" not in value:
                raise CaseRecordError("cad_incident_id: expected <agency>:<cad number>")
            return value
        number = rec.get("cad_incident_number")
        if number is None or not str(number).strip():
            return None
        agency = rec.get("cad_agency") or self.default_agency
        if not agency:
            raise CaseRecordError("cad_incident_number: no cad_agency and no default agency configured")
        return f"{agency}:{str(number).strip()}"

    def _custom(self, rec: dict[str, Any], kind: str, person: str, record_id: str, version: str
                ) -> tuple[dict[str, Any], Any]:
        """(the record's county fields in clear, the sensitive ones sealed or None); raises
        :class:`CaseRecordError` naming ``custom.<field>`` (values are never quoted)."""
        raw = rec.get("custom")
        if raw is None or raw == {}:
            return {}, None
        if kind not in ("case_opened", "contact_logged"):
            raise CaseRecordError("custom: only case_opened and contact_logged records carry custom fields")
        if not isinstance(raw, dict):
            raise CaseRecordError("custom: expected an object of field: value")
        clear: dict[str, Any] = {}
        hidden: dict[str, Any] = {}
        for name, value in sorted(raw.items()):
            field = self.custom_fields.get(str(name))
            if field is None:
                raise CaseRecordError(f"custom.{name}: not a custom field declared for case records")
            scalar = isinstance(value, str | int | bool) and not isinstance(value, float)
            if not scalar or field.parse(value) is None:
                raise CaseRecordError(f"custom.{name}: {field.check(value) or 'not a value of this field'}")
            if isinstance(value, str):
                value = value[:200]
            (hidden if field.sensitive else clear)[str(name)] = value
        sealed = None
        if hidden and self.keyring:
            try:
                sealed = seal(self.keyring, person, {"custom": hidden},
                              context=seal_context(self.source, record_id, version, "custom"))
            except KeyDestroyedError:  # the person was erased: keep the fact, never the values
                sealed = None
        return clear, sealed

    def _person(self, rec: dict[str, Any]) -> str:
        """The pseudonym of the record's person (``person: {system, id}`` or the flat
        ``person_system`` / ``person_id``)."""
        person_obj = rec.get("person")
        if isinstance(person_obj, dict):
            system = str(person_obj.get("system") or self.default_namespace)
            pid = person_obj.get("id")
        else:
            system, pid = str(rec.get("person_system") or self.default_namespace), rec.get("person_id")
        if pid is None or not str(pid).strip():
            raise CaseRecordError("person.id: missing")
        return pseudonymize(self.pseudonym_key, system, str(pid))

    def _map(self, rec: dict[str, Any]) -> MapResult:
        kind = _req(rec, "record_type")
        if kind not in RECORD_TYPES:
            raise CaseRecordError(f"record_type: expected one of {', '.join(RECORD_TYPES)}")
        record_id = _req(rec, "record_id")
        case_id = _req(rec, "case_id")
        person = self._person(rec)
        at = _time(rec, "occurred_at")
        version = str(rec.get("version", 1))
        custom, custom_sealed = self._custom(rec, kind, person, record_id, version)
        data: Any
        if kind == "case_opened":
            demographics = normalized(rec.get("demographics"))
            sealed_demo = None
            if demographics and self.keyring:
                try:
                    sealed_demo = seal(self.keyring, person, demographics,
                                       context=seal_context(self.source, record_id, version, "demographics"))
                except KeyDestroyedError:  # the person was erased: keep the fact, never the demographics
                    sealed_demo = None
            data = CaseOpened(
                case_id=case_id, person=person, at=at, program=_req(rec, "program"),
                incident_id=self.incident_of(rec), demographics=sealed_demo,
                custom=custom, custom_sealed=custom_sealed,
            )
        elif kind == "contact_logged":
            contact = str(rec.get("contact_kind") or "in_person")
            if contact not in CONTACT_KINDS:
                contact = "other"
            note = rec.get("note")
            sealed = None
            if note and self.keyring:
                try:
                    sealed = seal(self.keyring, person, {"note": str(note)},
                                  context=seal_context(self.source, record_id, version, "note"))
                except KeyDestroyedError:  # the person was erased: keep the fact, never the note
                    sealed = None
            data = ContactLogged.model_validate({  # contact_kind checked against CONTACT_KINDS above
                "case_id": case_id, "person": person, "at": at, "contact_kind": contact,
                "incident_id": self.incident_of(rec), "note": sealed,
                "custom": custom, "custom_sealed": custom_sealed,
            })
        elif kind == "service_enrolled":
            data = ServiceEnrolled(
                case_id=case_id,
                person=person,
                at=at,
                service_type=_req(rec, "service_type"),
                provider=_req(rec, "provider"),
                substance_use=bool(rec.get("substance_use", False)),
            )
        elif kind == "referral_created":
            return Mapped((self._referral(rec, record_id, person, at, version),))
        else:
            reason = closure_reason(_req(rec, "reason"))
            data = CaseClosed(case_id=case_id, person=person, at=at, reason=reason)
        return Mapped((new_event(data, source=self.source, record_id=record_id, revision=version),))

    def _referral(self, rec: dict[str, Any], record_id: str, person: str, at: datetime, version: str) -> Any:
        """A case system's referral → ``referral.requested`` (see the module docstring)."""
        destination = _req(rec, "destination")
        channel = self.referral_destinations.get(destination)
        if channel is None:
            raise CaseRecordError("destination: not one of the component's referral_destinations")
        own_id = str(rec.get("referral_id") or record_id).strip()
        if not REFERRAL_ID.match(own_id):
            raise CaseRecordError("referral_id: 1-100 letters, digits, '.', '_' or '-'")
        priority = str(rec.get("priority") or "routine")
        if priority not in PRIORITIES:
            raise CaseRecordError(f"priority: expected one of {', '.join(PRIORITIES)}")
        request = referral_request(
            self.keyring,
            referral_id=f"case-{own_id}",
            person=person,
            at=at,
            destination=destination,
            channel=channel,
            service_type=_req(rec, "service_type"),
            requester=_req(rec, "program"),
            reason=str(rec["reason"]) if rec.get("reason") else None,
            context=seal_context(self.source, f"case-{own_id}", version, "reason"),
            priority=priority,  # type: ignore[arg-type]  # checked against PRIORITIES above
            substance_use=bool(rec.get("substance_use", False)),
            incident_id=self.incident_of(rec),
        )
        return new_event(request, source=self.source, record_id=f"case-{own_id}", revision=version)


def case_record(obj: Any, ref: str, raw: bytes) -> RawRecord:
    return RawRecord(
        ref=ref,
        raw=raw,
        fields=obj if isinstance(obj, dict) else None,
        problem=None if isinstance(obj, dict) else "case record is not a JSON object",
    )
