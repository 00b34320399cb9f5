"""Inbound components end to end on the real Kafka broker and PostgreSQL: the case REST
poller, the signed case webhook, the CSV file drop, and CSV re-exports that revise rows."""

from __future__ import annotations

import collections
import csv
import io
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from connectors.cad.ingest import ingest_files
from connectors.cad.profile import load_profile
from connectors.cases.mapping import CaseMapper
from connectors.cases.webhook import signed_headers
from connectors.components import (
    CadFileDropConfig,
    CaseRestPollerConfig,
    CaseWebhookConfig,
    cad_file_drop,
    case_rest_poller,
    case_webhook,
)
from connectors.core.records import Mapped, RawRecord
from connectors.core.state import PostgresCursorStore, PostgresRevisionStore
from hub.devtools.simulate.model import CountyModel
from hub.devtools.simulate.servers import FeedState, cases_app, serve
from hub.kernel import metrics
from hub.kernel.keys import secret_bytes
from hub.kernel.runtime import Runtime
from hub.kernel.settings import PROJECT_ROOT
from schemas.topics import fact_topic
from tests.integration.waiting import wait_for

SEATTLE = PROJECT_ROOT / "tests" / "data" / "cad" / "seattle" / "call-data-sample.csv"


async def facts(rt: Runtime, family: str, source: str) -> list[Any]:  # type: ignore[type-arg]
    """Every envelope of ``source`` in one fact topic, read back from Kafka."""
    out = []
    async for ev in rt.log.read([fact_topic(rt.settings.kafka.topic_prefix, family)]):
        if ev.envelope.source == source:
            out.append(ev.envelope)
    return out


async def indexed(rt: Runtime, ids: list[str]) -> int:
    sql = f"SELECT count(*) FROM {rt.settings.core_schema}.indexed_events WHERE event_id = ANY($1::text[])"
    return int(await rt.pool.fetchval(sql, ids))


# ---------------------------------------------------------------- case REST poller


