"""The frequent-user worklist over HTTP on the real read models and access log: program
scoped, Part 2 only under consent, purpose required, every view logged, never analysts."""

from __future__ import annotations

import httpx
import pytest

from hub.entry.api.auth import DevIssuer
from hub.kernel.audit import AccessLog

pytestmark = pytest.mark.integration

PATH = "/v1/worklist/frequent-users?min_contacts=1&days=3650"


def auth(issuer: DevIssuer, role: str = "case_manager", program: str | None = "coresp-1") -> dict[str, str]:
    return {"Authorization": "Bearer " + issuer.mint(sub="cm-9", role=role, program=program)}


async def test_the_programs_people_with_part2_only_under_consent(
    client: httpx.AsyncClient, issuer: DevIssuer, api_facts: dict[str, str], access_log: AccessLog
) -> None:
    before = await access_log.count()
    resp = await client.get(PATH + "&purpose=care-coordination", headers=auth(issuer))
    assert resp.status_code == 200, resp.text
    people = {p["person"]: p for p in resp.json()["people"]}
    ann, ben = people[api_facts["ann"]], people[api_facts["ben"]]
    assert api_facts["cy"] not in people  # coresp-2's person
    assert ann["contacts"] == 1 and ann["last_incident_id"] == "sea:T00001"
    assert [r["referral_id"] for r in ann["open_referrals"]] == ["ref-ann"]  # Part 2, consent names coresp-1
    assert ann["consent"]["part2_for_program"] is True
    assert ben["open_referrals"] == [] and ben["consent"]["part2_for_program"] is False  # withheld
    assert ann["enrolled_in_services"] and ben["enrolled_in_services"]
    assert await access_log.count() == before + 1
    row = (await access_log.recent(limit=1))[0]
    assert (row["action"], row["subject"], row["purpose"], row["outcome"], row["entries"]) == (
        "worklist",
        "worklist:coresp-1",
        "care-coordination",
        "allowed",
        len(people),
    )
    other = await client.get(PATH + "&purpose=treatment", headers=auth(issuer, program="coresp-2"))
    assert [p["person"] for p in other.json()["people"]] == [api_facts["cy"]]


async def test_refusals_are_logged_and_analysts_never_see_it(
    client: httpx.AsyncClient, issuer: DevIssuer, api_facts: dict[str, str], access_log: AccessLog
) -> None:
    for headers, path, status, outcome in (
        (auth(issuer, "analyst", None), PATH + "&purpose=quality", 403, "denied"),
        (auth(issuer, "admin", None), PATH + "&purpose=operations", 403, "denied"),
        (auth(issuer), PATH, 400, "refused"),  # no purpose of use
        ({}, PATH + "&purpose=treatment", 401, "refused"),
    ):
        before = await access_log.count()
        resp = await client.get(path, headers=headers)
        assert resp.status_code == status, (headers, resp.text)
        assert await access_log.count() == before + 1
        assert (await access_log.recent(limit=1))[0]["outcome"] == outcome
