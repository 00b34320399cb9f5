"""Dispatch facts from police CAD feeds. Partition key: the incident id
(``<agency>:<cad number>``), so every fact of one call is ordered.

Facts keep the source's words: call types, disposition codes and texts as the CAD sent them.
Free text a dispatcher typed is never in clear: remarks and any disposition text the
vocabulary in force at ingest does not know (a clearance text may name people) are sealed
with the incident's key (``remarks``, ``disposition_note``; erased with a linked person),
and the projections, which hold the keys, open a sealed disposition text to classify it.
What they mean (behavioral-health call or not, category, outcome) is not a fact: the
projections derive it with a versioned vocabulary (:mod:`hub.kernel.vocabulary`), so a
corrected vocabulary reclassifies history. Older versions that carried the meaning are upcast
(:mod:`schemas.upcasters`), dropping it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import Area, CustomValues, EventData, IncidentId, Sealed, Timestamp, register

UnitKind = Literal["police", "co_responder", "clinician", "ems", "fire", "other"]


class _IncidentEvent(EventData):
    family = "dispatch"
    key_field = "incident_id"
    incident_id: IncidentId


@register
class CallReceived(_IncidentEvent):
    """A call for service entered the CAD (time queued/received). ``vocabulary`` names the
    vocabulary the source's codes are in (the profile's), not what they mean. ``custom``:
    the county-defined fields the profile maps from its columns, in the source's words (the
    projections read them by the field's declared type)."""

    event_type = "cad.call.received.v4"
    agency: str
    cad_number: str
    at: Timestamp
    source_timezone: str
    vocabulary: str | None = None
    call_type_initial: str | None = None
    call_type_final: str | None = None
    priority: str | None = None
    self_initiated: bool = False
    area: Area = Area()
    longitude: float | None = None  # at the precision the CAD profile declares (blurred)
    latitude: float | None = None
    #: the call's free-text remarks (may name people), sealed with the incident's key
    remarks: Sealed | None = None
    custom: CustomValues = Field(default_factory=dict)


class UnitEvent(_IncidentEvent):
    unit_id: str | None = None
    unit_kind: UnitKind = "police"
    at: Timestamp


@register
class UnitDispatched(UnitEvent):
    event_type = "cad.unit.dispatched.v1"


@register
class UnitEnRoute(UnitEvent):
    event_type = "cad.unit.enroute.v1"


@register
class UnitOnScene(UnitEvent):
    event_type = "cad.unit.onscene.v1"


@register
class UnitCleared(UnitEvent):
    event_type = "cad.unit.cleared.v1"


@register
class CallDisposition(_IncidentEvent):
    """How the CAD closed the call, in its own words (code and/or text).

    The code is always clear; the text is clear when it is a label of the vocabulary in
    force at ingest, else sealed with the incident's key (``disposition_note``)."""

    event_type = "cad.call.disposition.v2"
    at: Timestamp
    disposition_code: str | None = None
    #: in clear only when it is a label the vocabulary in force at ingest knows
    disposition_text: str | None = None
    #: any other disposition text (clearance text, may name people), sealed with the
    #: incident's key; the projections open it to classify it
    disposition_note: Sealed | None = None


@register
class CallRevised(_IncidentEvent):
    """The source republished a call with changes; non-null fields replace earlier values
    (the received time moves the call to its corrected period; the row-level times replace
    the times of the first revision). ``at`` is when the revision was published.
    ``custom``: the county-defined fields the revised row gives (as ``CallReceived.custom``);
    each replaces the call's earlier value for the same field, a field the row leaves blank
    keeps its earlier value (as a null field does)."""

    event_type = "cad.call.revised.v3"
    at: Timestamp
    revision: str
    received_at: Timestamp | None = None
    call_type_initial: str | None = None
    call_type_final: str | None = None
    priority: str | None = None
    area: Area | None = None
    disposition_code: str | None = None
    disposition_text: str | None = None  # clear by the rule of CallDisposition
    disposition_note: Sealed | None = None  # a disposition text sealed by that rule
    dispatched_at: Timestamp | None = None
    enroute_at: Timestamp | None = None
    onscene_at: Timestamp | None = None
    cleared_at: Timestamp | None = None
    custom: CustomValues = Field(default_factory=dict)


@register
class CrisisTemplate(_IncidentEvent):
    """An officer filed a crisis template for one person on this contact (Seattle "Crisis
    Data": one template per person per contact). The indicators are the source's Y/N
    fields as booleans (None: blank). The template's presence is what a vocabulary's
    behavioral-health rule can look at (``crisis_template``)."""

    event_type = "cad.crisis.template.v1"
    at: Timestamp
    template_id: str
    use_of_force: bool | None = None
    cit_requested: bool | None = None
    cit_dispatched: bool | None = None
    cit_arrived: bool | None = None
