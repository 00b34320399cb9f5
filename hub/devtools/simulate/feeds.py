"""Presenting the county model the way real systems publish it (pure functions):

- :func:`soql_row` — one San Francisco "Law Enforcement Dispatched Calls for Service"
  API row (floating local timestamps, ``data_updated_at`` as the revision);
- :func:`csv_table` — a CSV export in any CSV profile's layout;
- :func:`encounter_forms` — the co-responder team's encounter forms (the bodies the
  simulated team submits to the hub's intake API, ``POST /v1/intake/encounters``), one per
  encounter, with its referral when one was made;
- :func:`encounter_events` — the facts the intake appends for those forms (the intake's
  own pure mapping, :mod:`connectors.intake.mapping`), for checks without services.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from connectors.cad.profile import Profile
from connectors.intake.form import parse_form
from connectors.intake.mapping import Earlier, Submitter, intake_facts
from hub.devtools.simulate.model import DESTINATIONS, PROGRAM, County, SimCall
from hub.kernel.crypto import Keyring, MemoryKeyring
from hub.kernel.settings import IntakeDestination
from schemas.envelope import Envelope

SF_CODES = {
    "no_enforcement": "HAN",
    "unable_to_locate": "GOA",
    "cancelled": "CAN",
    "arrest": "ARR",
    "citation": "CIT",
    "referral": "CSA",
    "emergency_department": "SFD",
    "involuntary_hold": "5150",
    "voluntary_transport": "VTX",  # a local code, not in the SF profile: "unknown" unless configured
}
#: names the simulated team's submission ids (uuid5 of the incident id): the same county
#: submits the same forms, so a second demo run is answered "duplicate"
FORM_NAMESPACE = uuid.UUID("3f0c9a52-6a4e-5b7e-9c1d-2b8e4f6a7c10")
#: the EHR destinations of the simulated county, as the intake is configured for them
INTAKE_DESTINATIONS: dict[str, IntakeDestination] = {
    name: IntakeDestination(display=name.replace("-", " ").title(), channel=channel)
    for name, channel in DESTINATIONS
}


def _local(value: datetime | None, zone: ZoneInfo, fmt: str | None = None) -> str:
    if value is None:
        return ""
    local = value.astimezone(zone).replace(tzinfo=None)
    return local.strftime(fmt) if fmt else local.isoformat(timespec="milliseconds")


def soql_row(call: SimCall, timezone: str = "America/Los_Angeles") -> dict[str, Any]:
    """One published version of a call as an SF real-time API row (JSON strings)."""
    zone = ZoneInfo(timezone)
    row = {
        "cad_number": call.cad_number,
        "received_datetime": _local(call.received_at, zone),
        "entry_datetime": _local(call.received_at, zone),
        "dispatch_datetime": _local(call.dispatched_at, zone),
        "enroute_datetime": _local(call.enroute_at, zone),
        "onscene_datetime": _local(call.onscene_at, zone),
        "close_datetime": _local(call.closed_at, zone),
        "call_type_original": call.call_type_initial[:3].upper(),
        "call_type_original_desc": call.call_type_initial,
        "call_type_final": call.call_type_final[:3].upper(),
        "call_type_final_desc": call.call_type_final,
        "priority_original": call.priority,
        "priority_final": call.priority,
        "agency": "Police",
        "disposition": SF_CODES.get(call.outcome, "UNK"),
        "onview_flag": "Y" if call.self_initiated else "N",
        "sensitive_call": "false",
        "intersection_name": "",
        "analysis_neighborhood": call.beat,
        "police_district": call.district,
        "data_updated_at": _local(call.updated_at or call.received_at, zone),
    }
    if call.malformed == "bad_time":
        row["received_datetime"] = "24/13/2024 25:61"
    return {k: v for k, v in row.items() if v != ""}


def _column_value(call: SimCall, name: str, profile: Profile, fmt: str | None) -> str:
    zone = profile.zone
    times = {
        "received_at": call.received_at,
        "dispatched_at": call.dispatched_at,
        "enroute_at": call.enroute_at,
        "onscene_at": call.onscene_at,
        "closed_at": call.closed_at,
        "updated_at": call.updated_at,
    }
    if name in times:
        return _local(times[name], zone, fmt)
    codes = profile.codes_for(call.outcome)
    values = {
        "cad_number": call.cad_number,
        "call_type_initial": call.call_type_initial,
        "call_type_final": call.call_type_final,
        "priority": call.priority,
        "disposition_code": codes[0] if codes else "UNKNOWN",
        "disposition_text": codes[0] if codes else "UNKNOWN",
        "precinct": call.district,
        "district": call.district,
        "sector": call.district[:1],
        "beat": call.beat,
        "longitude": f"{call.longitude}",
        "latitude": f"{call.latitude}",
    }
    return values.get(name, "")


def csv_table(calls: list[SimCall], profile: Profile) -> str:
    """A CSV export of ``calls`` (latest versions) in ``profile``'s layout; malformed calls
    are written damaged (an unparseable time, or a row missing columns)."""
    fmt = next((f for f in profile.time_formats if f != "iso"), None)
    by_column = {col: name for name, col in profile.fields.items()}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(profile.columns)
    for original in calls:
        call = original.latest()
        row = []
        for col in profile.columns:
            name = by_column.get(col)
            if profile.self_initiated and col == profile.self_initiated.field and name is None:
                row.append(profile.self_initiated.values[0] if call.self_initiated else "N")
            elif name is None:
                row.append("")
            else:
                row.append(_column_value(call, name, profile, fmt))
        if call.malformed == "bad_time":
            row[profile.columns.index(profile.fields["received_at"])] = "31/31/2024 99:99"
        elif call.malformed == "short_row":
            row = row[:-2]
        writer.writerow(row)
    return buf.getvalue()


def encounter_forms(county: County) -> list[tuple[str, dict[str, Any]]]:
    """(clinician id, form body) of every co-responder encounter of ``county``: what the
    team's clinicians submit to the intake API after each call (the person by their
    county MPI number, the referral requested after the call, if any)."""
    referrals = {ref.cad_number: ref for ref in county.referrals}
    out: list[tuple[str, dict[str, Any]]] = []
    for enc in county.encounters:
        incident = county.incident_id(enc.cad_number)
        ref = referrals.get(enc.cad_number)
        body: dict[str, Any] = {
            "submission_id": str(uuid.uuid5(FORM_NAMESPACE, incident)),
            "incident_id": incident,
            "encounter_at": enc.at.isoformat(),
            "mode": enc.mode,
            "outcome": enc.outcome,
            "use_of_force": enc.use_of_force,
            "services_offered": [ref.service_type] if ref else [],
            "person": {"system": enc.person.namespace, "identifier": enc.person.person_id},
            "officer_released_at": enc.officer_released_at.isoformat() if enc.officer_released_at else None,
            "referral": None
            if ref is None
            else {
                "destination": ref.destination,
                "service_type": ref.service_type,
                "urgency": ref.priority,
                "reason": f"referred after call {ref.cad_number}",
                "substance_use": ref.substance_use,
                "requested_at": ref.at.isoformat(),
            },
        }
        out.append((enc.clinician_id, body))
    return out


def encounter_events(county: County, pseudonym_key: bytes, keyring: Keyring | None = None) -> list[Envelope]:
    """The facts the intake appends for :func:`encounter_forms` (deterministic ids; sealed
    with ``keyring``, or a throw-away one)."""
    keys = keyring or MemoryKeyring()
    out: list[Envelope] = []
    for clinician, body in encounter_forms(county):
        form = parse_form(body)
        out += intake_facts(
            form,
            record_id=str(form.submission_id),
            submission_id=str(form.submission_id),
            incident_id=form.incident_id,
            revision=0,
            submitter=Submitter(program=PROGRAM, clinician_id=clinician),
            earlier=Earlier(),
            pseudonym_key=pseudonym_key,
            keys=keys,
            destinations=INTAKE_DESTINATIONS,
            now=datetime.now(UTC),
        ).envelopes
    return out
