"""Golden digests of what the CAD mappers produce: every file under ``tests/data/cad`` (the
Seattle CSV sample, both EIDO samples) and synthetic rows / documents that reach every
branch the samples do not (unit statuses, dispositions, revisions, every CSV profile, SoQL
JSON rows), mapped by :class:`CadMapper` and :class:`EidoMapper`.

A digest covers each result exactly: the envelopes' ``model_dump_json()`` (with
``recordedat``, the clock at mapping time, pinned), the unknown-disposition flag, the
rejection / exclusion reasons and the revision keys. A change of any event id, payload
field, order or reason changes the digest — the log's exactly-once index and every
projection rely on the same input giving the same facts. The fixture is committed
(``cad_golden.json``); after an intended change of the mappers' output, regenerate it with
``REGEN_CAD_GOLDEN=1`` and say why in the commit. Both CSV paths of :class:`CadMapper` — the
fast one and the pydantic reference (``reference=True``) — must give the same digests.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.cad.csvfile import decode, parse_csv
from connectors.cad.eido import EidoMapper, eido_record
from connectors.cad.mapping import CadMapper
from connectors.cad.profile import Profile, load_profile
from connectors.core.records import Exclusion, Mapped, MapResult, RawRecord, Rejection
from hub.kernel.settings import PROJECT_ROOT

DATA = PROJECT_ROOT / "tests" / "data" / "cad"
GOLDEN = Path(__file__).with_name("cad_golden.json")
PINNED = datetime(2000, 1, 1, tzinfo=UTC)
OBSERVED = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)  # later than every time in the inputs
OTHER_CONTENT = "sha256:0000000000000000"  # a first revision no row has: forces CallRevised
OTHER_UPDATE = "1999-01-01T00:00:00+00:00"

Mapper = CadMapper | EidoMapper


def canonical(result: MapResult) -> str:
    """One map result as text: every envelope's JSON (recordedat pinned) and the flags."""
    if isinstance(result, Mapped):
        events = [e.model_copy(update={"recordedat": PINNED}).model_dump_json() for e in result.events]
        return json.dumps({"events": events, "unknown_disposition": result.unknown_disposition})
    if isinstance(result, Rejection):
        return json.dumps({"rejection": [result.stage, result.reason]})
    assert isinstance(result, Exclusion)
    return json.dumps({"exclusion": result.reason})


def run(mapper: Mapper, records: list[RawRecord], first_revision: str | None) -> tuple[str, int]:
    """(digest, number of envelopes) of mapping ``records`` (a record with a ``problem`` is
    not mapped: the runner dead-letters it)."""
    h = hashlib.sha256()
    count = 0
    for record in records:
        key = mapper.revision_key(record) if record.problem is None else None
        h.update(json.dumps([record.ref, key and [key.key, key.revision]]).encode())
        if record.problem is not None:
            h.update(json.dumps({"problem": record.problem}).encode())
            continue
        result = mapper.map(record, first_revision)
        count += len(result.events) if isinstance(result, Mapped) else 0
        h.update(canonical(result).encode() + b"\n")
    return h.hexdigest(), count


# --------------------------------------------------------------------------- inputs


def csv_records(profile: Profile, content: str, name: str, observed_at: datetime | None) -> list[RawRecord]:
    return list(parse_csv(content, profile, name, observed_at))


