"""``hub demo``: the whole hub on a simulated county, from an empty machine to the outcome
report and the dashboard.

Steps (each one the real component, in-process, on the real Kafka and PostgreSQL):

1. ``hub infra up`` (keys, Kafka, PostgreSQL, the topic catalogue for the demo prefix);
2. a seeded county (:class:`hub.devtools.simulate.CountyModel`: a month of a mid-size county's
   CAD traffic) served as an SF-style SoQL feed and a case-management REST API, and the EHR
   simulator (FHIR R4 + HL7 v2 over MLLP, answering referrals);
3. the CAD and case pollers (``cad-soql-poller``, ``case-rest-poller``) driven until the
   feeds are drained and projected; the co-responder team's clinicians submit their
   encounter forms (with the referrals they request) to the hub's intake API —
   ``hub api serve`` started as a process for the run, each clinician with a token of
   ``hub api token`` — as a county's team does, never by appending facts;
4. the FHIR and HL7 v2 delivery workers, the MLLP listener and the FHIR Task poller, until
   every referral reached a final state and the EHR's answers stopped arriving;
5. the projections until caught up; a sealing round and ``hub verify``;
6. the outcome report (the same document as ``hub report --json``) and the dashboard URL;
   the API keeps running in the background (``var/demo/api.pid``).

Everything lives under the topic prefix and PostgreSQL schema ``demo`` (option
``--prefix``), so a demo never touches other data. Event ids are deterministic, so a second
run appends nothing new and ends with the same report. ``--reset`` (:func:`reset_demo`)
first stops the demo's background API and wipes the prefix's topics and schemas, so the
run starts from an empty log — needed when the county model or the code that stamps the
facts changed, since a fact with an existing id is taken for a duplicate. When the
prefix's PostgreSQL state belongs to another Kafka cluster (:mod:`hub.kernel.binding`; e.g. another
checkout's demo on a shared PostgreSQL) the demo resets it by itself and says so
(:func:`reset_if_foreign`); the prefix ``hub`` is never reset automatically. A failed
verification prints a red ✗ and makes ``hub demo`` exit 1.

Times: the county is a simulated past month, so the delivery workers run with
``clock: relative`` (outcomes at the referral's time plus the real delivery time) and the
EHR simulator reports its answers at the clinic's own simulated times (hours to days after
the referral); the funnel's stage times are those of a clinic, not of the demo's run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from connectors.referrals.components import MllpListenerConfig, mllp_listener
from connectors.registry import build, parse_components
from hub.bootstrap import open_runtime
from hub.devtools.ehr_sim.simulator import EhrSimulator, SimConfig
from hub.devtools.ehr_sim.store import Lifecycle
from hub.devtools.infra.proc import owned_pid, port_is_free, wait_until_dead
from hub.devtools.infra.stack import bring_up
from hub.devtools.simulate.feeds import INTAKE_DESTINATIONS, encounter_forms, soql_row
from hub.devtools.simulate.geo import write_demo_areas
from hub.devtools.simulate.model import CountyModel
from hub.devtools.simulate.servers import FeedState, cad_feed_app, cases_app, serve
from hub.kernel.binding import Action, inspect
from hub.kernel.db import open_pool
from hub.kernel.namespace import Namespace
from hub.kernel.seal import Sealer
from hub.kernel.settings import AreaMapSettings, AreaSettings, Settings
from hub.kernel.topics import ensure_topics
from hub.kernel.verify import run_verify
from hub.kernel.vocabulary import vocabulary_names
from projections import queries
from projections.projector import project
from projections.reporting import HEADLINE_LABELS as LABELS
from projections.reporting import cell_text as _cell_text

DEMO_PROGRAM = "county-coresponder"  # hub.devtools.simulate.model.PROGRAM: the clinicians' program
FINAL_DELIVERY_STATES = ("delivered", "rejected", "failed", "held")
FHIR_DEST, HL7_DEST = "county-mh-clinic", "riverside-bh"  # hub.devtools.simulate.model.DESTINATIONS
REQUESTER = "county-coresponder"
#: how many forms the simulated team has in flight at once
SUBMIT_CONCURRENCY = 8


@dataclass(frozen=True)
class DemoOptions:
    """What the demo simulates. Same options, same county, same report."""

    seed: int = 7
    days: int = 30
    start: date = date(2024, 3, 1)
    calls_per_day: int = 400
    prefix: str = "demo"
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    serve_api: bool = True
    settle_seconds: float = 1.0
    timeout_seconds: float = 600.0
    reset: bool = False  # wipe the prefix's topics and schemas first (see reset_demo)


#: the demo county's vocabulary (its codes; see the file)
COUNTY_VOCABULARY = Path(__file__).resolve().parent / "vocabularies" / "county.yaml"


def demo_vocabularies() -> list[str]:
    """What the demo's projections apply: every bundled vocabulary and the county's."""
    return [*vocabulary_names(), str(COUNTY_VOCABULARY)]


def with_county_vocabulary(settings: Settings) -> Settings:
    """``settings`` whose projections apply the demo county's vocabulary too (pure; the county's
    CAD facts name it, so a projector without it would classify them by the fallback)."""
    return settings.model_copy(
        update={"projections": settings.projections.model_copy(update={"vocabularies": demo_vocabularies()})}
    )


def demo_settings(base: Settings, prefix: str) -> Settings:
    """``base`` in the demo's own namespace: topic prefix and read-model schema ``prefix``,
    the county's vocabulary applied and its map and population table (pure)."""
    return with_demo_areas(with_county_vocabulary(Namespace(prefix, prefix).apply(base)))


