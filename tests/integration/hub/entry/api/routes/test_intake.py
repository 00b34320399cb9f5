"""The encounter intake over HTTP against the real log, projections and PostgreSQL: a
submission is appended before anything acts on it and shows on the incident's timeline;
a retry appends nothing; every refusal (unknown incident, field errors, expired token,
another program, a reused id) has its clear answer and appends nothing; a Part 2 referral
without consent is held; an amendment is a new revision that replaces the outcome."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio

from connectors.intake.service import IntakeService
from hub.bootstrap import open_runtime
from hub.entry.api.app import create_app
from hub.entry.api.auth import DevIssuer, TokenVerifier
from hub.entry.api.readmodels import PostgresReadModels
from hub.kernel.audit import AccessLog
from hub.kernel.crypto import unseal
from hub.kernel.custom_fields import parse_definitions
from hub.kernel.runtime import Runtime
from hub.kernel.settings import IntakeDestination, IntakeSettings, Settings
from projections.projector import project
from schemas.base import Area, Sealed
from schemas.dispatch import CallReceived
from schemas.envelope import new_event

pytestmark = pytest.mark.integration

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
INCIDENTS = [f"sea:I{n:05d}" for n in range(1, 8)]
#: the county's custom fields the intake accepts (one sensitive: sealed with the note)
CUSTOM = parse_definitions(
    """name: test-county
version: 1
fields:
  housing: {type: enum, values: [housed, sheltered, unsheltered], label: Housing, sources: [cad, intake]}
  visits: {type: integer, min: 0, max: 50, label: Earlier contacts, sources: [intake]}
  safety_plan: {type: boolean, label: Safety plan made, sources: [intake], sensitive: true}
  camp: {type: enum, values: [a, b], label: From the CAD only, sources: [cad]}
