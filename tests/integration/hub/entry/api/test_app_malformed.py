"""Malformed input to the read API answers 4xx with a clear message, never 500 — NUL
bytes, control characters, over-long and odd ids, in paths and query parameters — against
the real PostgreSQL (where a NUL used to fail the query), and a refused person-level read
still leaves its access-log row without the caller's input."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.entry.api.auth import DevIssuer
from hub.entry.api.roles import Role
from hub.kernel.audit import AccessLog

pytestmark = pytest.mark.integration


def admin(issuer: DevIssuer) -> dict[str, str]:
    return {"Authorization": "Bearer " + issuer.mint(sub="t-admin", role=Role.ADMIN)}


@pytest.mark.parametrize(
    "path",
    [
        "/v1/incidents/sf:2406%00/timeline",
        "/v1/incidents/sf:%0a/timeline",
        "/v1/incidents/" + "a" * 65 + ":1/timeline",
        "/v1/incidents/sf:" + "9" * 300 + "/timeline",
        "/v1/persons/psn_%00/timeline",
        "/v1/persons/psn_" + "0" * 32 + "%0a/timeline",
    ],
)
async def test_a_nul_or_control_character_in_an_id_is_a_logged_422_not_a_500(
    client: httpx.AsyncClient, issuer: DevIssuer, access_log: AccessLog, api_facts: dict[str, str], path: str
) -> None:
    before = await access_log.count()
    resp = await client.get(path, headers=admin(issuer), params={"purpose": "audit"})
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"][0]["type"] == "string_pattern_mismatch"
    assert await access_log.count() == before + 1
    row = (await access_log.recent(limit=1))[0]
    assert (row["outcome"], row["reason"], row["subject"]) == ("refused", "bad id", "<invalid>")


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/access-log", {"subject": "a\x00b"}),
        ("/v1/access-log", {"subject": "x" * 201}),
        ("/v1/access-log", {"limit": "1e9"}),
        ("/v1/deadletters", {"source_family": "cad\x00"}),
        ("/v1/reports/outcomes", {"from": "2024-13-45"}),
        ("/v1/reports/outcomes", {"by": "\x00"}),
        ("/v1/persons/psn_" + "0" * 32 + "/timeline", {"purpose": "treat\x00ment"}),
    ],
)
async def test_malformed_query_parameters_are_4xx(
    client: httpx.AsyncClient, issuer: DevIssuer, api_facts: dict[str, str], path: str, params: dict[str, str]
) -> None:
    resp = await client.get(path, headers=admin(issuer), params=params)
    assert 400 <= resp.status_code < 500, resp.text
    assert resp.json()["detail"]


ROUTES = (
    "/v1/incidents/{x}/timeline",
    "/v1/persons/{x}/timeline",
    "/v1/access-log?subject={x}",
    "/v1/deadletters?source_family={x}",
    "/v1/reports/outcomes?from={x}",
    "/v1/reports/funnel?to={x}",
    "/v1/dashboard?by={x}",
    "/dashboard/static/{x}",
)


async def test_no_input_makes_a_route_answer_500(
    client: httpx.AsyncClient, issuer: DevIssuer, api_facts: dict[str, str]
) -> None:
    """Hypothesis drives every route with arbitrary text (NULs, control characters,
    separators, non-ASCII); each request runs on the session's loop while Hypothesis runs
    in a worker thread."""
    loop = asyncio.get_running_loop()
    headers = {**admin(issuer), "X-Purpose-Of-Use": "audit"}
    seen: list[tuple[str, int]] = []

    def request(url: str) -> int:
        future = asyncio.run_coroutine_threadsafe(client.get(url, headers=headers), loop)
        return future.result(timeout=30).status_code

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(route=st.sampled_from(ROUTES), text=st.text(min_size=0, max_size=300))
    def probe(route: str, text: str) -> None:
        prefix = "sf:" if route.startswith("/v1/incidents") and text[:1] != "/" else ""
        url = route.format(x=quote(prefix + text, safe=""))
        status = request(url)
        seen.append((route, status))
        assert status < 500, (url, status)

    await asyncio.to_thread(probe)
    assert {r for r, _ in seen} == set(ROUTES)