def demo_areas_dir(settings: Settings) -> Path:
    return settings.state_dir / settings.kafka.topic_prefix / "areas"


def with_demo_areas(settings: Settings) -> Settings:
    """``settings`` with the simulated county's map of its districts and its population table
    (files :func:`hub.devtools.simulate.geo.write_demo_areas` writes under
    ``var/<prefix>/areas``), unless areas are configured already (pure)."""
    if settings.areas.maps or settings.areas.population is not None:
        return settings
    d = demo_areas_dir(settings)
    areas = AreaSettings(
        population=d / "population.yaml",
        maps=[AreaMapSettings(grain="district", geojson=d / "districts.geojson", id_property="district",
                              name_property="name")],
    )
    return settings.model_copy(update={"areas": areas})


def demo_env(settings: Settings) -> dict[str, str]:
    """Environment variables that point a ``hub`` command at the demo's data (pure)."""
    env = {
        "HUB_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "HUB_POSTGRES__SCHEMA": settings.postgres.schema_,
        "HUB_PROJECTIONS__VOCABULARIES": json.dumps(settings.projections.vocabularies),
    }
    if settings.areas.maps:
        env["HUB_AREAS__MAPS"] = json.dumps([m.model_dump(mode="json") for m in settings.areas.maps])
    if settings.areas.population is not None:
        env["HUB_AREAS__POPULATION"] = str(settings.areas.population)
    return env


def intake_env() -> dict[str, str]:
    """Environment variables that configure the API's encounter intake for the simulated
    county: its EHR destinations and identifier issuer (pure)."""
    destinations = {name: d.model_dump() for name, d in INTAKE_DESTINATIONS.items()}
    return {
        "HUB_INTAKE__DESTINATIONS": json.dumps(destinations, sort_keys=True),
        "HUB_INTAKE__PERSON_SYSTEMS": json.dumps(["mpi:county"]),
    }


def shell_env_prefix(settings: Settings) -> str:
    return " ".join(f"{k}={shlex.quote(v)}" for k, v in demo_env(settings).items())