async def test_case_rest_poller_cursor_survives_restart_and_repoll_appends_nothing(rt) -> None:  # type: ignore[no-untyped-def]
    county = CountyModel(seed=21, days=3, calls_per_day=150, malformed_share=0).generate()
    records = county.case_records
    assert len(records) > 20
    half = len(records) // 2
    state = FeedState()
    for r in records[:half]:
        state.publish(str(r["record_id"]), r)
    server, port = await serve(cases_app(state))
    name = "it-cases"
    source = f"cases/{name}"
    cfg = CaseRestPollerConfig(
        name=name, url=f"http://127.0.0.1:{port}/api/v1/case-records", page_size=7, interval=0.05,
        agency="SIMC",
    )
    cursors = PostgresCursorStore(rt.pool, rt.settings.core_schema)

    async def caught_up() -> bool:
        cur = await cursors.load(name)
        if not cur:
            return False
        newest = max(str(r["updated_at"]) for r in state.rows.values())
        same = sum(1 for r in state.rows.values() if str(r["updated_at"]) == newest)
        return bool(cur["t"] == newest and cur["skip"] >= same)

    try:
        first = case_rest_poller(rt, cfg)
        await first.start()
        try:
            await wait_for(caught_up, what="first half polled")
        finally:
            await first.stop()
        assert first.runner.totals.balanced() and first.runner.totals.dead_lettered == 0
        assert first.runner.totals.events_appended == half
        saved = await cursors.load(name)
        # every request asked by updated_since, from the epoch forward
        assert state.requests[0]["updated_since"].startswith("1970-01-01")
        assert all("updated_since" in q for q in state.requests)

        # restart with nothing new: it resumes at the saved cursor and appends nothing
        asked_before = len(state.requests)
        second = case_rest_poller(rt, cfg)
        await second.start()
        try:
            await wait_for(lambda: _true(second.runner.polls >= 3), what="idle re-polls")
            resumed = state.requests[asked_before]
            assert (resumed["updated_since"], int(resumed["offset"])) == (saved["t"], saved["skip"])
            assert second.runner.totals.events_appended == 0 and second.runner.totals.appended == 0
            # the rest of the records arrive while it runs
            for r in records[half:]:
                state.publish(str(r["record_id"]), r)
            await wait_for(caught_up, what="second half polled")
        finally:
            await second.stop()
        assert second.runner.totals.events_appended == len(records) - half

        # losing the cursor altogether re-reads everything and still appends nothing
        await rt.pool.execute(
            f"DELETE FROM {rt.settings.core_schema}.connector_cursors WHERE source = $1", name
        )
        third = case_rest_poller(rt, cfg)
        await third.start()
        try:
            await wait_for(caught_up, what="full re-poll")
        finally:
            await third.stop()
        assert third.runner.totals.read >= len(records)
        assert third.runner.totals.events_appended == 0 and third.runner.totals.appended == 0
    finally:
        await server.cleanup()

    events = await facts(rt, "case", source)
    assert len(events) == len(records) and len({e.id for e in events}) == len(records)
    kinds = collections.Counter(e.type for e in events)
    type_of = {
        "case_opened": "case.opened.v2",
        "contact_logged": "case.contact.logged.v2",
        "service_enrolled": "case.service.enrolled.v1",
        "case_closed": "case.closed.v1",
    }
    expected_kinds = collections.Counter(type_of[str(r["record_type"])] for r in records)
    assert kinds == expected_kinds and kinds["case.opened.v2"] > 0 and kinds["case.contact.logged.v2"] > 0
    linked = [e for e in events if e.data.get("incident_id")]
    assert linked and all(e.data["incident_id"].startswith("SIMC:") for e in linked)
    assert not any("MPI-" in e.model_dump_json() for e in events)  # pseudonyms only
    # lag: the age of the newest case record time, kept with the cursor
    newest = max(datetime.fromisoformat(str(r["occurred_at"])) for r in records)
    lag = metrics.SOURCE_LAG.labels(name)._value.get()
    assert abs(lag - (datetime.now(UTC) - newest).total_seconds()) < 120
    assert await cursors.newest(name) == newest


async def _true(value: bool) -> bool:
    return value


# ---------------------------------------------------------------- signed webhook

CASE = {
    "record_id": "hook-1",
    "record_type": "case_opened",
    "case_id": "case-hook",
    "person": {"system": "mpi:county", "id": "MPI-7654321"},
    "occurred_at": "2024-03-02T10:00:00+00:00",
    "version": 1,
    "program": "county-coresponder",
    "cad_incident_number": "240610001",
}


