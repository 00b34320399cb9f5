"""Every role against every endpoint family over HTTP: allowed answers 200, denied 403;
every person-level read (allowed or denied) grows the access log by exactly one row."""

from __future__ import annotations

import httpx
import pytest

from hub.entry.api.auth import DevIssuer
from hub.entry.api.roles import POLICY, Family, Role
from hub.kernel.audit import AccessLog

pytestmark = pytest.mark.integration

INCIDENT = "sea:T00001"  # ann's incident, program coresp-1


def family_requests(people: dict[str, str]) -> dict[Family, list[str]]:
    return {
        Family.INCIDENT_TIMELINE: [f"/v1/incidents/{INCIDENT}/timeline?purpose=treatment"],
        Family.PERSON_TIMELINE: [f"/v1/persons/{people['ann']}/timeline?purpose=treatment"],
        Family.AGGREGATES: [
            "/v1/reports/outcomes",
            "/v1/reports/outcomes?by=month",
            "/v1/reports/outcomes?by=area",
            "/v1/reports/outcomes/export?format=csv&by=month",
            "/v1/reports/outcomes/export?format=parquet",
            "/v1/reports/funnel",
            "/v1/reports/repeat-encounters",
            "/v1/dashboard",
        ],
        Family.PIPELINE: ["/v1/pipeline"],
        Family.DEADLETTERS: ["/v1/deadletters"],
        Family.VERIFICATION: ["/v1/verification"],
        Family.ACCESS_LOG: ["/v1/access-log"],
        Family.INTAKE: [],  # writes: every role against the intake in routes/test_intake.py
        Family.WORKLIST: ["/v1/worklist/frequent-users?purpose=treatment"],
    }


def token(issuer: DevIssuer, role: Role, program: str | None = "coresp-1") -> dict[str, str]:
    prog = program if role in (Role.CLINICIAN, Role.CASE_MANAGER) else None
    return {"Authorization": "Bearer " + issuer.mint(sub=f"test-{role.value}", role=role, program=prog)}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("family", list(Family))
async def test_role_against_family(
    client: httpx.AsyncClient,
    issuer: DevIssuer,
    access_log: AccessLog,
    api_facts: dict[str, str],
    role: Role,
    family: Family,
) -> None:
    for path in family_requests(api_facts)[family]:
        before = await access_log.count()
        resp = await client.get(path, headers=token(issuer, role))
        allowed = role in POLICY[family]
        assert resp.status_code == (200 if allowed else 403), (path, role, resp.text)
        grew = await access_log.count() - before
        if family in (Family.INCIDENT_TIMELINE, Family.PERSON_TIMELINE, Family.WORKLIST):
            assert grew == 1, f"{role} {path}: access log grew by {grew}"
            last = (await access_log.recent(limit=1))[0]
            assert (last["sub"], last["role"], last["action"], last["purpose"]) == (
                f"test-{role.value}",
                role.value,
                family.value,
                "treatment",
            )
            assert last["outcome"] == ("allowed" if allowed else "denied")
        else:
            assert grew == 0


async def test_dispatcher_sees_cad_facts_only(client: httpx.AsyncClient, issuer: DevIssuer) -> None:
    resp = await client.get(
        f"/v1/incidents/{INCIDENT}/timeline",
        headers={**token(issuer, Role.DISPATCHER), "X-Purpose-Of-Use": "operations"},
    )
    entries = resp.json()["entries"]
    assert entries and {e["family"] for e in entries} == {"dispatch"}


async def test_clinician_sees_clinical_facts_of_own_program(
    client: httpx.AsyncClient, issuer: DevIssuer, api_facts: dict[str, str]
) -> None:
    resp = await client.get(
        f"/v1/incidents/{INCIDENT}/timeline?purpose=treatment", headers=token(issuer, Role.CLINICIAN)
    )
    families = {e["family"] for e in resp.json()["entries"]}
    assert {"dispatch", "encounter"} <= families


async def test_other_program_denied_and_logged(
    client: httpx.AsyncClient, issuer: DevIssuer, access_log: AccessLog, api_facts: dict[str, str]
) -> None:
    for path in (
        f"/v1/persons/{api_facts['ann']}/timeline?purpose=treatment",
        f"/v1/incidents/{INCIDENT}/timeline?purpose=treatment",
    ):
        before = await access_log.count()
        resp = await client.get(path, headers=token(issuer, Role.CASE_MANAGER, program="coresp-2"))
        assert resp.status_code == 403
        assert await access_log.count() == before + 1
        assert (await access_log.recent(limit=1))[0]["outcome"] == "denied"
    # and coresp-2 does see its own person (cy)
    ok = await client.get(
        f"/v1/persons/{api_facts['cy']}/timeline?purpose=treatment",
        headers=token(issuer, Role.CASE_MANAGER, program="coresp-2"),
    )
    assert ok.status_code == 200 and ok.json()["entries"]


def _part2(entries: list[dict]) -> list[dict]:
    return [e for e in entries if e["substance_use"]]


