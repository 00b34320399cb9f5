"""Issue 11's acceptance, in headless Chromium on a narrow tablet viewport, keyboard only: a
clinician finds an imported CAD incident of the demo county, fills in the encounter form
and submits it while the tablet is offline (the form keeps it and sends it when the
connection is back); the incident's timeline shows it within a second, the referral goes
to the EHR simulator over FHIR, the EHR's answer comes back, and the funnel and outcome
counts move — no simulator appends an encounter fact. The form also renders the county's
own fields (declared in its definitions file) as labelled inputs, reached with the
keyboard, and their values travel in the form's fact. The screenshot is kept as
``test-artifacts/intake.png``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from connectors.registry import build, parse_components
from hub.bootstrap import open_runtime
from hub.devtools.demo import DEMO_PROGRAM, FHIR_DEST, DemoResult, component_configs, with_county_vocabulary
from hub.devtools.ehr_sim.simulator import EhrSimulator, SimConfig
from hub.devtools.ehr_sim.store import Lifecycle
from hub.entry.api.auth import DevIssuer
from hub.entry.api.server import ThreadedServer
from hub.kernel.runtime import Runtime
from hub.kernel.settings import PROJECT_ROOT, Settings
from projections.projector import project
from tests.e2e.browser import Browser
from tests.e2e.conftest import with_intake
from tests.integration.waiting import wait_for

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
IDENTIFIER = "MPI-E2E-7731"  # a new person of the county's master person index
TABLET = {"width": 600, "height": 1000}  # a small tablet, portrait


@pytest_asyncio.fixture(loop_scope="session")
async def live(settings: Settings, demo_run: DemoResult) -> AsyncIterator[Runtime]:
    """The hub running as a county runs it: the projector following the log, the FHIR
    delivery worker and Task poller sending to the EHR simulator."""
    # the demo's projections apply the county's vocabulary (its CAD facts name it)
    county = with_county_vocabulary(with_intake(settings))
    async with open_runtime(county) as rt, contextlib.AsyncExitStack() as stack:
        sim = EhrSimulator(
            SimConfig(
                require_auth=True,
                seed=5,
                lifecycle=Lifecycle(
                    accept_after_s=0.3, progress_after_s=0.6, complete_after_s=0.9, decline_rate=0.0
                ),
            )
        )
        await sim.start()
        stack.push_async_callback(sim.stop)
        configs = component_configs(
            "http://127.0.0.1:9/unused",
            "http://127.0.0.1:9/unused",
            fhir_base=sim.fhir_base_url,
            token_url=sim.token_url,
            mllp_port=9,
        )
        wanted = [c for c in configs if c["kind"] in ("fhir-delivery", "fhir-task-poller")]
        for component in build(rt, parse_components(wanted, "e2e")):
            await component.start()
            stack.push_async_callback(component.stop)
        stop = asyncio.Event()
        projector = asyncio.create_task(project(rt, stop=stop))

        async def halt() -> None:
            stop.set()
            await projector

        stack.push_async_callback(halt)
        yield rt


async def an_imported_call(rt: Runtime) -> dict[str, Any]:
    """A behavioral-health call of the imported CAD feed that no team has a form for, closed
    by the CAD with no enforcement action (so a voluntary transport moves the counts)."""
    row = await rt.pool.fetchrow(
        f"""SELECT incident_id, received_at FROM {rt.settings.postgres.schema_}.incident_summary
            WHERE behavioral_health AND received_at IS NOT NULL AND NOT co_responder
              AND cad_outcome = 'no_enforcement' AND onscene_outcome IS NULL
            ORDER BY received_at DESC LIMIT 1"""
    )
    assert row is not None, "the demo county has no suitable call"
    return dict(row)


def bearer(issuer: DevIssuer, role: str, program: str | None = None) -> dict[str, str]:
    return {"Authorization": "Bearer " + issuer.mint(sub="e2e-" + role, role=role, program=program)}


async def aggregates(api: httpx.AsyncClient, analyst: dict[str, str]) -> tuple[int, int]:
    funnel = (await api.get("/v1/reports/funnel", headers=analyst)).json()
    report = (await api.get("/v1/reports/outcomes", headers=analyst)).json()
    return funnel["requested"]["value"], report["headline"]["voluntary_transport"]["value"]


async def test_a_clinician_submits_the_form_keyboard_only_and_the_loop_closes(
    chromium: str, api_server: ThreadedServer, live: Runtime, settings: Settings
) -> None:
    rt = live
    issuer = DevIssuer.open(settings)
    clinician = issuer.mint(sub="clin-e2e", role="clinician", program=DEMO_PROGRAM)
    # the live aggregates move by one form: an auditor's (and operator's) view — analysts read
    # released months only, where a change of one is never shown (issue 15)
    analyst = bearer(issuer, "auditor")
    call = await an_imported_call(rt)
    incident = call["incident_id"]
    core = rt.settings.core_schema
    sim_facts = f"SELECT count(*) FROM {core}.indexed_events WHERE event_type LIKE 'encounter.%'"
    async with httpx.AsyncClient(base_url=api_server.url, timeout=30) as api:
        requested0, transports0 = await aggregates(api, analyst)
        encounter_facts0 = await rt.pool.fetchval(sim_facts)

        async with Browser(chromium, **TABLET) as browser:
            await browser.goto(f"{api_server.url}/intake/#token={clinician}")
            await browser.wait_for("document.body && document.body.dataset.ready === '1'", timeout=30)
            assert await browser.evaluate("location.hash") == ""  # the token left the address bar
            assert await browser.evaluate("document.documentElement.scrollWidth") <= TABLET["width"]

            # 1. find the incident by its number, choose it
            await browser.tab_to("search-q")
            await browser.type(incident.split(":", 1)[1])
            await browser.press("Enter")
            await browser.wait_for("document.getElementById('incident-0') !== null")
            await browser.tab_to("incident-0")
            await browser.press(" ")
            # 2. the encounter: a voluntary transport; use of force "none" (first after the prompt)
            await browser.tab_to("outcome")
            for _ in range(
                await browser.evaluate(
                    "[...document.getElementById('outcome').options]"
                    ".findIndex(o => o.value === 'voluntary_transport')"
                )
            ):
                await browser.press("ArrowDown")
            await browser.tab_to("use_of_force")
            await browser.press("ArrowDown")
            # 3. the person; 4. a referral to the FHIR clinic
            await browser.tab_to("has-person")
            await browser.press(" ")
            await browser.tab_to("person-identifier")
            await browser.type(IDENTIFIER)
            await browser.tab_to("has-referral")
            await browser.press(" ")
            await browser.tab_to("referral-reason")
            await browser.type("follow-up after a crisis call")
            # the county's own fields, rendered from its definitions with labels: housing (a
            # select: not recorded, housed, sheltered, unsheltered), earlier contacts (a number)
            # and a sensitive one (sealed with the note)
            labels = await browser.evaluate(
                "[...document.querySelectorAll('#custom-fields label')].map(l => [l.htmlFor, l.textContent])"
            )
            assert labels == [["custom-housing", "Housing status"],
                              ["custom-earlier_contacts", "Earlier contacts with the team"],
                              ["custom-safety_plan", "Safety plan made"]]
            await browser.tab_to("custom-housing")
            for _ in range(3):
                await browser.press("ArrowDown")
            await browser.tab_to("custom-earlier_contacts")
            await browser.type("2")
            await browser.tab_to("custom-safety_plan")
            await browser.press("ArrowDown")  # yes
            assert await browser.evaluate("JSON.stringify(document.getElementById('custom-housing').value)") \
                == '"unsheltered"'
            values = await browser.evaluate(
                "({o: outcome.value, f: use_of_force.value,"
                " d: document.getElementById('referral-destination').value,"
                " i: document.querySelector('input[name=incident_id]:checked').value})"
            )
            assert values == {"o": "voluntary_transport", "f": "none", "d": FHIR_DEST, "i": incident}

            # submit while offline: the form keeps it and says so
            await browser.send("Network.enable")
            await browser.send(
                "Network.emulateNetworkConditions",
                {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
            )
            await browser.tab_to("submit")
            await browser.press("Enter")
            await browser.wait_for("document.getElementById('status').dataset.state === 'queued'")
            assert await browser.evaluate("JSON.parse(localStorage.getItem('hub.intake.outbox')).length") == 1
            assert await rt.pool.fetchval(sim_facts) == encounter_facts0  # nothing reached the hub

            # back online: the outbox is sent, once
            await browser.send(
                "Network.emulateNetworkConditions",
                {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
            )
            await browser.wait_for("document.getElementById('status').dataset.state === 'sent'", timeout=60)
            assert await browser.evaluate("JSON.parse(localStorage.getItem('hub.intake.outbox')).length") == 0
            assert await browser.evaluate("localStorage.getItem('hub.intake.draft')") is None
            referral_state = await browser.evaluate("document.getElementById('status').dataset.referral")
            assert referral_state == "requested"
            shot = await browser.screenshot(ARTIFACTS / "intake.png")
        assert shot.stat().st_size > 20_000

        # the timeline shows the form (its latency is a bench number, not asserted here)
        clin = {"Authorization": "Bearer " + clinician, "X-Purpose-Of-Use": "treatment"}

        async def on_timeline() -> list[dict[str, Any]]:
            resp = await api.get(f"/v1/incidents/{incident}/timeline", headers=clin)
            entries = resp.json().get("entries", []) if resp.status_code == 200 else []
            return [e for e in entries if e["event_type"] == "encounter.intake.recorded.v2"]

        forms = await wait_for(on_timeline, timeout=30, what="the form on the incident timeline")
        assert forms[0]["data"]["program"] == DEMO_PROGRAM and forms[0]["data"]["use_of_force"] == "none"
        # the county's fields travel in the form's fact; the sensitive one only sealed
        assert forms[0]["data"]["custom"] == {"housing": "unsheltered", "earlier_contacts": 2}
        referral_id = forms[0]["data"]["referral_ids"][0]

        # the referral goes out over FHIR and the EHR's answer comes back
        schema = rt.settings.postgres.schema_

        async def answered() -> Any:
            return await rt.pool.fetchrow(
                f"SELECT delivered_at, accepted_at, completed_at FROM {schema}.referral_funnel"
                " WHERE referral_id = $1 AND delivered_at IS NOT NULL AND completed_at IS NOT NULL",
                referral_id,
            )

        await wait_for(answered, timeout=60, what="the EHR's answer to the referral")
        assert (
            await rt.pool.fetchval(
                f"SELECT channel FROM {core}.referral_deliveries"
                " WHERE referral_id = $1 AND state = 'delivered'",
                referral_id,
            )
            == "fhir"
        )

        # the funnel and the outcome counts moved by exactly this form
        requested1, transports1 = await aggregates(api, analyst)
        assert (requested1, transports1) == (requested0 + 1, transports0 + 1)
        # every encounter fact since came from the intake, none from a simulator
        sources = await rt.pool.fetch(
            f"SELECT DISTINCT source FROM {schema}.facts WHERE family = 'encounter'"
        )
        assert {r["source"] for r in sources} == {f"intake/{DEMO_PROGRAM}"}


@pytest.mark.parametrize("path", ["/intake/", "/intake/static/intake.js", "/intake/static/intake.css"])
def test_intake_assets_have_no_external_references(api_server: ThreadedServer, path: str) -> None:
    resp = httpx.get(api_server.url + path, timeout=10)
    assert resp.status_code == 200 and "http://" not in resp.text and "https://" not in resp.text


@pytest.mark.parametrize(
    "path", ["/intake/static/intake.html", "/intake/static/../app.py", "/intake/static/x"]
)
def test_only_intake_assets_are_served(api_server: ThreadedServer, path: str) -> None:
    assert httpx.get(api_server.url + path, timeout=10).status_code == 404