# The demo county's overrides of the bundled ``san_francisco`` profile, as an operator
# would write them: its own agency id, and its vocabulary (SF codes plus its local code for
# a voluntary mental-health transport). Areas stay as the feed publishes them — police
# districts — and the report groups by district accordingly.
CAD_OVERRIDES: dict[str, Any] = {"agency": "COUNTY", "vocabulary": str(COUNTY_VOCABULARY)}


def component_configs(
    cad_url: str,
    cases_url: str,
    *,
    fhir_base: str,
    token_url: str,
    mllp_port: int,
    overrides: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The demo county's connector configuration, as an operator would write it in the
    ``components`` list of ``hub connectors run --config`` (pure)."""
    auth = {
        "type": "client_credentials",
        "token_url": token_url,
        "client_id": "cohub",
        "client_secret": "sim-secret",
    }
    return [
        {
            "kind": "cad-soql-poller",
            "name": "county-cad",
            "url": cad_url,
            "profile": "san_francisco",
            "page_size": 1000,
            "interval": 0.5,
            # this county publishes SF-style rows (police districts, no precincts)
            "overrides": CAD_OVERRIDES if overrides is None else overrides,
        },
        {
            "kind": "case-rest-poller",
            "name": "county-cases",
            "url": cases_url,
            "page_size": 1000,
            "interval": 0.5,
            "namespace": "mpi:county",
            "agency": "COUNTY",
        },
        {
            "kind": "fhir-delivery",
            "name": "fhir-delivery",
            "poll_interval_s": 0.2,
            # the county's referrals are a simulated past month: stamp outcomes in it
            "clock": "relative",
            "requesters": {REQUESTER: "County co-responder team"},
            "retry": {"max_attempts": 8, "base_delay_s": 0.05, "max_delay_s": 1.0},
            "destinations": {
                FHIR_DEST: {
                    "display": "County Mental Health Clinic",
                    "base_url": fhir_base,
                    "auth": auth,
                    "timeout_s": 2.0,
                }
            },
        },
        {
            "kind": "hl7-delivery",
            "name": "hl7-delivery",
            "poll_interval_s": 0.2,
            "clock": "relative",
            "requesters": {REQUESTER: "County co-responder team"},
            "retry": {"max_attempts": 8, "base_delay_s": 0.05, "max_delay_s": 1.0},
            "destinations": {
                HL7_DEST: {
                    "display": "Riverside Behavioral Health",
                    "host": "127.0.0.1",
                    "port": mllp_port,
                    "read_timeout_s": 2.0,
                }
            },
        },
        {
            "kind": "fhir-task-poller",
            "name": "fhir-task-poller",
            "interval_s": 0.5,
            "destinations": {FHIR_DEST: {"base_url": fhir_base, "auth": auth}},
        },
    ]


@dataclass
class DemoResult:
    settings: Settings
    report: dict[str, Any]
    ingest: dict[str, dict[str, int]] = field(default_factory=dict)
    referrals: dict[str, int] = field(default_factory=dict)
    verify_ok: bool | None = None
    api_url: str | None = None
    seconds: float = 0.0


async def _wait_stable(
    sample: Callable[[], Awaitable[int]],
    done: Callable[[int], bool],
    on_value: Callable[[int], None],
    *,
    settle: float,
    timeout: float,
    what: str,
    stall: float | None = None,
) -> int:
    """Poll ``sample`` until ``done(value)`` and the value stayed the same for ``settle`` s
    (or, with ``stall``, until it stopped changing for that long even if not done)."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while True:
        value = await sample()
        on_value(value)
        quiet = time.monotonic() - since
        if value != last:
            last, since = value, time.monotonic()
        elif (done(value) and quiet >= settle) or (stall is not None and quiet >= stall):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"demo: timed out waiting for {what} (at {value})")
        await asyncio.sleep(0.25)


@contextlib.asynccontextmanager
async def _started(components: list[Any]) -> AsyncIterator[None]:
    started = []
    try:
        for c in components:
            await c.start()
            started.append(c)
        yield
    finally:
        for c in reversed(started):
            with contextlib.suppress(Exception):
                await c.stop()


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<30}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=console,
    )