async def test_signed_webhook_end_to_end_with_the_real_log(rt) -> None:  # type: ignore[no-untyped-def]
    name = "it-hook"
    source = f"cases/{name}"
    records = [
        CASE,
        {**CASE, "record_id": "hook-2", "record_type": "contact_logged", "note": "talked about housing"},
    ]
    body = json.dumps({"records": records}).encode()
    mapper = CaseMapper(source, rt.pseudonym_key, None, default_agency="SIMW")
    expected: list[str] = []
    for rec in records:
        result = mapper.map(RawRecord("x", b"", rec))
        assert isinstance(result, Mapped)
        expected += [e.id for e in result.events]

    comp = case_webhook(rt, CaseWebhookConfig(name=name, port=0, agency="SIMW"))
    await comp.start()
    key = secret_bytes(rt.settings, "webhook.key")
    url = f"http://127.0.0.1:{comp.port}/webhooks/cases"
    try:
        async with aiohttp.ClientSession() as http:

            async def post(data: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
                async with http.post(url, data=data, headers=headers) as resp:
                    return resp.status, await resp.json()

            bad = dict(signed_headers(key, "dlv-1", body))
            bad["X-Hub-Signature"] = "sha256=" + "0" * 64
            refused = [
                await post(body, bad),
                await post(body, signed_headers(b"k" * 32, "dlv-1", body)),  # wrong key
                await post(body, {"Content-Type": "application/json"}),  # unsigned
                await post(body, signed_headers(key, "dlv-1", body, now=time.time() - 3600)),  # stale
            ]
            assert [s for s, _ in refused] == [401, 401, 401, 401]
            assert await indexed(rt, expected) == 0  # nothing appended

            status, ok = await post(body, signed_headers(key, "dlv-1", body))
            assert status == 202 and ok["appended"] == 2 and sorted(ok["event_ids"]) == sorted(expected)
            # the sender lost the 202 and retries the same delivery: idempotent success
            status, retry = await post(body, signed_headers(key, "dlv-1", body))
            assert status == 200 and retry["duplicate"] is True and retry["appended"] == 0
            # a different body under an accepted delivery id is refused
            other = json.dumps({"records": [{**CASE, "record_id": "hook-3"}]}).encode()
            status, _ = await post(other, signed_headers(key, "dlv-1", other))
            assert status == 409
    finally:
        await comp.stop()

    events = await facts(rt, "case", source)
    assert sorted(e.id for e in events) == sorted(expected)  # each appended exactly once
    assert "housing" not in json.dumps([e.model_dump(mode="json") for e in events])  # note sealed
    row = await rt.pool.fetchrow(
        f"""SELECT events, body_sha256 FROM {rt.settings.core_schema}.webhook_deliveries
            WHERE receiver = $1 AND delivery_id = 'dlv-1'""",
        name,
    )
    assert row["events"] == 2 and len(row["body_sha256"]) == 64


# ---------------------------------------------------------------- CSV file drop


def seattle_rows(n: int) -> tuple[list[str], list[list[str]]]:
    with open(SEATTLE, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        return header, [row for _, row in zip(range(n), reader, strict=False)]


def csv_bytes(header: list[str], rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode()


def drop(directory: Path, name: str, data: bytes) -> None:
    """Write then rename, as a CAD export job should (the watcher never sees half a file)."""
    tmp = directory / (name + ".part")
    tmp.write_bytes(data)
    tmp.rename(directory / name)


async def test_csv_file_drop_ingests_once_dead_letters_bad_rows_and_sees_revisions(rt, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name, source = "it-drop", "cad/it-drop"
    folder = tmp_path / "drop"
    folder.mkdir()
    header, rows = seattle_rows(6)
    bad_time = list(rows[0])
    bad_time[header.index("CAD Event Number")] = "BAD-TIME-1"
    bad_time[header.index("Original Time Queued")] = "31/31/2023 99:99:99 XM"
    short = rows[1][:4]
    comp = cad_file_drop(
        rt,
        CadFileDropConfig(
            name=name,
            directory=folder,
            profile="seattle",
            source=source,
            overrides={"agency": "SIMD"},
            interval=0.05,
            settle=0,
        ),
    )
    cursors = PostgresCursorStore(rt.pool, rt.settings.core_schema)

    async def done(file: str) -> bool:
        cur = await cursors.load(name)
        return bool(cur and file in cur.get("done", {}))

    await comp.start()
    try:
        drop(folder, "calls-1.csv", csv_bytes(header, [*rows, bad_time, short]))
        await wait_for(lambda: done("calls-1.csv"), what="calls-1.csv ingested")
        polls = comp.runner.polls
        await wait_for(lambda: _true(comp.runner.polls >= polls + 3), what="idle polls")
        totals = comp.runner.totals
        assert (totals.read, totals.appended, totals.dead_lettered, totals.duplicates) == (8, 6, 2, 0)

        # a re-export: same calls, one revised disposition, no updated-at column
        revised = [list(r) for r in rows]
        revised[2][header.index("Event Clearance Description")] = "PHYSICAL ARREST MADE"
        drop(folder, "calls-2.csv", csv_bytes(header, revised))
        await wait_for(lambda: done("calls-2.csv"), what="calls-2.csv ingested")
    finally:
        await comp.stop()
    totals = comp.runner.totals
    assert (totals.read, totals.appended, totals.duplicates, totals.dead_lettered) == (14, 7, 5, 2)
    assert totals.balanced()

    events = await facts(rt, "dispatch", source)
    kinds = collections.Counter(e.type for e in events)
    assert kinds["cad.call.received.v4"] == 6 and kinds["cad.call.revised.v3"] == 1
    (rev,) = [e for e in events if e.type == "cad.call.revised.v3"]
    cad = revised[2][header.index("CAD Event Number")]
    assert rev.subject == f"SIMD:{cad}" and rev.data["disposition_text"] == "PHYSICAL ARREST MADE"
    assert rev.data["revision"].startswith("sha256:")
    assert len({e.id for e in events}) == len(events)
    stored = await rt.pool.fetchval(
        f"""SELECT first_revision FROM {rt.settings.core_schema}.connector_revisions
            WHERE source = $1 AND record_key = $2""",
        source,
        f"SIMD:{cad}",
    )
    assert stored.startswith("sha256:") and stored != rev.data["revision"]

    letters = await rt.pool.fetch(
        f"""SELECT record_ref, stage, reason FROM {rt.settings.core_schema}.deadletters
            WHERE source = $1 ORDER BY record_ref""",
        source,
    )
    refs = [(r["record_ref"], r["stage"]) for r in letters]
    assert refs == [("calls-1.csv:8", "parse"), ("calls-1.csv:9", "parse")]
    assert letters[0]["reason"].startswith("Original Time Queued: unparseable time")
    assert letters[1]["reason"] == "wrong column count: expected 13, found 4"
    assert "31/31" not in " ".join(r["reason"] for r in letters)  # reasons carry no values
    assert metrics.SOURCE_LAG.labels(name)._value.get() > 0


# ---------------------------------------------------------------- hub ingest: re-exports


async def test_reimport_of_a_revised_export_appends_one_revision_per_changed_row(rt, tmp_path) -> None:  # type: ignore[no-untyped-def]
    profile = load_profile("seattle").model_copy(update={"agency": "SIMR"})
    header, rows = seattle_rows(10)
    first, second = tmp_path / "export-1.csv", tmp_path / "export-2.csv"
    first.write_bytes(csv_bytes(header, rows))
    changed = [list(r) for r in rows]
    changed[0][header.index("Priority")] = "1"
    changed[5][header.index("Final Call Type")] = "CRISIS COMPLAINT - GENERAL"
    changed[7][header.index("Event Clearance Description")] = "  " + rows[7][1].lower() + " "  # cosmetic
    second.write_bytes(csv_bytes(header, changed))
    revisions = PostgresRevisionStore(rt.pool, rt.settings.core_schema)
    seal = rt.deadletter_sealer
    source = "cad/it-reexport"

    a = await ingest_files([first], profile, rt.log, seal, revisions, source)
    b = await ingest_files([second], profile, rt.log, seal, revisions, source)
    c = await ingest_files([first, second], profile, rt.log, seal, revisions, source)
    assert (a.appended, a.duplicates) == (10, 0)
    assert (b.appended, b.duplicates, b.events_appended) == (2, 8, 2)
    assert (c.appended, c.events_appended, c.duplicates) == (0, 0, 20)

    events = await facts(rt, "dispatch", source)
    revised = {e.subject: e.data for e in events if e.type == "cad.call.revised.v3"}
    cad = header.index("CAD Event Number")
    assert set(revised) == {f"SIMR:{rows[0][cad]}", f"SIMR:{rows[5][cad]}"}
    assert revised[f"SIMR:{rows[0][cad]}"]["priority"] == "1"
    # the revision keeps the source's words; the projections' vocabulary makes it a BH call
    assert revised[f"SIMR:{rows[5][cad]}"]["call_type_final"] == "CRISIS COMPLAINT - GENERAL"
