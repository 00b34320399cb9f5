"""Presenting the county model the way real systems publish it (pure functions):

- :func:`soql_row` — one San Francisco "Law Enforcement Dispatched Calls for Service"
  API row (floating local timestamps, ``data_updated_at`` as the revision);
- :func:`csv_table` — a CSV export in any CSV profile's layout;
- :func:`encounter_events` — the co-responder facts (clinician engaged, person identified,
  on-scene outcome) and referral requests of the behavioral-health calls, as envelopes.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from connectors.cad.profile import Profile
from hub.devtools.simulate.model import County, SimCall
from hub.kernel.crypto import Keyring, seal, seal_context
from hub.kernel.identity import pseudonymize
from schemas.encounter import ClinicianEngaged, OnSceneOutcome, PersonIdentified
from schemas.envelope import Envelope, new_event
from schemas.referral import ReferralRequested

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
ENCOUNTER_SOURCE = "sim/coresponder"


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


def encounter_events(
    county: County, pseudonym_key: bytes, keyring: Keyring | None = None, source: str = ENCOUNTER_SOURCE
) -> list[Envelope]:
    """Co-responder facts and referral requests of ``county`` (deterministic ids; with a
    keyring, demographics and referral reasons are sealed with the person's key)."""
    out: list[Envelope] = []
    for enc in county.encounters:
        incident = county.incident_id(enc.cad_number)
        person = pseudonymize(pseudonym_key, enc.person.namespace, enc.person.person_id)
        demographics = (
            seal(keyring, person, {"mpi": enc.person.person_id},
                 context=seal_context(source, enc.cad_number, 0, "demographics"))
            if keyring else None
        )
        out.append(
            new_event(
                ClinicianEngaged(
                    incident_id=incident,
                    at=enc.at,
                    clinician_id=enc.clinician_id,
                    program="county-coresponder",
                    mode=enc.mode,
                ),
                source=source,
                record_id=enc.cad_number,
            )
        )
        out.append(
            new_event(
                PersonIdentified(incident_id=incident, at=enc.at, person=person, demographics=demographics),
                source=source,
                record_id=enc.cad_number,
            )
        )
        out.append(
            new_event(
                OnSceneOutcome(
                    incident_id=incident,
                    at=enc.at,
                    outcome=enc.outcome,
                    person=person,
                    officer_released_at=enc.officer_released_at,
                ),
                source=source,
                record_id=enc.cad_number,
            )
        )
    for ref in county.referrals:
        person = pseudonymize(pseudonym_key, ref.person.namespace, ref.person.person_id)
        reason = (
            seal(keyring, person, {"text": f"referred after call {ref.cad_number}"},
                 context=seal_context(source, ref.referral_id, 0, "reason"))
            if keyring else None
        )
        out.append(
            new_event(
                ReferralRequested(
                    referral_id=ref.referral_id,
                    person=person,
                    at=ref.at,
                    incident_id=county.incident_id(ref.cad_number),
                    destination=ref.destination,
                    channel=ref.channel,
                    service_type=ref.service_type,
                    priority=ref.priority,
                    substance_use=ref.substance_use,
                    requester="county-coresponder",
                    reason=reason,
                ),
                source=source,
                record_id=ref.referral_id,
            )
        )
    return out