def _sum_counts(total: dict[str, int], counts: Any) -> None:
    for key, value in counts.as_dict().items():
        if isinstance(value, int):
            total[key] = total.get(key, 0) + value


@dataclass
class _Steps:
    """The demo's steps over one started runtime; each updates ``result`` and the bars."""

    rt: Any  # hub.kernel.runtime.Runtime
    opts: DemoOptions
    progress: Progress
    result: DemoResult

    @property
    def core(self) -> str:
        return self.rt.settings.core_schema

    async def drain(self, component: Any, name: str, total: int) -> None:
        """Poll one pull connector until its source has nothing more."""
        task = self.progress.add_task(f"ingest {name}", total=total, note="")
        counts: dict[str, int] = {}
        more = True
        while more:
            batch, more = await component.runner.poll_once()
            _sum_counts(counts, batch)
            self.progress.update(
                task,
                completed=min(total, counts.get("read", 0)) if more else total,
                note=f"+{counts.get('events_appended', 0):,} events, "
                f"{counts.get('dead_lettered', 0):,} dead-lettered",
            )
        await component.runner.source.close()
        self.result.ingest[name] = counts

    async def submit(self, api_url: str, forms: list[tuple[str, dict[str, Any]]], name: str) -> None:
        """Submit the team's forms to the intake API, each with its clinician's token, a few
        at a time; a refused form stops the demo with the API's answer."""
        task = self.progress.add_task(f"submit {name} forms", total=len(forms), note="")
        clinicians = sorted({c for c, _ in forms})
        minted = await asyncio.gather(*(mint_token(self.rt.settings, c) for c in clinicians))
        tokens = dict(zip(clinicians, minted, strict=True))
        counts = {"read": len(forms), "events_appended": 0, "events_duplicate": 0}
        gate = asyncio.Semaphore(SUBMIT_CONCURRENCY)

        async def one(client: httpx.AsyncClient, clinician: str, body: dict[str, Any]) -> None:
            async with gate:
                auth = {"Authorization": "Bearer " + tokens[clinician]}
                resp = await client.post("/v1/intake/encounters", json=body, headers=auth)
            if resp.status_code not in (200, 201):
                raise RuntimeError(f"the intake refused a form: HTTP {resp.status_code} {resp.text[:300]}")
            receipt = resp.json()
            counts["events_appended"] += receipt["events_appended"]
            counts["events_duplicate"] += receipt["duplicate"]
            self.progress.update(
                task,
                advance=1,
                note=f"{counts['events_appended']:,} new events, "
                f"{counts['events_duplicate']:,} duplicate forms",
            )

        async with httpx.AsyncClient(base_url=api_url, timeout=60.0) as client:
            await asyncio.gather(*(one(client, c, b) for c, b in forms))
        self.result.ingest[name] = counts

    async def count_deliveries(self) -> int:
        return await self.rt.pool.fetchval(
            f'SELECT count(*) FROM "{self.core}".referral_deliveries WHERE state = ANY($1::text[])',
            list(FINAL_DELIVERY_STATES),
        )

    async def count_closed(self) -> int:
        """Delivered referrals the EHR has closed (completed or declined): the last answer
        each delivered referral gets from the simulated EHR."""
        return await self.rt.pool.fetchval(
            f'SELECT count(*) FROM "{self.core}".indexed_events WHERE event_type = ANY($1::text[])',
            ["referral.completed.v1", "referral.declined.v1", "referral.cancelled.v1"],
        )

    async def delivered(self) -> int:
        return await self.rt.pool.fetchval(
            f"SELECT count(*) FROM \"{self.core}\".referral_deliveries WHERE state = 'delivered'"
        )

    async def deliver(self, workers: list[Any], referrals: int) -> None:
        """Run the delivery workers until every referral is final (delivered, rejected,
        failed, or held for consent) and the EHR closed every delivered one."""
        sent = self.progress.add_task("deliver referrals", total=referrals, note="")
        async with _started(workers):
            await _wait_stable(
                self.count_deliveries,
                lambda v: v >= referrals,
                lambda v: self.progress.update(sent, completed=v),
                settle=0.5,
                timeout=self.opts.timeout_seconds,
                what="referral deliveries",
            )
            delivered = await self.delivered()
            closed = self.progress.add_task("EHR answers", total=delivered, note="completed or declined")
            await _wait_stable(
                self.count_closed,
                lambda v: v >= delivered,
                lambda v: self.progress.update(closed, completed=v),
                settle=self.opts.settle_seconds,
                timeout=self.opts.timeout_seconds,
                what="the EHR's answers",
                stall=15.0,  # an answer the EHR never sends must not hang the demo
            )
        rows = await self.rt.pool.fetch(
            f'SELECT state, count(*) AS n FROM "{self.core}".referral_deliveries GROUP BY state'
        )
        self.result.referrals = {r["state"]: r["n"] for r in rows}

    async def project(self, label: str = "project read models") -> None:
        """The projections until caught up; the bar is the lag going to zero."""
        settings = self.rt.settings
        lag0 = max(1, (await queries.projection_lag(self.rt.pool, settings))["total"])
        task = self.progress.add_task(label, total=lag0, note="")
        running = asyncio.create_task(project(self.rt, until_caught_up=True))
        while not running.done():
            lag = (await queries.projection_lag(self.rt.pool, settings))["total"]
            self.progress.update(task, completed=lag0 - min(lag, lag0), note=f"lag {lag:,} records")
            await asyncio.wait({running}, timeout=0.5)
        await running
        self.progress.update(task, completed=lag0, note="lag 0")


