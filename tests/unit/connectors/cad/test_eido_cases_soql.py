"""EIDO (both spellings), case records, the signed webhook, SoQL paging and the simulator."""

from __future__ import annotations

import collections
import json

from aiohttp.test_utils import TestClient, TestServer

from connectors.cad.eido import EidoMapper, eido_record
from connectors.cad.profile import load_profile
from connectors.cad.receiver import eido_app
from connectors.cad.soql import next_cursor, soql_params
from connectors.cases.mapping import CaseMapper
from connectors.cases.webhook import signed_headers, verify, webhook_app
from connectors.core.http import RETRY_AFTER_S
from connectors.core.memory import MemoryDeliveryStore, MemoryLog, MemoryRevisionStore
from connectors.core.records import Mapped, RawRecord, Rejection
from connectors.core.runner import DeadLetterSink
from hub.devtools.simulate.feeds import encounter_events, soql_row
from hub.devtools.simulate.model import CountyModel
from hub.devtools.simulate.servers import soql_query
from hub.kernel.crypto import MemoryKeyring, unseal
from hub.kernel.identity import pseudonymize
from hub.kernel.keystore import DeadLetterSealer
from hub.kernel.settings import PROJECT_ROOT
from projections.config import FoldConfig
from projections.facts import fact_from_envelope
from projections.fold import derive

EIDO = PROJECT_ROOT / "tests" / "data" / "cad" / "eido"
PKEY = b"p" * 32
WKEY = b"w" * 32


def test_eido_draft_and_published_spellings() -> None:
    m = EidoMapper(load_profile("eido"))
    draft = m.map(eido_record((EIDO / "sample-2020-draft.json").read_bytes(), "d"))
    published = m.map(eido_record((EIDO / "sample-call-transfer.json").read_bytes(), "p"))
    assert isinstance(draft, Mapped) and isinstance(published, Mapped)
    d, p = draft.events[0].data, published.events[0].data
    assert (
        d["incident_id"] == "psap.allegheny.pa.us:0"
        and d["call_type_final"] == "CIVIL UNREST; REQUEST MUTUAL AID"
    )
    assert d["priority"] == "10: VERY HIGH PRIORITY" and d["at"] == "2020-10-29T18:40:04.337000Z"
    assert p["incident_id"] == "bcf.state.pa.us:a56e556d871" and p["at"] == "2021-04-30T18:40:00Z"


def test_eido_revision_disposition_and_units() -> None:
    doc = json.loads((EIDO / "sample-call-transfer.json").read_bytes())
    doc["incidentComponent"] = {
        "$id": "i1",
        "lastUpdateTimeStamp": "2021-04-30T15:00:00-04:00",
        "incidentTypeCommonRegistryText": "Medical",
        "incidentTypeInternalText": "PERSON IN MENTAL HEALTH CRISIS",
        "dispositionComponent": [
            {
                "dispositionCommonRegistryCode": "TRANSPORT-MH",
                "dispositionPrimaryIndicator": True,
                "lastUpdateTimeStamp": "2021-04-30T16:00:00-04:00",
            }
        ],
    }
    doc["emergencyResourceComponent"] = [
        {
            "$id": "u1",
            "emergencyResourceName": "CRT-1",
            "emergencyResourceTypeCommonRegistryText": "Crisis Team",
            "primaryUnitStatusRegistryText": "On Scene",
            "lastUpdateTimeStamp": "2021-04-30T15:10:00-04:00",
        }
    ]
    doc["lastUpdateTimeStamp"] = "2021-04-30T16:05:00-04:00"
    m = EidoMapper(load_profile("eido"))
    res = m.map(eido_record(json.dumps(doc).encode(), "x"), first_revision="2021-04-30T18:43:49.439000+00:00")
    assert isinstance(res, Mapped)
    by_type = {e.type: e.data for e in res.events}
    assert by_type["cad.call.received.v4"]["vocabulary"] == "eido"
    assert by_type["cad.unit.onscene.v1"]["unit_kind"] == "co_responder"
    assert by_type["cad.call.disposition.v2"]["disposition_code"] == "TRANSPORT-MH"
    assert by_type["cad.call.revised.v3"]["revision"] == "2021-04-30T20:05:00+00:00"
    (row,) = derive([fact_from_envelope(e) for e in res.events], FoldConfig(timezone="UTC"))[
        "incident_summary"].values()
    assert row["behavioral_health"] is True and row["cad_outcome"] == "voluntary_transport"


def test_eido_rejections() -> None:
    m = EidoMapper(load_profile("eido"))
    bad_json = m.map(eido_record(b"{nope", "a"))
    no_version = m.map(eido_record(b'{"$id": "urn:emergency:uid:incidentid:1:x.y"}', "b"))
    assert isinstance(no_version, Rejection) and "eidoVersion" in no_version.reason
    rec = eido_record(b"{nope", "a")
    assert rec.problem and "not JSON" in rec.problem and isinstance(bad_json, Rejection)