""",
    "intake-test.yaml",
)
NAME, MRN = "Jane Quimby", "MPI-884213"


def intake_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "intake": IntakeSettings(
                destinations={
                    "clinic-a": IntakeDestination(display="Clinic A", channel="fhir"),
                    "clinic-b": IntakeDestination(display="Clinic B", channel="hl7v2"),
                },
                person_systems=["mpi:test-county"],
            )
        }
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def intake_rt(settings: Settings, topics: object, api_facts: dict[str, str]) -> AsyncIterator[Runtime]:
    """A runtime with intake destinations, over the session's log, with the module's CAD calls imported."""
    async with open_runtime(intake_settings(settings)) as rt:
        await rt.log.append(
            [
                new_event(
                    CallReceived(
                        incident_id=iid,
                        agency="sea",
                        cad_number=iid.split(":")[1],
                        at=T0 + timedelta(minutes=i),
                        source_timezone="America/Los_Angeles",
                        call_type_final="CRISIS",  # a behavioral-health call (fallback vocabulary)
                        area=Area(precinct="south", beat="S7"),
                    ),
                    source="test/intake",
                    record_id=iid,
                )
                for i, iid in enumerate(INCIDENTS)
            ]
        )
        await project(rt, until_caught_up=True)
        yield rt


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(
    intake_rt: Runtime, issuer: DevIssuer, access_log: AccessLog
) -> AsyncIterator[httpx.AsyncClient]:
    rt = intake_rt
    read_models = PostgresReadModels(rt.settings, rt.pool)
    service = IntakeService(
        log=rt.log,
        keystore=rt.keyring,
        pseudonym_key=rt.pseudonym_key,
        pool=rt.pool,
        core_schema=rt.settings.core_schema,
        options=rt.settings.intake,
        incident_known=read_models.incident_known,
        consents_of=read_models.consents_of,
        custom=CUSTOM,
    )
    app = create_app(
        rt.settings,
        read_models,
        access_log,
        TokenVerifier(rt.settings, jwks=issuer.jwks()),
        intake_service=service,
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c:
        yield c


def auth(
    issuer: DevIssuer, role: str = "clinician", program: str | None = "coresp-1", **kw: Any
) -> dict[str, str]:
    return {"Authorization": "Bearer " + issuer.mint(sub="clin-42", role=role, program=program, **kw)}


def form(incident: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "submission_id": str(uuid.uuid4()),
        "incident_id": incident,
        "encounter_at": (T0 + timedelta(minutes=20)).isoformat(),
        "mode": "co_response",
        "outcome": "voluntary_transport",
        "use_of_force": "none",
        "services_offered": ["crisis_stabilization"],
        "person": {
            "system": "mpi:test-county",
            "identifier": MRN,
            "given_name": "Jane",
            "family_name": "Quimby",
        },
        "referral": {
            "destination": "clinic-a",
            "service_type": "outpatient_mh",
            "urgency": "urgent",
            "reason": f"{NAME} asked for follow-up",
        },
        "note": f"{NAME} calmer after 20 minutes",
    }
    body.update(changes)
    return body


async def indexed(rt: Runtime) -> int:
    return int(await rt.pool.fetchval(f"SELECT count(*) FROM {rt.settings.core_schema}.event_index"))


async def test_submission_is_appended_and_on_the_incident_timeline(
    api: httpx.AsyncClient, issuer: DevIssuer, intake_rt: Runtime
) -> None:
    before = await indexed(intake_rt)
    body = form(INCIDENTS[0])
    resp = await api.post("/v1/intake/encounters", json=body, headers=auth(issuer))
    assert resp.status_code == 201, resp.text
    receipt = resp.json()
    assert receipt["duplicate"] is False and receipt["revision"] == 0
    assert receipt["events_appended"] == 4  # engaged, person identified, the form, the referral
    assert receipt["referral"]["status"] == "requested"
    assert await indexed(intake_rt) == before + 4
    assert NAME not in resp.text and MRN not in resp.text

    await project(intake_rt, until_caught_up=True)
    timeline = await api.get(f"/v1/incidents/{INCIDENTS[0]}/timeline?purpose=treatment", headers=auth(issuer))
    assert timeline.status_code == 200, timeline.text
    types = [e["event_type"] for e in timeline.json()["entries"]]
    assert {
        "encounter.clinician.engaged.v1",
        "encounter.person.identified.v1",
        "encounter.intake.recorded.v2",
        "referral.requested.v1",
    } <= set(types)
    assert NAME not in timeline.text and MRN not in timeline.text and "Jane" not in timeline.text
    summary = await intake_rt.pool.fetchrow(
        f"SELECT onscene_outcome, use_of_force, co_responder, referral_made FROM"
        f" {intake_rt.settings.postgres.schema_}.incident_summary WHERE incident_id = $1",
        INCIDENTS[0],
    )
    assert dict(summary) == {
        "onscene_outcome": "voluntary_transport",
        "use_of_force": "none",
        "co_responder": True,
        "referral_made": True,
    }


async def test_double_submission_appends_nothing(
    api: httpx.AsyncClient, issuer: DevIssuer, intake_rt: Runtime
) -> None:
    body = form(INCIDENTS[1])
    first = await api.post("/v1/intake/encounters", json=body, headers=auth(issuer))
    assert first.status_code == 201
    before = await indexed(intake_rt)
    again = await api.post("/v1/intake/encounters", json=body, headers=auth(issuer))
    assert again.status_code == 200
    assert again.json() == {**first.json(), "duplicate": True, "events_appended": 0}
    changed = await api.post(
        "/v1/intake/encounters", json={**body, "outcome": "arrest"}, headers=auth(issuer)
    )
    assert changed.status_code == 409 and "already used" in changed.json()["detail"]
    assert await indexed(intake_rt) == before


async def test_unknown_incident_is_refused_on_its_field(
    api: httpx.AsyncClient, issuer: DevIssuer, intake_rt: Runtime
) -> None:
    before = await indexed(intake_rt)
    resp = await api.post("/v1/intake/encounters", json=form("sea:NOPE404"), headers=auth(issuer))
    assert resp.status_code == 422
    assert resp.json()["errors"] == [
        {"field": "incident_id", "message": "no CAD incident with this id has been imported"}
    ]
    assert await indexed(intake_rt) == before


async def test_field_errors_name_fields_never_values(
    api: httpx.AsyncClient, issuer: DevIssuer, intake_rt: Runtime
) -> None:
    before = await indexed(intake_rt)
    body = form(INCIDENTS[2], outcome="sent_home", use_of_force=None)
    body["person"] = None  # a referral needs the person
    body["services_offered"] = ["ballet"]
    resp = await api.post("/v1/intake/encounters", json=body, headers=auth(issuer))
    assert resp.status_code == 422
    fields = {e["field"] for e in resp.json()["errors"]}
    assert {"outcome", "use_of_force"} <= fields
    assert NAME not in resp.text and "sent_home" not in resp.text and "ballet" not in resp.text
    # shape fixed, configuration next: unknown service and destination
    body = form(INCIDENTS[2], services_offered=["ballet"])
    body["referral"]["destination"] = "nowhere"
    resp = await api.post("/v1/intake/encounters", json=body, headers=auth(issuer))
    assert resp.status_code == 422
    assert {e["field"] for e in resp.json()["errors"]} == {"services_offered", "referral.destination"}
    no_person = form(INCIDENTS[2], person=None)
    resp = await api.post("/v1/intake/encounters", json=no_person, headers=auth(issuer))
    assert resp.json()["errors"] == [
        {"field": "referral", "message": "a referral needs the person identified"}
    ]
    bad_json = await api.post(
        "/v1/intake/encounters",
        content=b"{not json",
        headers={**auth(issuer), "Content-Type": "application/json"},
    )
    assert bad_json.status_code == 422 and bad_json.json()["errors"][0]["field"] == "<body>"
    assert await indexed(intake_rt) == before


async def test_expired_token_and_other_roles_are_refused(
    api: httpx.AsyncClient, issuer: DevIssuer, intake_rt: Runtime
) -> None:
    before = await indexed(intake_rt)
    expired = auth(issuer, ttl_seconds=60, now=time.time() - 3600)
    assert (
        await api.post("/v1/intake/encounters", json=form(INCIDENTS[2]), headers=expired)
    ).status_code == 401
    for role, program in (("analyst", None), ("dispatcher", None), ("admin", None), ("clinician", None)):
        resp = await api.post(
            "/v1/intake/encounters", json=form(INCIDENTS[2]), headers=auth(issuer, role, program)
        )
        assert resp.status_code == 403, (role, resp.text)
    assert (await api.get("/v1/intake/options", headers=auth(issuer, "analyst", None))).status_code == 403
    assert await indexed(intake_rt) == before


async def test_part2_referral_without_consent_is_held_with_consent_requested(
    api: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    body = form(INCIDENTS[3], person={"system": "mpi:test-county", "identifier": "MPI-P2-1"})
    body["referral"].update(
        service_type="substance_use_treatment", substance_use=True, destination="clinic-b"
    )
    held = await api.post("/v1/intake/encounters", json=body, headers=auth(issuer))
    assert held.status_code == 201
    assert held.json()["referral"]["status"] == "held_for_consent"
    assert "42 CFR Part 2" in held.json()["referral"]["reason"]

    consented = form(INCIDENTS[4], person={"system": "mpi:test-county", "identifier": "MPI-P2-2"})
    consented["referral"].update(
        service_type="substance_use_treatment", substance_use=True, destination="clinic-b"
    )
    consented["consent"] = {
        "part2": True,
        "recipients": ["clinic-b"],
        "expires_at": (datetime.now(UTC) + timedelta(days=90)).isoformat(),
    }
    ok = await api.post("/v1/intake/encounters", json=consented, headers=auth(issuer))
    assert ok.status_code == 201, ok.text
    assert ok.json()["referral"]["status"] == "requested"
    assert ok.json()["events_appended"] == 5  # + consent granted


async def test_amendment_is_a_new_revision_of_the_same_program(
    api: httpx.AsyncClient, issuer: DevIssuer, intake_rt: Runtime
) -> None:
    body = form(INCIDENTS[5])
    sid = body["submission_id"]
    assert (await api.post("/v1/intake/encounters", json=body, headers=auth(issuer))).status_code == 201
    amendment = {k: v for k, v in body.items() if k not in ("submission_id", "incident_id")}
    amendment.update(
        amendment_id=str(uuid.uuid4()),
        outcome="emergency_department",
        use_of_force="restraints",
        reason="outcome was recorded wrong",
    )
    path = f"/v1/intake/encounters/{sid}/amendments"
    other = await api.post(path, json=amendment, headers=auth(issuer, program="coresp-2"))
    assert other.status_code == 403
    resp = await api.post(path, json=amendment, headers=auth(issuer))
    assert resp.status_code == 201, resp.text
    assert resp.json()["revision"] == 1
    assert resp.json()["events_appended"] == 1  # only the form record: the referral was already requested
    assert resp.json()["referral"]["referral_id"]
    assert (await api.post(path, json=amendment, headers=auth(issuer))).status_code == 200
    moved = {
        **amendment,
        "amendment_id": str(uuid.uuid4()),
        "person": {"system": "mpi:test-county", "identifier": "SOMEONE-ELSE"},
    }
    refused = await api.post(path, json=moved, headers=auth(issuer))
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "person"
    reused = await api.post(
        f"/v1/intake/encounters/{uuid.uuid4()}/amendments", json=amendment, headers=auth(issuer)
    )
    assert reused.status_code == 409  # the amendment id names an amendment of another form
    fresh = {**amendment, "amendment_id": str(uuid.uuid4())}
    unknown = await api.post(
        f"/v1/intake/encounters/{uuid.uuid4()}/amendments", json=fresh, headers=auth(issuer)
    )
    assert unknown.status_code == 404

    await project(intake_rt, until_caught_up=True)
    row = await intake_rt.pool.fetchrow(
        "SELECT onscene_outcome, outcome, use_of_force"
        f" FROM {intake_rt.settings.postgres.schema_}.incident_summary WHERE incident_id = $1",
        INCIDENTS[5],
    )
    assert dict(row) == {
        "onscene_outcome": "emergency_department",
        "outcome": "emergency_department",
        "use_of_force": "restraints",
    }
    timeline = (
        await api.get(f"/v1/incidents/{INCIDENTS[5]}/timeline?purpose=treatment", headers=auth(issuer))
    ).json()
    forms = [e for e in timeline["entries"] if e["event_type"] == "encounter.intake.recorded.v2"]
    assert sorted(f["data"]["revision"] for f in forms) == [0, 1]  # the original stays on record
    assert {f["summary"].split(":")[1].split(",")[0].strip() for f in forms} == {"submitted", "amendment 1"}


async def test_incident_search_and_options(api: httpx.AsyncClient, issuer: DevIssuer) -> None:
    found = await api.get("/v1/intake/incidents?q=I0000&area=s7", headers=auth(issuer))
    assert found.status_code == 200
    ids = [i["incident_id"] for i in found.json()["incidents"]]
    assert ids == sorted(INCIDENTS, reverse=True)  # newest first
    assert all("persons" not in i for i in found.json()["incidents"])
    assert (await api.get("/v1/intake/incidents?q=%25", headers=auth(issuer))).json()["incidents"] == []
    opts = (await api.get("/v1/intake/options", headers=auth(issuer, "case_manager"))).json()
    assert [d["name"] for d in opts["destinations"]] == ["clinic-a", "clinic-b"]
    assert opts["program"] == "coresp-1" and "none" in opts["use_of_force"]
    assert [(f["name"], f["type"], f["sensitive"]) for f in opts["custom_fields"]] == [
        ("housing", "enum", False), ("visits", "integer", False), ("safety_plan", "boolean", True)]
    assert opts["custom_fields"][0]["values"] == ["housed", "sheltered", "unsheltered"]


async def test_custom_fields_are_checked_recorded_and_sensitive_ones_sealed(
    api: httpx.AsyncClient, issuer: DevIssuer, intake_rt: Runtime
) -> None:
    before = await indexed(intake_rt)
    bad = form(INCIDENTS[6], custom={"housing": "homeless", "visits": 51, "camp": "a", "color": "x",
                                     "safety_plan": "yes"})
    refused = await api.post("/v1/intake/encounters", json=bad, headers=auth(issuer))
    assert refused.status_code == 422
    assert {(e["field"], e["message"]) for e in refused.json()["errors"]} == {
        ("custom.housing", "must be one of housed, sheltered, unsheltered"),
        ("custom.visits", "must be at most 50"),
        ("custom.camp", "not a custom field declared for the intake"),
        ("custom.color", "not a custom field declared for the intake"),
        ("custom.safety_plan", "must be true or false"),
    }
    assert "homeless" not in refused.text and await indexed(intake_rt) == before  # nothing appended

    good = form(INCIDENTS[6], custom={"housing": "unsheltered", "visits": 3, "safety_plan": True})
    resp = await api.post("/v1/intake/encounters", json=good, headers=auth(issuer))
    assert resp.status_code == 201, resp.text
    await project(intake_rt, until_caught_up=True)
    schema = intake_rt.settings.postgres.schema_
    row = await intake_rt.pool.fetchrow(
        f"SELECT custom::text AS custom FROM {schema}.incident_summary WHERE incident_id = $1", INCIDENTS[6])
    assert json.loads(row["custom"]) == {"housing": "unsheltered", "visits": 3}  # not the sensitive one
    fact = await intake_rt.pool.fetchrow(
        f"SELECT data::text AS data FROM {schema}.facts WHERE incident_id = $1 AND event_type = $2",
        INCIDENTS[6], "encounter.intake.recorded.v2")
    data = json.loads(fact["data"])
    assert data["custom"] == {"housing": "unsheltered", "visits": 3} and "safety_plan" not in json.dumps(data)
    keys = await intake_rt.keyring.resolve_ids([data["note"]["kid"]])
    assert unseal(keys, Sealed.model_validate(data["note"]))["custom"] == {"safety_plan": True}