def check_resettable(settings: Settings) -> None:
    """Raise ValueError unless the settings name a demo prefix (never the default ``hub``)."""
    if settings.kafka.topic_prefix == "hub" or settings.postgres.schema_ == "hub":
        raise ValueError("reset_demo refuses the default prefix 'hub'")


async def reset_demo(settings: Settings) -> dict[str, list[str]]:
    """Delete the demo prefix's topics and drop its PostgreSQL schemas (read models and
    the log's core state), so the next ``hub demo`` starts from an empty log. Needed after
    the county model changed: event ids are deterministic (source, record, revision),
    so a changed call with the same CAD number would be taken for a duplicate. Refuses
    the default ``hub`` prefix. Returns what was removed."""
    check_resettable(settings)
    return await Namespace.of(settings).teardown(settings)


async def reset_if_foreign(settings: Settings) -> str | None:
    """Reset the demo prefix when its PostgreSQL state belongs to another Kafka cluster
    (:mod:`hub.kernel.binding`: e.g. another checkout's demo on a shared PostgreSQL); returns the
    one line saying so, or None when nothing was reset. The demo's data is disposable and
    reproducible; the default prefix ``hub`` is never reset (Runtime.open refuses it with
    the explanation instead)."""

    try:
        check_resettable(settings)
    except ValueError:
        return None
    async with open_pool(settings, max_size=1) as pool:
        decision = await inspect(pool, settings)
    if decision.action is not Action.REFUSE:
        return None
    await asyncio.to_thread(stop_api, settings)  # it reads the schemas about to be dropped
    removed = await reset_demo(settings)
    topics = await ensure_topics(settings)
    if not topics.ok:
        raise RuntimeError(f"topic catalogue for prefix {settings.kafka.topic_prefix}: {topics.errors}")
    return (
        f"the demo's state in schema {settings.core_schema} belonged to another Kafka cluster "
        f"({decision.recorded or 'unbound'}, this one is {decision.actual}): reset the prefix "
        f"{settings.kafka.topic_prefix!r} ({len(removed['topics'])} topics, schemas "
        f"{', '.join(removed['schemas'])}) and starting from an empty log"
    )


