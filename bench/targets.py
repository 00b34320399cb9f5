"""The phases that measure issue 14's targets beyond throughput: the event-id index's size,
the REF^I12 / FHIR builders per core, live latency at a steady feed (also for a person
with a long history), and the rebuild's memory at 100k / 1M / 3M events (``--scale``).

Setup (generating and appending the data) is outside the measured blocks. Records for the
large rebuilds are produced straight to the fact topics with the hub's record MAC (what
``EventLog.append`` signs) but without the event-id index, which a rebuild does not read:
3M records through the index would make the setup alone take most of an hour.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.measure import Sample, TreeMemory, measured
from bench.report import FAIL, PASS, Row, expect, per_10k, verdict
from bench.workspace import Workspace
from connectors.fhir.bundle import build_referral_bundle_reference, bundle_bytes
from connectors.fhir.delivery import FhirTransport
from connectors.hl7v2.delivery import Hl7Transport
from connectors.hl7v2.ref_i12 import build_ref_i12_reference
from connectors.referrals.content import Disclosure, sample_disclosures
from hub.bootstrap import open_runtime
from hub.kernel.db import CORE_MIGRATIONS, migrate, open_pool
from hub.kernel.kafka import KafkaClients
from hub.kernel.log import EVENTS, PRODUCER_BATCH_BYTES, record_headers, topic_for
from hub.kernel.quarantine import header
from hub.kernel.runtime import Runtime
from hub.kernel.settings import PROJECT_ROOT
from projections.app import group_id
from projections.projector import Projector, consumer_record
from schemas.dispatch import CallDisposition, CallReceived, UnitDispatched, UnitOnScene
from schemas.encounter import OnSceneOutcome, PersonIdentified
from schemas.envelope import Envelope, new_event

T0 = datetime(2024, 1, 1, tzinfo=UTC)
INDEX_BYTES_TARGET = 150
LATENCY_TARGET_MS = 250.0
DRAIN_SECONDS = 120.0  # how long the live phase waits for the fed records after the feed
REBUILD_PEAK_TARGET_MIB = 500.0
REBUILD_RATIO_TARGET = 0.20
REBUILD_1M_SECONDS = 60.0
SCALE_WORKERS = 2  # the --scale rebuilds run once in one process and once with this many workers
PARALLEL_TARGET = 1.6  # N processes on N cores vs one
FHIR_TARGET, HL7_TARGET = 5_000, 10_000


# --------------------------------------------------------------------------- event-id index


async def index_bytes(rt: Runtime, events: int) -> Row:
    """Bytes per event of the event-id index (table, indexes and TOAST) after the append
    phase; the cost-per-event growth to 10M rows is :func:`index_growth`."""
    schema = rt.settings.core_schema
    row = await rt.pool.fetchrow(
        f"SELECT pg_total_relation_size('\"{schema}\".event_index') AS size, count(*) AS n "
        f'FROM "{schema}".event_index'
    )
    size, rows = (row["size"], row["n"]) if row is not None else (0, 0)
    per = size / rows if rows else 0.0
    return Row(
        "event-id index size",
        rows,
        Sample(),
        measured=f"{per:.0f} B/event",
        target=f"≤ {INDEX_BYTES_TARGET} B/event",
        verdict=verdict(per <= INDEX_BYTES_TARGET),
        extra={"bytes": size, "bytes_per_event": round(per, 1), "events_appended": events},
    )


INDEX_GROWTH_TARGET = 1.5  # cost per event at the largest size / at the smallest: "flat"
INDEX_PROBE_EVENTS = 1400  # one append chunk of the CAD ingest (500 rows x 2.8 events)
INDEX_PROBE_CHUNKS = 20
INDEX_PROBE_ROUNDS = 3  # the median round counts


def probe_rows(rng: random.Random, n: int) -> list[tuple[Any, ...]]:
    """``n`` index rows as one append writes them (random uuid keys, like uuid5 ids)."""
    return [(uuid.UUID(int=rng.getrandbits(128), version=4), 1, 2, i % 12, i) for i in range(n)]


async def index_growth(ws: Workspace, sizes: Sequence[int]) -> Row:
    """The event index's PostgreSQL cost per event as the index grows: a synthetic index in
    a scratch schema (the production table, filled with random keys outside the measured
    blocks) grown to each of ``sizes`` rows; at each size, after a warm-up, the append's
    two statements (the presence read and :meth:`hub.kernel.log.Ledger.index` of
    :data:`hub.kernel.log.EVENTS`) run for :data:`INDEX_PROBE_ROUNDS` rounds of
    :data:`INDEX_PROBE_CHUNKS` chunks of new ids; the cost is the median round's wall µs
    per event. Target: the cost at the largest size is at most
    :data:`INDEX_GROWTH_TARGET` times the cheapest of the smaller sizes; bytes per row are
    noted."""
    settings = ws.settings("i")
    schema = ws.schema("index")
    present = EVENTS.present_sql(schema)

    async def probe(conn: Any, chunks: list[list[tuple[Any, ...]]]) -> None:
        """What one append does in PostgreSQL per chunk: the presence read, the index write."""
        for rows in chunks:
            await conn.fetch(present, [r[0] for r in rows])
            await EVENTS.index(conn, schema, sorted(rows, key=lambda r: r[0]))

    rng = random.Random(14)
    per_size: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    async with open_pool(settings, role="owner", max_size=2) as pool:
        await migrate(pool, component="core", package_dir=CORE_MIGRATIONS.directory, schema=schema)
        filled = 0
        samples: list[Sample] = []
        for size in sorted(sizes):
            while filled < size:  # setup: random keys, outside the measured block
                step = min(1_000_000, size - filled)
                await pool.execute(
                    f'INSERT INTO "{schema}".event_index (event_id, topic, event_type, "partition", "offset")'
                    " SELECT gen_random_uuid(), 1, 2, g % 12, g"
                    " FROM generate_series($1::bigint, $2::bigint) g",
                    filled, filled + step - 1,
                )
                filled += step
            await pool.execute(f'VACUUM ANALYZE "{schema}".event_index')
            async with pool.acquire() as conn:
                await probe(conn, [probe_rows(rng, INDEX_PROBE_EVENTS) for _ in range(5)])  # warm-up
                rounds = []
                for _ in range(INDEX_PROBE_ROUNDS):
                    chunks = [probe_rows(rng, INDEX_PROBE_EVENTS) for _ in range(INDEX_PROBE_CHUNKS)]
                    with measured() as sample:
                        await probe(conn, chunks)
                    rounds.append(sample)
                size_bytes = await conn.fetchval(
                    f"SELECT pg_total_relation_size('\"{schema}\".event_index')"
                )
            probed = INDEX_PROBE_EVENTS * INDEX_PROBE_CHUNKS
            filled += probed * INDEX_PROBE_ROUNDS + 5 * INDEX_PROBE_EVENTS
            median = sorted(rounds, key=lambda r: r.seconds)[len(rounds) // 2]
            samples.append(median)
            per_size[str(size)] = {
                "us_per_event": round(median.seconds / probed * 1e6, 2),
                "us_per_event_rounds": [round(r.seconds / probed * 1e6, 2) for r in rounds],
                "bytes_per_event": round(size_bytes / filled, 1),
            }
    last = per_size[str(max(sizes))]["us_per_event"]
    smaller = [v["us_per_event"] for k, v in per_size.items() if int(k) != max(sizes)]
    cheapest = min(smaller) if smaller else last
    growth = last / cheapest if cheapest else float("inf")
    shown = ", ".join(f"{int(k):,}: {v['us_per_event']:.1f} µs" for k, v in per_size.items())
    return Row(
        "event-id index cost growth",
        INDEX_PROBE_EVENTS * INDEX_PROBE_CHUNKS,
        samples[-1],
        measured=f"x{growth:.2f} ({shown})",
        target=f"cost/event at {max(sizes):,} ≤ x{INDEX_GROWTH_TARGET} of the smaller sizes",
        verdict=verdict(growth <= INDEX_GROWTH_TARGET),
        extra={"sizes": per_size, "growth": round(growth, 3), "setup_and_probe_seconds":
               round(time.monotonic() - started, 1)},
    )


# --------------------------------------------------------------------------- builders


def disclosures(n: int) -> list[Disclosure]:
    """``n`` distinct referrals (the builders' sample referrals under new ids)."""
    samples = sample_disclosures()
    out = []
    for i in range(n):
        d = samples[i % len(samples)]
        request = d.request.model_copy(update={"referral_id": f"R-BENCH-{i}"})
        out.append(d.model_copy(update={"request": request, "event_id": f"{i:032x}"}))
    return out


def builder_rows(n: int) -> list[Row]:
    """REF^I12 and FHIR Bundles rendered by the delivery transports (fast builder + its
    sampled check), per CPU-second, vs the hl7apy / fhir.resources reference builders."""
    items = disclosures(n)
    few = items[: max(20, n // 100)]
    rows = []
    for name, render, reference, target in (
        ("FHIR Bundles built", FhirTransport({}).render, lambda d: bundle_bytes(
            build_referral_bundle_reference(d)), FHIR_TARGET),
        ("HL7 REF^I12 built", Hl7Transport({}).render, lambda d: build_ref_i12_reference(d).encode(),
         HL7_TARGET),
    ):
        with measured() as ours:
            for d in items:
                render(d)
        with measured() as base:
            for d in few:
                reference(d)
        row = Row(
            name, len(items), ours, "the reference builder (model-validated / hl7apy), same referrals",
            len(few), base, per_cpu=True, target=f"≥ {target:,}/s per core",
        )
        row.verdict = verdict(row.rps >= target)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- synthetic county


def _person(rng: random.Random, persons: int) -> str:
    """A pseudonym, a few people far more often than others (frequent utilizers): person
    ``i`` is drawn with probability ∝ the growth of (i / persons)^(1/3), so the most frequent
    one is the subject of about (1 / persons)^(1/3) of the calls that name a subject — at
    1M events some 2,400 calls (≈11,000 facts in their component), at 3M about 4,800."""
    return f"psn_{int(persons * rng.random() ** 3):032x}"


def incident_events(i: int, rng: random.Random, persons: int, tag: str) -> list[Envelope]:
    """One synthetic call: received, dispatched, on scene, disposition; a third of them
    name a subject and record an on-scene outcome (about 4.7 events a call)."""
    inc = f"sea:{tag}{i}"
    at = T0 + timedelta(seconds=i * 7)
    src = f"bench/{tag}"
    events: list[Any] = [
        CallReceived(incident_id=inc, agency="sea", cad_number=f"{tag}{i}", at=at, source_timezone="UTC",
                     call_type_final="CRISIS" if i % 3 == 0 else "WELL BEING"),
        UnitDispatched(incident_id=inc, at=at + timedelta(minutes=2)),
        UnitOnScene(incident_id=inc, at=at + timedelta(minutes=9)),
        CallDisposition(incident_id=inc, at=at + timedelta(minutes=40), disposition_code="NO ACTION"),
    ]
    if i % 3 == 0:
        who = _person(rng, persons)
        events += [
            PersonIdentified(incident_id=inc, at=at + timedelta(minutes=12), person=who),
            OnSceneOutcome(incident_id=inc, at=at + timedelta(minutes=30), outcome="no_enforcement",
                           person=who),
        ]
    return [new_event(e, source=src, record_id=f"{i}.{k}", recorded_at=at) for k, e in enumerate(events)]


def county_log(events: int, tag: str, seed: int = 5) -> Iterator[list[Envelope]]:
    """About ``events`` envelopes of a synthetic county, in chunks of about 20,000."""
    rng = random.Random(seed)
    persons = max(50, events // 40)
    chunk: list[Envelope] = []
    made, i = 0, 0
    while made < events:
        evs = incident_events(i, rng, persons, tag)
        chunk += evs
        made += len(evs)
        i += 1
        if len(chunk) >= 20_000:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def produce_signed(rt: Runtime, chunks: Iterator[list[Envelope]]) -> int:
    """Setup: the envelopes straight to their fact topics, each record signed with the
    hub's record MAC (the rebuild verifies it); returns the records produced."""
    producer = KafkaClients(rt.settings.kafka).producer(
        "bench-scale", max_batch_size=PRODUCER_BATCH_BYTES, linger_ms=20
    )
    prefix = rt.settings.kafka.topic_prefix
    await producer.start()
    sent = 0
    try:
        for chunk in chunks:
            futures = []
            for e in chunk:
                topic = topic_for(prefix, e)
                key, value = e.partitionkey.encode(), e.to_bytes()
                headers = rt.log.mac_keys.sign(topic, key, value, record_headers(e))
                futures.append(await producer.send(topic, value=value, key=key, headers=headers))
            await asyncio.gather(*futures)
            sent += len(chunk)
    finally:
        await producer.stop()
    return sent


# --------------------------------------------------------------------------- live latency


class LatencyProjector(Projector):
    """The projector of ``hub project``, noting when the batch holding each event id
    committed (rows and outcome counts together)."""

    def __init__(self, rt: Runtime, schema: str) -> None:
        super().__init__(rt, schema)
        self.applied: dict[str, float] = {}

    async def apply_events(self, events: Sequence[Any]) -> None:
        await super().apply_events(events)
        now = time.perf_counter()
        for e in events:
            eid = header(consumer_record(e.message), "ce_id")
            if eid:
                self.applied.setdefault(eid, now)


def history(person: str, facts: int, tag: str) -> list[Envelope]:
    """``facts`` facts in one person's history: calls, each naming them as the subject."""
    out: list[Envelope] = []
    for i in range(facts // 2):
        inc, at = f"sea:{tag}{i}", T0 + timedelta(minutes=i)
        for k, e in enumerate((
            CallReceived(incident_id=inc, agency="sea", cad_number=f"{tag}{i}", at=at, source_timezone="UTC",
                         call_type_final="CRISIS"),
            PersonIdentified(incident_id=inc, at=at + timedelta(minutes=5), person=person),
        )):
            out.append(new_event(e, source=f"bench/{tag}", record_id=f"{i}.{k}", recorded_at=at))
    return out


async def caught_up(projector: Projector, timeout: float) -> None:
    """Wait until the projector's stored positions reach the log end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        try:
            if projector.app is not None and await projector.lag() == 0:
                return
        except Exception:  # the read-model tables are being created
            continue
    raise TimeoutError(f"the projector did not catch up within {timeout:.0f} s")


async def live_latency(ws: Workspace, seconds: float, rate: int, heavy_facts: int) -> Row:
    """A steady feed of ``rate`` records/s for ``seconds`` into the log while the live
    projector runs; latency = the feed's append call → the commit of the batch that made
    the record's read-model rows and outcome counts. With ``heavy_facts``, every fed call
    belongs to one person whose history already holds that many facts."""
    settings = ws.settings("h" if heavy_facts else "v")
    tag = "hv" if heavy_facts else "lv"
    async with open_runtime(settings) as rt:
        person = "psn_" + "e" * 32
        preload = history(person, heavy_facts, f"{tag}p") if heavy_facts else history(person, 20, f"{tag}p")
        for i in range(0, len(preload), 2000):
            await rt.log.append(preload[i : i + 2000])
        schema = ws.schema(f"{tag}lat")
        gid = group_id(settings, schema)
        ws.groups.append(gid)
        ws.dirs.append(settings.state_dir / "faust" / gid)
        projector = LatencyProjector(rt, schema)
        stop = asyncio.Event()
        running = asyncio.create_task(projector.run(stop=stop))
        try:
            await caught_up(projector, 900.0)
            n = int(seconds * rate)
            feed: list[Envelope] = []
            rng = random.Random(3)
            for i in range(n // 2 + 1):
                who = person if heavy_facts else _person(rng, 500)
                inc, at = f"sea:{tag}f{i}", datetime.now(UTC)
                feed += [
                    new_event(CallReceived(incident_id=inc, agency="sea", cad_number=f"{tag}f{i}", at=at,
                                           source_timezone="UTC", call_type_final="CRISIS"),
                              source=f"bench/{tag}", record_id=f"f{i}.0", recorded_at=at),
                    new_event(PersonIdentified(incident_id=inc, at=at, person=who),
                              source=f"bench/{tag}", record_id=f"f{i}.1", recorded_at=at),
                ]
            feed = feed[:n]
            sent: dict[str, float] = {}
            gate = asyncio.Semaphore(16)

            async def append_one(e: Envelope) -> None:
                async with gate:
                    sent[e.id] = time.perf_counter()
                    await rt.log.append([e])

            with measured() as sample:
                start = time.perf_counter()
                tasks = []
                for k, e in enumerate(feed):
                    await asyncio.sleep(max(0.0, start + k / rate - time.perf_counter()))
                    tasks.append(asyncio.create_task(append_one(e)))
                await asyncio.gather(*tasks)
                fed = time.perf_counter() - start
                deadline = time.monotonic() + DRAIN_SECONDS
                while any(e.id not in projector.applied for e in feed) and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
        finally:
            stop.set()
            await running
    # a record not applied by the deadline counts with the wait so far (a lower bound)
    end = time.perf_counter()
    missing = sum(1 for e in feed if e.id not in projector.applied)
    ms = sorted((projector.applied.get(e.id, end) - sent[e.id]) * 1000 for e in feed)
    p50, p99 = statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    name = f"live p99, {heavy_facts:,}-fact person" if heavy_facts else "live p99 at 100 rec/s"
    return Row(
        name,
        len(feed),
        sample,
        measured=f"p99 {'>' if missing else ''}{p99:.0f} ms",
        target=f"p99 ≤ {LATENCY_TARGET_MS:.0f} ms at {rate} rec/s",
        verdict=verdict(p99 <= LATENCY_TARGET_MS and not missing),
        extra={
            "p50_ms": round(p50, 1),
            "p99_ms": round(p99, 1),
            "max_ms": round(ms[-1], 1),
            "not_applied_in_time": missing,
            "fed_rate": round(len(feed) / fed, 1),
            "history_facts": heavy_facts,
            "batches": projector.stats.batches,
        },
    )


# --------------------------------------------------------------------------- rebuild at scale


def rebuild_verdict(row: Row, events: int, peak_mib: float | None = None) -> None:
    """PASS when the rebuild's peak RSS and ratio meet the targets (and, from 1M events
    on, its time scaled to 1M events is within 60 s). ``peak_mib``: the peak to judge
    (default: the row's growth over the phase's start, what the rebuild itself added to
    the benchmark process)."""
    peak = row.sample.growth_mib if peak_mib is None else peak_mib
    ok = peak <= REBUILD_PEAK_TARGET_MIB and (row.ratio or 0.0) >= REBUILD_RATIO_TARGET
    parts = [f"{'peak' if peak_mib is not None else '+MiB'} ≤ {REBUILD_PEAK_TARGET_MIB:.0f}",
             f"ratio ≥ {REBUILD_RATIO_TARGET}"]
    if events >= 1_000_000:
        ok = ok and row.sample.seconds * 1_000_000 / events <= REBUILD_1M_SECONDS
        parts.append("≤ 60 s per 1M")
    row.target = ", ".join(parts)
    row.verdict = PASS if ok else FAIL
    row.measured = f"{peak:.0f} MiB"


def hub_replay(settings: Any, schema: str, workers: int = 0) -> tuple[dict[str, Any], Sample, float]:
    """Run ``hub replay --into schema --json`` as an operator does, in a process of its own:
    its counters, its wall time and the largest peak resident set of any of its processes
    (the sample's ``peak_mib``, :class:`bench.measure.TreeMemory`), and the largest sum of
    their resident sets at one time (MiB)."""
    env = dict(os.environ)
    env["HUB_KAFKA__TOPIC_PREFIX"] = settings.kafka.topic_prefix
    env["HUB_STATE_DIR"] = str(settings.state_dir)
    args = [sys.executable, "-m", "hub.entry.cli", "replay", "--into", schema, "--json"]
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [*args, "--workers", str(workers)], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=err
        )
        memory = TreeMemory(proc.pid)
        assert proc.stdout is not None
        try:
            out = proc.stdout.read()
            proc.wait()
        finally:
            memory.stop()
        seconds = time.perf_counter() - started
        err.seek(0)
        expect(proc.returncode == 0, f"hub replay exited {proc.returncode}: {err.read().decode()[-500:]}")
    return json.loads(out), Sample(seconds=seconds, peak_mib=memory.process_peak_mib), memory.tree_peak_mib


async def scale_rebuild(ws: Workspace, events: int, copy_floor: Any) -> list[Row]:
    """``hub replay --into`` (its own process) over a synthetic county of about ``events``
    records vs the read + COPY floor of the same log (in the benchmark process); then
    ``hub replay --workers 2`` over the same log, vs the floor and vs the one process."""
    label = f"{events // 1000}k" if events < 1_000_000 else f"{events // 1_000_000}m"
    settings = ws.settings(f"s{label}")
    async with open_runtime(settings) as rt:
        started = time.perf_counter()
        sent = await produce_signed(rt, county_log(events, f"s{label}"))
        setup = time.perf_counter() - started
        await ws.settle()
        stats, ours, ours_tree = await asyncio.to_thread(hub_replay, settings, ws.schema(f"scale{label}"))
        with measured() as base:
            floor = await copy_floor(settings, rt, ws.schema(f"floor{label}"))
        await ws.settle()
        stats2, two, two_tree = await asyncio.to_thread(
            hub_replay, settings, ws.schema(f"scale{label}w"), SCALE_WORKERS
        )
    read, read2, rows1, rows2 = stats["records"], stats2["records"], stats["rows"], stats2["rows"]
    expect(read == floor == sent == read2, f"scale rebuild: {read}/{read2} read, {floor} floor, {sent} sent")
    expect(rows1 == rows2, f"{SCALE_WORKERS} workers: {rows2} rows, one process {rows1}")
    rows = []
    for name, st, sample, tree, workers in (
        (f"rebuild {label} events", stats, ours, ours_tree, 0),
        (f"rebuild {label} events, {SCALE_WORKERS} workers", stats2, two, two_tree, SCALE_WORKERS),
    ):
        row = Row(
            name,
            st["records"],
            sample,
            "raw getmany of the fact topics + COPY of one trivial row per record",
            floor,
            base,
            {
                "facts": st["facts"],
                "rows_written": st["rows"],
                "setup_seconds": round(setup, 1),
                "peak_is_of": "the largest peak resident set of any one process of hub replay",
                "all_processes_peak_mib": round(tree, 1),
                "mib_per_10k_events": round(per_10k(sample.peak_mib, st["records"]), 2),
                "workers": workers,
                "phase_seconds": st.get("seconds", {}),
            },
        )
        rebuild_verdict(row, st["records"], peak_mib=sample.peak_mib)
        rows.append(row)
    speedup = ours.seconds / two.seconds if two.seconds else 0.0
    rows[1].extra["speedup_vs_one_process"] = round(speedup, 2)
    rows[1].target += f", ≥ {PARALLEL_TARGET} x one process"
    rows[1].measured += f", {speedup:.2f} x one"
    if speedup < PARALLEL_TARGET:
        rows[1].verdict = FAIL
    return rows