async def test_part2_only_under_consent(
    client: httpx.AsyncClient, issuer: DevIssuer, api_facts: dict[str, str]
) -> None:
    ann = (
        await client.get(
            f"/v1/persons/{api_facts['ann']}/timeline?purpose=treatment",
            headers=token(issuer, Role.CLINICIAN),
        )
    ).json()["entries"]
    assert [e["referral_id"] for e in _part2(ann) if e["family"] != "consent"] == ["ref-ann"]  # coresp-1
    ben = (
        await client.get(
            f"/v1/persons/{api_facts['ben']}/timeline?purpose=treatment",
            headers=token(issuer, Role.CLINICIAN),
        )
    ).json()["entries"]
    assert ben and not _part2(ben)  # no consent: withheld
    for person in ("ann", "ben"):
        admin = (
            await client.get(
                f"/v1/persons/{api_facts[person]}/timeline?purpose=audit", headers=token(issuer, Role.ADMIN)
            )
        ).json()["entries"]
        assert admin and not _part2(admin)  # nobody bypasses Part 2


async def test_purpose_required(
    client: httpx.AsyncClient, issuer: DevIssuer, access_log: AccessLog, api_facts: dict[str, str]
) -> None:
    before = await access_log.count()
    for purpose in ("", "?purpose=curiosity"):
        resp = await client.get(
            f"/v1/persons/{api_facts['ann']}/timeline{purpose}", headers=token(issuer, Role.ADMIN)
        )
        assert resp.status_code == 400
    assert await access_log.count() == before + 2  # nothing was read; both refusals are logged
    rows = await access_log.recent(limit=2)
    assert [(r["outcome"], r["purpose"], r["reason"]) for r in rows] == [
        ("refused", "<invalid>", "bad purpose"),
        ("refused", "<none>", "no purpose"),
    ]


async def test_unknown_subject_is_404_and_still_logged(
    client: httpx.AsyncClient, issuer: DevIssuer, access_log: AccessLog
) -> None:
    before = await access_log.count()
    resp = await client.get(
        "/v1/persons/psn_" + "0" * 32 + "/timeline?purpose=audit", headers=token(issuer, Role.ADMIN)
    )
    assert resp.status_code == 404
    assert await access_log.count() == before + 1


@pytest.mark.parametrize("header", [None, "Bearer nonsense", "Basic dXNlcjpwYXNz"])
async def test_unauthenticated_is_401(client: httpx.AsyncClient, header: str | None) -> None:
    resp = await client.get("/v1/pipeline", headers={"Authorization": header} if header else {})
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"


async def test_public_routes(client: httpx.AsyncClient) -> None:
    health = (await client.get("/healthz")).json()
    assert health["status"] == "ok" and health["log_appends"] == {"available": True, "problems": []}
    spec = (await client.get("/openapi.json")).json()
    assert "/v1/persons/{person}/timeline" in spec["paths"]
    metrics = (await client.get("/metrics")).text
    assert "hub_verify_ok" in metrics and "hub_connector_records_read_total" in metrics
    jwks = (await client.get("/dev-issuer/jwks.json")).json()
    assert jwks["keys"][0]["alg"] == "RS256"
    disco = (await client.get("/.well-known/openid-configuration")).json()
    assert disco["jwks_uri"].endswith("/dev-issuer/jwks.json")


def _counts(doc: object) -> list[int]:
    """Every published count: the ``value`` of each cell and the ``n`` of each statistic."""
    if isinstance(doc, dict):
        own = [v for k, v in doc.items() if k in ("value", "n") and isinstance(v, int)]
        return own + [i for v in doc.values() for i in _counts(v)]
    if isinstance(doc, list):
        return [i for v in doc for i in _counts(v)]
    return []


async def test_aggregates_publish_no_small_cells(client: httpx.AsyncClient, issuer: DevIssuer) -> None:
    for path in (
        "/v1/reports/outcomes?by=area",
        "/v1/reports/outcomes?by=month",
        "/v1/reports/funnel",
        "/v1/reports/repeat-encounters",
    ):
        doc = (await client.get(path, headers=token(issuer, Role.ANALYST))).json()
        counts = _counts(doc)
        assert counts, path
        small = [v for v in counts if 1 <= v <= 10]
        assert not small, (path, small)


def _consents(entries: list[dict]) -> list[str]:
    return [e["data"]["consent_id"] for e in entries if e["family"] == "consent"]


@pytest.mark.parametrize(
    ("person", "role", "program", "purpose", "visible"),
    [
        ("ann", Role.CLINICIAN, "coresp-1", "treatment", ["cons-ann"]),  # a recipient
        ("ann", Role.CASE_MANAGER, "coresp-1", "treatment", ["cons-ann"]),
        ("ann", Role.ADMIN, None, "audit", []),  # no role bypasses Part 2, not even its existence
        ("ben", Role.CLINICIAN, "coresp-1", "treatment", []),  # in care, but not a recipient
        ("ben", Role.ADMIN, None, "audit", []),
        ("cy", Role.CASE_MANAGER, "coresp-2", "treatment", ["cons-cy"]),  # general: as any fact
        ("cy", Role.ADMIN, None, "audit", ["cons-cy"]),
    ],
)
async def test_a_part2_consent_is_visible_only_to_its_recipients(
    client: httpx.AsyncClient,
    issuer: DevIssuer,
    api_facts: dict[str, str],
    person: str,
    role: Role,
    program: str | None,
    purpose: str,
    visible: list[str],
) -> None:
    resp = await client.get(
        f"/v1/persons/{api_facts[person]}/timeline?purpose={purpose}",
        headers=token(issuer, role, program=program),
    )
    assert resp.status_code == 200, resp.text
    entries = resp.json()["entries"]
    assert entries and _consents(entries) == visible
    hidden = {"ann": "cons-ann", "ben": "cons-ben"}.get(person)
    if hidden and hidden not in visible:
        assert hidden not in resp.text  # not in any entry, summary or field