async def run_pipeline(settings: Settings, opts: DemoOptions, console: Console) -> DemoResult:
    """Steps 1 to 5 of the module docstring; returns the report and the counts."""

    settings = with_demo_areas(with_county_vocabulary(settings))
    if settings.areas.population is not None and settings.areas.population.parent == demo_areas_dir(settings):
        write_demo_areas(demo_areas_dir(settings))  # the simulated county's own map and population
    started = time.monotonic()
    result = DemoResult(settings, {})
    with console.status("bringing up Kafka and PostgreSQL (hub infra up)…"):
        _kafka, _postgres, topics = await bring_up(settings)
    if not topics.ok:
        raise RuntimeError(f"topic catalogue for prefix {settings.kafka.topic_prefix}: {topics.errors}")
    if not opts.reset:
        note = await reset_if_foreign(settings)
        if note:
            console.print(f"[yellow]![/] {note}")
    if opts.reset:
        with console.status(f"resetting the demo prefix {settings.kafka.topic_prefix!r}…"):
            removed = await reset_demo(settings)
            topics = await ensure_topics(settings)
        if not topics.ok:
            raise RuntimeError(f"topic catalogue for prefix {settings.kafka.topic_prefix}: {topics.errors}")
        console.print(
            f"[green]✓[/] reset: {len(removed['topics'])} topics deleted and recreated, schemas "
            f"{', '.join(removed['schemas'])} dropped"
        )
    console.print(
        f"[green]✓[/] Kafka {settings.kafka.bootstrap} and PostgreSQL up; topics under prefix "
        f"[bold]{settings.kafka.topic_prefix}[/], read models in schema [bold]{settings.postgres.schema_}[/]"
    )
    county = CountyModel(opts.seed, opts.days, opts.start, calls_per_day=opts.calls_per_day).generate()
    console.print(
        f"[green]✓[/] simulated county (seed {opts.seed}): {len(county.calls):,} CAD calls over "
        f"{opts.days} days from {opts.start}, {sum(c.behavioral_health for c in county.calls):,} "
        f"behavioral-health, {len(county.referrals):,} referrals, {len(county.case_records):,} case records"
    )
    cad_state, case_state = FeedState(), FeedState()
    for call in county.calls:
        cad_state.publish(call.cad_number, soql_row(call.latest(), county.timezone))
    for rec in county.case_records:
        case_state.publish(str(rec["record_id"]), rec)

    async with open_runtime(settings) as rt, contextlib.AsyncExitStack() as stack:
        cad_server, cad_port = await serve(cad_feed_app(cad_state), 0)
        stack.push_async_callback(cad_server.cleanup)
        case_server, case_port = await serve(cases_app(case_state), 0)
        stack.push_async_callback(case_server.cleanup)
        listener = mllp_listener(rt, MllpListenerConfig(name="mllp", port=0))
        await listener.start()
        stack.push_async_callback(listener.stop)
        sim = EhrSimulator(
            SimConfig(
                answer_to=("127.0.0.1", listener.port),
                require_auth=True,
                seed=opts.seed,
                lifecycle=Lifecycle(
                    accept_after_s=0.5, progress_after_s=1.0, complete_after_s=1.5, decline_rate=0.1
                ),
            )
        )
        await sim.start()
        stack.push_async_callback(sim.stop)
        written = component_configs(
            f"http://127.0.0.1:{cad_port}/resource/calls.json",
            f"http://127.0.0.1:{case_port}/api/v1/case-records",
            fhir_base=sim.fhir_base_url,
            token_url=sim.token_url,
            mllp_port=sim.mllp_port,
        )
        configs = {c.name: c for c in parse_components(written, "hub demo")}

        def component(name: str) -> Any:
            (built,) = build(rt, [configs[name]])
            return built

        progress = _progress(console)
        steps = _Steps(rt, opts, progress, result)
        with progress:
            await steps.drain(component("county-cad"), "county-cad", len(cad_state.rows))
            await steps.drain(component("county-cases"), "county-cases", len(case_state.rows))
            await steps.project("project the imported calls")  # forms link to imported incidents
            forms = encounter_forms(county)
            async with intake_api(settings) as api_url:
                await steps.submit(api_url, forms, "coresponder-app")
            referrals = sum(1 for _, body in forms if body["referral"] is not None)
            await steps.deliver(
                [component(n) for n in ("fhir-delivery", "hl7-delivery", "fhir-task-poller")], referrals
            )
            await steps.project()
        with console.status("sealing the log and verifying it (hub seal, hub verify)…"):
            await Sealer(settings, rt.pool, rt.kafka).run_once()
            verified = await run_verify(settings, rt.pool, rt.kafka)
        result.verify_ok = verified.ok
        mark = "[green]✓[/] verify: OK" if verified.ok else "[red]✗ verify: BROKEN[/]"
        console.print(f"{mark}; {verified.records:,} records")
        reader = queries.ReadModelReader.from_settings(rt.pool, settings)
        result.report = queries.jsonable(await reader.report())
    result.seconds = time.monotonic() - started
    return result