def csv_of(profile: Profile, rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(profile.columns)
    for row in rows:
        w.writerow([row.get(c, "") for c in profile.columns])
    return buf.getvalue()


def synthetic_rows(profile: Profile, fmt: str | None) -> list[dict[str, str]]:
    """Rows in ``profile``'s columns covering every normalized field: all times, a known, an
    unknown and no disposition, behavioral-health and other call types, self-initiated,
    an excluded row, an unreadable time and a blank CAD number."""
    col = profile.fields

    def t(iso: str) -> str:
        return datetime.fromisoformat(iso).strftime(fmt) if fmt else iso

    known = next(iter(profile.vocab.dispositions if profile.vocab else ()), "X")
    base = {
        "received_at": t("2024-03-01T08:00:00"),
        "dispatched_at": t("2024-03-01T08:02:00"),
        "enroute_at": t("2024-03-01T08:03:00"),
        "onscene_at": t("2024-03-01T08:10:00"),
        "closed_at": t("2024-03-01T09:00:00"),
        "call_type_initial": "WELFARE CHECK",
        "call_type_final": "PERSON IN CRISIS",
        "priority": "2",
        "disposition_code": known,
        "disposition_text": "Some Text",
        "precinct": "North",
        "district": "D1",
        "sector": "S1",
        "beat": "B1",
        "longitude": "-122.3",
        "latitude": "47.6",
        "updated_at": "",
    }
    variants: list[dict[str, str]] = [
        {**base, "cad_number": "1001"},
        {**base, "cad_number": "1002", "disposition_code": "NOPE-UNKNOWN", "disposition_text": "NOPE"},
        {**base, "cad_number": "1003", "disposition_code": "", "disposition_text": "", "closed_at": "",
         "call_type_initial": "TRAFFIC STOP", "call_type_final": "THEFT", "enroute_at": ""},
        {**base, "cad_number": "1004", "closed_at": "", "updated_at": t("2024-03-02T10:00:00")},
        {**base, "cad_number": "1005", "onscene_at": "", "closed_at": "", "dispatched_at": "",
         "call_type_initial": "", "call_type_final": "", "priority": "", "longitude": "", "latitude": ""},
        {**base, "cad_number": "1006", "received_at": "13/45/2023 99:00:00 XM"},
        {**base, "cad_number": "", "received_at": t("2024-03-01T08:00:00")},
        {**base, "cad_number": "1007", "received_at": ""},
        {**base, "cad_number": "1008", "longitude": "east"},
    ]
    rows = [{col[k]: v for k, v in row.items() if k in col} for row in variants]  # type: ignore[index]
    if profile.self_initiated is not None:
        rows[0][profile.self_initiated.field] = profile.self_initiated.values[0]
    if profile.exclude:
        rule = profile.exclude[0]
        rows.append({**rows[0], col["cad_number"]: "1009", rule.field: rule.values[0]})
    return rows


def eido_base() -> dict[str, Any]:
    return json.loads((DATA / "eido" / "sample-call-transfer.json").read_bytes())


def resource(rid: str | None, name: str | None, kind: str | None, status: str, hhmm: str) -> dict[str, Any]:
    """An emergencyResourceComponent (absent keys for ``None``)."""
    element = {
        "$id": rid,
        "emergencyResourceName": name,
        "emergencyResourceTypeCommonRegistryText": kind,
        "primaryUnitStatusRegistryText": status,
        "lastUpdateTimeStamp": f"2021-04-30T{hhmm}:00-04:00",
    }
    return {k: v for k, v in element.items() if v is not None}


def eido_variants() -> Iterator[tuple[str, dict[str, Any] | bytes]]:
    """EIDO documents reaching the branches the samples do not."""
    full = eido_base()
    full["incidentComponent"] = {
        "$id": "i1",
        "lastUpdateTimeStamp": "2021-04-30T15:00:00-04:00",
        "incidentTypeCommonRegistryText": "Medical",
        "incidentTypeInternalText": "PERSON IN MENTAL HEALTH CRISIS",
        "incidentCommonPriorityNumber": 3,
        "beatOrDispatchGroupText": "B7",
        "dispositionComponent": [
            {"dispositionCommonRegistryCode": "REFERRED", "lastUpdateTimeStamp": "2021-04-30T15:30:00-04:00"},
            {
                "dispositionCommonRegistryCode": "TRANSPORT-MH",
                "dispositionDescriptionText": "Voluntary transport",
                "dispositionPrimaryIndicator": True,
                "lastUpdateTimeStamp": "2021-04-30T16:00:00-04:00",
            },
        ],
    }
    full["callComponent"][0]["localCallType"] = "SUICIDAL PERSON"
    full["emergencyResourceComponent"] = [
        resource("u1", "CRT-1", "Crisis Team", "On Scene", "15:10"),
        resource("u2", None, "Police Patrol", "Dispatched", "14:45"),
        resource(None, None, "Ambulance", "en-route", "14:50"),
        resource("u4", "E-4", "Fire Engine", "Cleared", "16:10"),
        resource("u5", "CL-5", "Clinician", "Arrived", "15:20"),
        resource("u6", "X-6", None, "Out of service", "15:20"),
        resource("u7", "Q-7", "Helicopter", "Available", "16:20"),
    ]
    full["lastUpdateTimeStamp"] = "2021-04-30T16:05:00-04:00"
    yield "full", full

    last_chosen = copy.deepcopy(full)
    for d in last_chosen["incidentComponent"]["dispositionComponent"]:
        d.pop("dispositionPrimaryIndicator", None)
    yield "last-disposition", last_chosen

    untimed = copy.deepcopy(full)
    untimed["incidentComponent"]["dispositionComponent"] = [{"dispositionDescriptionText": "cancelled"}]
    yield "untimed-disposition", untimed

    unknown = copy.deepcopy(full)
    unknown["incidentComponent"]["dispositionComponent"] = [{"dispositionCommonRegistryCode": "WHO-KNOWS"}]
    yield "unknown-disposition", unknown

    empty = copy.deepcopy(full)
    empty["incidentComponent"]["dispositionComponent"] = [{"dispositionPrimaryIndicator": True}]
    yield "empty-disposition", empty

    no_calls = copy.deepcopy(full)
    del no_calls["callComponent"]
    no_calls["incidentComponent"]["incidentPriorityInternalText"] = "P1"
    yield "incident-only", no_calls

    bare = eido_base()
    del bare["callComponent"]
    yield "bare", bare

    common_only = copy.deepcopy(full)
    del common_only["incidentComponent"]["incidentTypeInternalText"]
    del common_only["callComponent"][0]["localCallType"]
    yield "common-type-only", common_only

    bad_unit = copy.deepcopy(full)
    bad_unit["emergencyResourceComponent"][0]["lastUpdateTimeStamp"] = "2021-04-30 15:10"
    yield "bad-unit-time", bad_unit

    no_version = eido_base()
    del no_version["eidoVersion"]
    yield "no-version", no_version

    no_id = eido_base()
    no_id["$id"] = "not-an-incident"
    yield "no-incident-id", no_id

    naive = eido_base()
    naive["lastUpdateTimeStamp"] = "2021-04-30T14:42:00"
    yield "naive-revision", naive

    yield "not-json", b"{nope"
    yield "not-an-object", b"[1, 2]"


def eido_records() -> list[RawRecord]:
    records = [eido_record(path.read_bytes(), path.name) for path in sorted((DATA / "eido").glob("*.json"))]
    for name, doc in eido_variants():
        raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        records.append(eido_record(raw, name))
    return records


def soql_rows() -> list[RawRecord]:
    """San Francisco real-time API rows (JSON values, some not strings, an updated-at)."""
    rows: list[dict[str, Any]] = [
        {"cad_number": "240610001", "received_datetime": "2024-03-01T08:00:00.000",
         "dispatch_datetime": "2024-03-01T08:01:00.000", "enroute_datetime": "2024-03-01T08:02:00.000",
         "onscene_datetime": "2024-03-01T08:09:00.000", "close_datetime": "2024-03-01T09:00:00.000",
         "call_type_original_desc": "WELL BEING CHECK", "call_type_final_desc": "MENTALLY DISTURBED",
         "priority_final": 2, "disposition": "5150", "onview_flag": "N", "police_district": "MISSION",
         "data_updated_at": "2024-03-01T09:05:00.000"},
        {"cad_number": "240610002", "received_datetime": "2024-03-01T10:00:00.000",
         "call_type_original_desc": "TRAFFIC", "priority_final": "C", "disposition": "ADV",
         "onview_flag": "Y", "data_updated_at": "2024-03-01T10:30:00.000"},
        {"cad_number": "240610003", "received_datetime": "2024-03-01T11:00:00.000", "disposition": "DUP"},
        {"cad_number": 240610004, "received_datetime": "2024-03-01T12:00:00.000", "disposition": 22},
    ]
    return [RawRecord(ref=f"page@{i}", raw=json.dumps(r).encode(), fields=r) for i, r in enumerate(rows)]


US_TIME = "%m/%d/%Y %I:%M:%S %p"
#: profile -> time format of its synthetic rows (None: ISO 8601)
CSV_PROFILES = {"seattle": None, "generic": None, "new_orleans": US_TIME, "san_francisco": None}


def cases(
    reference: bool = False,
) -> Iterator[tuple[str, Callable[[], tuple[Mapper, list[RawRecord]]], list[str | None]]]:
    """(name, mapper and records, first revisions to map them with); ``reference``: CSV rows
    through the reference path of :class:`CadMapper`."""
    seattle = load_profile("seattle")
    sample = decode((DATA / "seattle" / "call-data-sample.csv").read_bytes())
    yield ("seattle/call-data-sample.csv",
           lambda: (CadMapper(seattle, reference=reference),
                    csv_records(seattle, sample, "call-data-sample.csv", None)),
           [None, OTHER_CONTENT])
    yield ("seattle/call-data-sample.csv@observed",
           lambda: (CadMapper(seattle, "cad/other", reference=reference),
                    csv_records(seattle, sample, "s.csv", OBSERVED)),
           [OTHER_CONTENT])
    for name, fmt in CSV_PROFILES.items():
        profile = load_profile(name)
        text = csv_of(profile, synthetic_rows(profile, fmt))
        for observed in (None, OBSERVED):
            yield (f"synthetic/{name}@{'observed' if observed else 'unobserved'}",
                   lambda p=profile, t=text, o=observed: (CadMapper(p, reference=reference),
                                                           csv_records(p, t, "x.csv", o)),
                   [None, OTHER_CONTENT, OTHER_UPDATE])
    sf = load_profile("san_francisco")
    yield ("soql/san_francisco", lambda: (CadMapper(sf, reference=reference), soql_rows()),
           [None, OTHER_UPDATE])
    eido = load_profile("eido")
    yield "eido", lambda: (EidoMapper(eido), eido_records()), [None, OTHER_UPDATE]
    fixed = eido.model_copy(update={"agency": "FIXED"})
    yield "eido@fixed-agency", lambda: (EidoMapper(fixed, "cad/fixed"), eido_records()), [None, OTHER_UPDATE]


def digests(reference: bool = False) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, build, revisions in cases(reference):
        for first_revision in revisions:
            mapper, records = build()  # a fresh mapper per run: no parse shared across runs
            digest, count = run(mapper, records, first_revision)
            out[f"{name} first_revision={first_revision}"] = {"records": len(records), "events": count,
                                                               "sha256": digest}
    return out


@pytest.mark.parametrize("reference", [False, True], ids=["fast", "reference"])
def test_mappers_produce_exactly_the_committed_envelopes(reference: bool) -> None:
    got = digests(reference)
    if os.environ.get("REGEN_CAD_GOLDEN") and not reference:
        GOLDEN.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        pytest.skip("regenerated cad_golden.json")
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert got == expected


def test_golden_inputs_reach_every_kind_of_fact() -> None:
    """The synthetic inputs are worth their digest: together they produce every dispatch
    fact type, revisions, rejections, exclusions and unknown dispositions."""
    kinds: set[str] = set()
    for _, build, revisions in cases():
        mapper, records = build()
        for record in records:
            if record.problem is not None:
                continue
            for first_revision in revisions:
                result = mapper.map(record, first_revision)
                if isinstance(result, Mapped):
                    kinds |= {e.type for e in result.events}
                    if result.unknown_disposition:
                        kinds.add("unknown_disposition")
                else:
                    kinds.add(type(result).__name__)
    assert kinds >= {
        "cad.call.received.v4", "cad.unit.dispatched.v1", "cad.unit.enroute.v1", "cad.unit.onscene.v1",
        "cad.unit.cleared.v1", "cad.call.disposition.v2", "cad.call.revised.v3", "unknown_disposition",
        "Rejection", "Exclusion",
    }