async def test_eido_http_endpoint_202_and_400() -> None:
    log = MemoryLog()
    m = EidoMapper(load_profile("eido"))
    app = eido_app(
        mapper=m,
        log_port=log,
        sink=DeadLetterSink(m.source, "cad", DeadLetterSealer(bytes(32))),
        revisions=MemoryRevisionStore(),
    )
    async with TestClient(TestServer(app)) as client:
        ok = await client.post("/eido", data=(EIDO / "sample-2020-draft.json").read_bytes())
        assert ok.status == 202
        body = await ok.json()
        assert body["appended"] == 1 and body["event_ids"] == [log.events[0].id]
        again = await client.post("/eido", data=(EIDO / "sample-2020-draft.json").read_bytes())
        assert (await again.json())["appended"] == 0
        bad = await client.post("/eido", data=b'{"hello": 1}')
        assert bad.status == 400 and (await bad.json())["dead_letter"] is True
    assert len(log.letters) == 1


CASE = {
    "record_id": "r1",
    "record_type": "contact_logged",
    "case_id": "c1",
    "person": {"system": "mpi:county", "id": "MPI-1234567"},
    "occurred_at": "2024-03-02T10:00:00+00:00",
    "version": 1,
    "cad_incident_number": "240610001",
    "note": "talked about housing",
}


def test_case_mapping_pseudonym_sealed_note_and_incident() -> None:
    kr = MemoryKeyring()
    m = CaseMapper("cases/test", PKEY, kr, default_agency="COUNTY")
    res = m.map(RawRecord("x", b"", CASE))
    assert isinstance(res, Mapped)
    env = res.events[0]
    assert env.data["person"] == pseudonymize(PKEY, "mpi:county", "MPI-1234567")
    assert env.data["incident_id"] == "COUNTY:240610001"
    assert "housing" not in env.model_dump_json() and "MPI-1234567" not in env.model_dump_json()
    assert unseal(kr, env.payload().note) == {"note": "talked about housing"}  # type: ignore[attr-defined]
    for broken, why in (
        ({**CASE, "record_type": "x"}, "record_type"),
        ({**CASE, "person": {}}, "person.id"),
        ({**CASE, "occurred_at": "2024-03-02 10:00"}, "no UTC offset"),
    ):
        rej = m.map(RawRecord("x", b"", broken))
        assert isinstance(rej, Rejection) and why in rej.reason


def test_signature_verification() -> None:
    body = b'{"a":1}'
    h = signed_headers(WKEY, "d1", body, now=1000)
    assert verify(WKEY, h, body, now=1010) is None
    assert verify(WKEY, h, body + b" ", now=1010) == "bad signature"
    assert verify(b"x" * 32, h, body, now=1010) == "bad signature"
    assert verify(WKEY, h, body, now=5000) == "stale timestamp (possible replay)"
    assert "unsigned" in (verify(WKEY, {}, body, now=1000) or "")


async def test_webhook_refuses_bad_signature_and_appends_a_delivery_once() -> None:
    log, deliveries = MemoryLog(), MemoryDeliveryStore()
    mapper = CaseMapper("cases/test", PKEY, MemoryKeyring(), default_agency="COUNTY")
    app = webhook_app(
        receiver="w",
        key=WKEY,
        mapper=mapper,
        log_port=log,
        sink=DeadLetterSink("cases/test", "cases", DeadLetterSealer(bytes(32))),
        deliveries=deliveries,
    )
    body = json.dumps(
        {"records": [CASE, {**CASE, "record_id": "r2", "record_type": "case_closed", "reason": "done"}]}
    ).encode()
    async with TestClient(TestServer(app)) as client:
        bad = dict(signed_headers(WKEY, "d1", body))
        bad["X-Hub-Signature"] = "sha256=" + "0" * 64
        assert (await client.post("/webhooks/cases", data=body, headers=bad)).status == 401
        assert (await client.post("/webhooks/cases", data=body)).status == 401
        stale = signed_headers(WKEY, "d1", body, now=1000)
        assert (await client.post("/webhooks/cases", data=body, headers=stale)).status == 401
        assert log.events == []
        ok = await client.post("/webhooks/cases", data=body, headers=signed_headers(WKEY, "d1", body))
        assert ok.status == 202 and (await ok.json())["appended"] == 2
        # a sender retrying after a lost 202 re-signs the same delivery: success-like, idempotent
        again = await client.post("/webhooks/cases", data=body, headers=signed_headers(WKEY, "d1", body))
        assert again.status == 200
        assert await again.json() == {"delivery": "d1", "duplicate": True, "appended": 0, "events": 2}
        # the same delivery id with another body is refused
        forged = body.replace(b"done", b"gone")
        clash = await client.post("/webhooks/cases", data=forged, headers=signed_headers(WKEY, "d1", forged))
        assert clash.status == 409
        other = await client.post("/webhooks/cases", data=body, headers=signed_headers(WKEY, "d2", body))
        assert other.status == 202 and (await other.json())["duplicates"] == 2
    assert len(log.events) == 2
    assert set(deliveries.deliveries) == {("w", "d1"), ("w", "d2")}