# --- the terminal report -------------------------------------------------------------------

BENCHMARKS = {
    "no_enforcement": "ABQ COAST 40%",
    "voluntary_transport": "ABQ COAST 33%",
    "enforcement": "ABQ COAST 3%",
    "repeat_three_plus_enrolled": "Colorado 68.8%",
}


def report_table(report: dict[str, Any]) -> Table:
    """The headline of the report document as a rich table (pure)."""

    span = f"{report.get('from') or 'first call'} .. {report.get('to') or 'latest call'}"
    table = Table(title=f"Outcome report — behavioral-health calls, {span} (cells of 1-10 suppressed)")
    table.add_column("metric")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    table.add_column("published benchmark", style="dim")
    for name, cell in report["headline"].items():
        value, share = _cell_text(cell)
        table.add_row(LABELS.get(name, name), value, share, BENCHMARKS.get(name, ""))
    funnel = report["referral_funnel"]
    for stage in ("requested", "delivered", "accepted", "completed"):
        value, share = _cell_text(funnel[stage])
        table.add_row(f"referrals {stage}", value, share, "")
    return table


# --- the API in the background -------------------------------------------------------------


def api_pid_file(settings: Settings) -> Path:
    return settings.state_dir / settings.kafka.topic_prefix / "api.pid"


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _spawn_api(settings: Settings, host: str, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """``hub api serve`` on the demo's data with the simulated county's intake, detached,
    its output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    env = {**os.environ, **demo_env(settings), **intake_env()}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hub.entry.cli",
            "api",
            "serve",
            "--host",
            host,
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    log.close()
    return proc


def _await_healthy(proc: subprocess.Popen[bytes], url: str, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not _healthy(url):
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited with {proc.returncode}; see {log_path}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the API did not answer on {url}")
        time.sleep(0.2)


def ensure_api(settings: Settings, host: str, port: int, timeout: float = 30.0) -> str:
    """Start ``hub api serve`` for the demo's data in the background (detached, logs under
    ``var/<prefix>/api.log``) unless the demo's API already runs; returns its base URL."""

    pid_file = api_pid_file(settings)
    marker = "hub.entry.cli"
    url = f"http://{host}:{port}"
    pid = owned_pid(pid_file, marker)
    if pid is not None:
        if _healthy(url):
            return url
        os.kill(pid, signal.SIGTERM)  # ours, but not answering: restart it
        wait_until_dead(pid, 10)
    if not port_is_free(host, port):
        raise RuntimeError(f"port {port} is taken by another program; run `hub demo --api-port N`")
    proc = _spawn_api(settings, host, port, pid_file.with_name("api.log"))
    pid_file.write_text(str(proc.pid))
    _await_healthy(proc, url, pid_file.with_name("api.log"), timeout)
    return url


@contextlib.asynccontextmanager
async def intake_api(settings: Settings, timeout: float = 60.0) -> AsyncIterator[str]:
    """The API the simulated team submits its forms to, for the length of the block: its
    own ``hub api serve`` process on a free loopback port (logs in
    ``var/<prefix>/intake-api.log``), stopped afterwards; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = settings.state_dir / settings.kafka.topic_prefix / "intake-api.log"
    proc = _spawn_api(settings, "127.0.0.1", port, log_path)
    try:
        await asyncio.to_thread(_await_healthy, proc, f"http://127.0.0.1:{port}", log_path, timeout)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)


async def mint_token(settings: Settings, clinician: str, ttl: int = 3600) -> str:
    """A development token for one of the simulated team's clinicians, from ``hub api
    token`` (the demo never imports the API)."""
    args = ["api", "token", "--role", "clinician", "--sub", clinician, "--program", DEMO_PROGRAM]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub.entry.cli",
        *args,
        "--ttl",
        str(ttl),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **demo_env(settings)},
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"hub api token failed: {err.decode(errors='replace')[-300:]}")
    return out.decode().strip()


def stop_api(settings: Settings, timeout: float = 10.0) -> int | None:
    """Stop the demo's background API (only the process its pid file names, and only if its
    command line is ours); returns the pid stopped, or None when none was running."""

    pid = owned_pid(api_pid_file(settings), "hub.entry.cli")
    if pid is None:
        return None
    os.kill(pid, signal.SIGTERM)
    if not wait_until_dead(pid, timeout):
        raise TimeoutError(f"the demo API (pid {pid}) did not stop within {timeout:.0f}s")
    return pid


def run(base: Settings, opts: DemoOptions, console: Console | None = None) -> DemoResult:
    """The whole demo (the body of ``hub demo``)."""
    console = console or Console()
    settings = demo_settings(base, opts.prefix)
    if opts.reset:  # the API reads the schemas about to be dropped: restart it afterwards
        check_resettable(settings)
        stopped = stop_api(settings)
        if stopped is not None:
            console.print(f"[green]✓[/] stopped the demo API (pid {stopped}) before the reset")
    result = asyncio.run(run_pipeline(settings, opts, console))
    console.print()
    console.print(report_table(result.report))
    ing = result.ingest
    console.print(
        "ingested: "
        + "; ".join(
            f"{k}: {v.get('read', 0):,} read, {v.get('events_appended', 0):,} new events, "
            f"{v.get('events_duplicate', 0):,} duplicate, {v.get('dead_lettered', 0):,} "
            "dead-lettered"
            for k, v in ing.items()
        )
    )
    console.print(
        "referral deliveries: " + ", ".join(f"{k} {v:,}" for k, v in sorted(result.referrals.items()))
    )
    env = shell_env_prefix(settings)
    console.print(f"same numbers: [bold]{env} hub report --json[/]")
    if opts.serve_api:
        result.api_url = ensure_api(settings, opts.api_host, opts.api_port)
        console.print(
            f"dashboard: [bold]{result.api_url}/dashboard/[/] (API running in the background, "
            f"pid file {api_pid_file(settings)}; stop it with `kill $(cat {api_pid_file(settings)})`)"
        )
    else:
        console.print(
            f"dashboard: start the API with [bold]{env} hub api serve[/] and open "
            f"http://{opts.api_host}:{opts.api_port}/dashboard/"
        )
    console.print(
        f"person-level reads: [bold]hub api token --role clinician --sub alice --program {DEMO_PROGRAM}[/] "
        "and send it as `Authorization: Bearer …` with `X-Purpose-Of-Use: treatment` (see docs/api.md)"
    )
    console.print(f"demo finished in {result.seconds:.0f}s")
    return result