async def test_receivers_answer_503_with_retry_after_in_an_outage_and_accept_the_retry() -> None:
    """The log down: the webhook and the EIDO receiver refuse with 503 + Retry-After,
    dead-letter nothing and record no delivery, so the sender's retry is accepted in full."""
    log, deliveries = MemoryLog(fail_appends=1), MemoryDeliveryStore()
    mapper = CaseMapper("cases/test", PKEY, MemoryKeyring(), default_agency="COUNTY")
    hook = webhook_app(
        receiver="w", key=WKEY, mapper=mapper, log_port=log,
        sink=DeadLetterSink("cases/test", "cases", DeadLetterSealer(bytes(32))), deliveries=deliveries,
    )
    body = json.dumps(CASE).encode()
    async with TestClient(TestServer(hook)) as client:
        down = await client.post("/webhooks/cases", data=body, headers=signed_headers(WKEY, "d1", body))
        assert down.status == 503 and down.headers["Retry-After"] == str(RETRY_AFTER_S)
        assert "retry" in (await down.json())["error"]
        assert log.events == [] and log.letters == {} and deliveries.deliveries == {}
        retry = await client.post("/webhooks/cases", data=body, headers=signed_headers(WKEY, "d1", body))
        assert retry.status == 202 and (await retry.json())["appended"] == 1

    eido_log = MemoryLog(fail_appends=1)
    eido = EidoMapper(load_profile("eido"))
    app = eido_app(
        mapper=eido, log_port=eido_log, sink=DeadLetterSink(eido.source, "cad", DeadLetterSealer(bytes(32))),
        revisions=MemoryRevisionStore(),
    )
    doc = (EIDO / "sample-call-transfer.json").read_bytes()
    async with TestClient(TestServer(app)) as client:
        down = await client.post("/eido", data=doc)
        assert down.status == 503 and down.headers["Retry-After"] == str(RETRY_AFTER_S)
        assert eido_log.events == [] and eido_log.letters == {}
        ok = await client.post("/eido", data=doc)
        assert ok.status == 202 and (await ok.json())["appended"] >= 1
        bad = await client.post("/eido", data=b"{not json")  # bad input stays a 400 + dead letter
        assert bad.status == 400 and len(eido_log.letters) == 1


def test_soql_paging_cursor_never_skips_rows_sharing_a_timestamp() -> None:
    rows = [{"k": f"{i:03d}", "u": "2024-01-01T00:00:0" + str(i // 4)} for i in range(10)]
    cursor, seen = None, []
    for _ in range(20):
        page = soql_query(rows, soql_params("u", "k", cursor, 3))
        if not page:
            break
        seen += [r["k"] for r in page]
        cursor = next_cursor(cursor, page, "u")
    assert seen == [r["k"] for r in rows]
    rows.append({"k": "000", "u": "2024-01-01T00:00:09"})  # a revision of row 000
    page = soql_query(rows, soql_params("u", "k", cursor, 3))
    assert [r["u"] for r in page] == ["2024-01-01T00:00:09"]


def test_county_model_is_deterministic_and_realistic() -> None:
    a = CountyModel(seed=3, days=7).generate()
    b = CountyModel(seed=3, days=7).generate()
    assert [c.cad_number for c in a.calls] == [c.cad_number for c in b.calls]
    per_day = len(a.calls) / 7
    assert 300 <= per_day <= 500
    bh = a.bh_calls
    assert 0.05 <= len(bh) / len(a.calls) <= 0.10
    visits = collections.Counter(c.person.person_id for c in bh if c.person)
    assert any(v >= 3 for v in visits.values())
    outcomes = collections.Counter(c.outcome for c in bh)
    assert outcomes["no_enforcement"] > outcomes["emergency_department"] > outcomes["arrest"]
    hours = collections.Counter(c.received_at.hour for c in a.calls)
    assert max(hours.values()) > 2 * min(hours.values())  # daily cycle
    assert 0 < sum(1 for c in a.calls if c.malformed) < 0.03 * len(a.calls)
    assert any(c.revisions for c in a.calls) and a.case_records and a.referrals
    envs = encounter_events(a, PKEY, MemoryKeyring())
    assert {e.type for e in envs} >= {
        "encounter.clinician.engaged.v1",
        "encounter.person.identified.v1",
        "encounter.intake.recorded.v2",
        "referral.requested.v1",
    }
    assert len({e.id for e in envs}) == len(envs)
    assert [e.id for e in envs] == [e.id for e in encounter_events(b, PKEY)]
    row = soql_row(a.calls[0])
    assert row["cad_number"] == a.calls[0].cad_number and "data_updated_at" in row
