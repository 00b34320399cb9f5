"""The fault suite (issue 13 item 8): the hub's real processes on a private 3-broker KRaft
cluster and a private PostgreSQL, first clean, then under seeded faults; the faulted run is
judged against the clean one (:mod:`hub.devtools.faults.compare`).

One run, in its own namespace (topic prefix + schema): the CAD files of a seeded county are
ingested (``hub ingest cad``, one file per job step), the co-responder app appends its
encounters and referrals (:mod:`hub.devtools.faults.app`, its PostgreSQL connection through
a :class:`~hub.devtools.faults.tcpcut.CutProxy`), the delivery workers, the FHIR Task
poller and the MLLP listener run (``hub connectors run``) against the EHR simulator, and the
projector (``hub project``) maintains the read models — all under a :class:`Supervisor`
that restarts what exits. The run ends when the jobs are done, every fault is undone and
the log, the ledger and the read models stop changing (quiescent), then every process gets
SIGTERM (one that outlives ``stop_grace_s`` + 10 s is hung, and so is every projector its
watchdog stopped for lack of progress), ``hub seal --once`` and
``hub verify --json`` run, and the log's event ids and the read models are read.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import yaml

from hub.bootstrap import open_runtime
from hub.devtools.demo import FHIR_DEST, HL7_DEST, REQUESTER
from hub.devtools.ehr_sim.simulator import EhrSimulator, SimConfig
from hub.devtools.ehr_sim.store import Lifecycle
from hub.devtools.faults.app import county
from hub.devtools.faults.compare import Verdict, judge, open_sealed
from hub.devtools.faults.plan import Fault, fault_plan
from hub.devtools.faults.supervisor import Supervisor
from hub.devtools.faults.tcpcut import CutProxy
from hub.devtools.infra.kafka import ensure_jars
from hub.devtools.infra.kafka_cluster import NODES, ClusterSpec, KafkaCluster
from hub.devtools.infra.pg_private import PrivatePostgres
from hub.devtools.simulate.feeds import encounter_events
from hub.kernel import db
from hub.kernel.crypto import unseal
from hub.kernel.kafka import KafkaClients
from hub.kernel.kafka_io import end_offsets, topic_partitions
from hub.kernel.log import EVENTS
from hub.kernel.namespace import Namespace
from hub.kernel.settings import PROJECT_ROOT, PostgresSettings, Settings
from projections.projector import STALL_LOG
from schemas.base import Sealed
from schemas.topics import fact_topic, fact_topics

PROCESSES = ["ingest", "app", "delivery", "projector"]
SERVICES = ("delivery", "projector")
APP_BATCH = 5


@dataclass(frozen=True)
class SuiteOptions:
    seed: int = 13
    long: bool = False
    window_s: float = 45.0  # the fault window of the faulted run
    kills: int = 0  # at least this many process SIGKILLs (long: at least 20)
    days: int = 2
    calls_per_day: int = 30
    home: Path | None = None  # default: a fresh temporary directory, removed afterwards
    keep: bool = False
    base_port: int = 19192
    pg_port: int = 15432
    quiesce_timeout_s: float = 240.0
    settle_s: float = 6.0


@dataclass
class RunResult:
    name: str
    event_ids: set[str] = field(default_factory=set)
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    verify_breaks: int = 0
    verify_ok: bool = False
    ehr_duplicates: int = 0
    hung: list[str] = field(default_factory=list)
    kills: int = 0
    restarts: int = 0
    faults: list[str] = field(default_factory=list)
    seconds: float = 0.0
    referrals: dict[str, int] = field(default_factory=dict)


#: the delivery channels whose intake consumer groups must reach the referral topic's end
INTAKE_CHANNELS = ("fhir", "hl7v2")


@dataclass(frozen=True)
class Snapshot:
    """What quiescence is judged on: the fact partitions' ends (``topic/partition`` → end
    offset, empty ones left out), the projector's stored positions, the open delivery rows,
    and each delivery intake group's committed offsets on ``referral_topic`` (a referral
    request the intake never took into the ledger is in no open row: only its offset shows
    it, so a stalled intake looked like three lost outcome events)."""

    ends: dict[str, int]
    positions: dict[str, int]
    open_rows: int
    referral_topic: str
    intakes: dict[str, dict[str, int]]

    def projector_behind(self) -> list[str]:
        return sorted(
            f"{tp} {self.positions.get(tp, 0)}/{end}" for tp, end in self.ends.items()
            if self.positions.get(tp, 0) != end
        )

    def intakes_behind(self) -> list[str]:
        referral_ends = {
            tp: end for tp, end in self.ends.items() if tp.rsplit("/", 1)[0] == self.referral_topic
        }
        return sorted(
            f"{group} {tp} {committed.get(tp, 0)}/{end}"
            for group, committed in self.intakes.items()
            for tp, end in referral_ends.items()
            if committed.get(tp, 0) != end
        )

    def quiet(self) -> bool:
        return self.open_rows == 0 and not self.projector_behind() and not self.intakes_behind()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env() -> dict[str, str]:
    """The parent's environment without any ``HUB_`` setting (each process gets the suite's)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}


class Suite:
    def __init__(self, opts: SuiteOptions, out: Callable[[str], None] = print) -> None:
        self.opts = opts
        self.out = out
        self.home = opts.home or Path(tempfile.mkdtemp(prefix="hub-faults-"))
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o755)
        self.state = self.home / "state"
        self.spec = ClusterSpec(
            home=self.home / "kafka", libs=Settings().cache_dir / "kafka" / "libs", base_port=opts.base_port
        )
        self.cluster = KafkaCluster(self.spec)
        self.pg = PrivatePostgres(self.home / "pg", opts.pg_port)
        self.base = Settings(
            state_dir=self.state,
            kafka=self.spec.kafka_settings().model_copy(update={"append_timeout_s": 8.0}),
            postgres=PostgresSettings(port=opts.pg_port, idle_in_transaction_timeout_s=30.0),
            metrics_port=0,
            stop_grace_s=10.0,
        )

    # ------------------------------------------------------------------ environment

    def env(self, settings: Settings, **extra: str) -> dict[str, str]:
        return {
            **clean_env(),
            "HUB_STATE_DIR": str(self.state),
            "HUB_KAFKA__BOOTSTRAP": settings.kafka.bootstrap,
            "HUB_KAFKA__SECURITY_PROTOCOL": "PLAINTEXT",  # the private cluster (see kafka_cluster)
            "HUB_KAFKA__REPLICATION_FACTOR": "3",
            "HUB_KAFKA__MIN_INSYNC_REPLICAS": "2",
            "HUB_KAFKA__APPEND_TIMEOUT_S": str(settings.kafka.append_timeout_s),
            "HUB_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
            "HUB_POSTGRES__PORT": str(settings.postgres.port),
            "HUB_POSTGRES__SCHEMA": settings.postgres.schema_,
            "HUB_POSTGRES__IDLE_IN_TRANSACTION_TIMEOUT_S": "30",
            "HUB_METRICS_PORT": "0",
            "HUB_STOP_GRACE_S": str(settings.stop_grace_s),
            **extra,
        }

    async def up(self) -> None:
        t = time.monotonic()
        await asyncio.to_thread(ensure_jars, Settings())
        self.cluster.kill_stale()
        await self.cluster.start()
        await asyncio.to_thread(self.pg.init)
        await asyncio.to_thread(self.pg.start)
        await asyncio.to_thread(self.pg.provision, self.base)
        self.out(
            f"cluster: 3 KRaft brokers {self.spec.bootstrap} (RF 3, min ISR 2, PLAINTEXT on loopback), "
            f"PostgreSQL 127.0.0.1:{self.pg.port} under {self.home} — up in {time.monotonic() - t:.0f}s"
        )
        cad = self.home / "cad"
        o = self.opts
        result = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hub.entry.cli",
            "simulate",
            "csv",
            "--out",
            str(cad),
            "--profile",
            "generic",
            "--seed",
            str(o.seed),
            "--days",
            str(o.days),
            "--calls-per-day",
            str(o.calls_per_day),
            cwd=PROJECT_ROOT,
            env=self.env(self.base),
            stdout=asyncio.subprocess.PIPE,
        )
        stdout, _ = await result.communicate()
        if result.returncode != 0:
            raise RuntimeError("hub simulate csv failed")
        self.cad_files = json.loads(stdout)["files"]
        model = county(o.seed, o.days, "2024-03-01", o.calls_per_day)
        self.app_batches = -(-len(encounter_events(model, b"\0" * 32)) // APP_BATCH)

    def down(self) -> None:
        self.cluster.stop()
        self.pg.stop()
        if not self.opts.keep and self.opts.home is None:
            shutil.rmtree(self.home, ignore_errors=True)

    # ------------------------------------------------------------------ one run

    async def run(self, name: str, faults: list[Fault]) -> RunResult:
        o = self.opts
        settings = Namespace(f"faults_{name}", f"faults_{name}").apply(self.base)
        result = RunResult(name)
        started = time.monotonic()
        async with open_runtime(settings):  # topics (RF 3) and migrations, once, before the processes
            pass
        proxy = CutProxy("127.0.0.1", self.pg.port)
        await proxy.start()
        listener_port = free_port()
        sim = EhrSimulator(
            SimConfig(
                fhir_port=0,
                mllp_port=0,
                answer_to=("127.0.0.1", listener_port),
                seed=o.seed,
                lifecycle=Lifecycle(
                    accept_after_s=0.5, progress_after_s=1.0, complete_after_s=1.5, decline_rate=0.1
                ),
            )
        )
        await sim.start()
        config = self.home / f"{name}-connectors.yaml"
        config.write_text(yaml.safe_dump({"components": components(sim, listener_port)}))
        hub = [sys.executable, "-m", "hub.entry.cli"]
        sup = Supervisor(self.home / "logs" / name, PROJECT_ROOT)
        env = self.env(settings)
        sup.add_job(
            "ingest",
            [[*hub, "ingest", "cad", "--profile", "generic", f] for f in self.cad_files],
            env,
            pause_s=o.window_s * 0.6 / len(self.cad_files) if faults else 0.0,
        )
        # the faulted run paces its appends over the fault window (the clean run needs no pacing:
        # the same envelopes either way, deterministic ids)
        pace = o.window_s * 0.8 / max(1, self.app_batches) if faults else 0.0
        sup.add_job(
            "app",
            [
                [
                    sys.executable,
                    "-m",
                    "hub.devtools.faults.app",
                    "--seed",
                    str(o.seed),
                    "--days",
                    str(o.days),
                    "--calls-per-day",
                    str(o.calls_per_day),
                    "--batch",
                    str(APP_BATCH),
                    "--pace-s",
                    f"{pace:.2f}",
                ]
            ],
            self.env(settings, HUB_POSTGRES__PORT=str(proxy.port)),
        )
        sup.add_service("delivery", [*hub, "connectors", "run", "--config", str(config)], env)
        sup.add_service("projector", [*hub, "project"], env)
        sup.start()
        injector = asyncio.create_task(self.inject(faults, sup, sim, proxy, settings, result))
        try:
            await self.quiesce(settings, sup, injector)
        finally:
            if not injector.done():
                injector.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await injector
            for n in NODES:  # whatever a failed run left down
                self.cluster.start_node(n)
            result.hung = await sup.stop(settings.stop_grace_s + 10)
            projector_log = self.home / "logs" / name / "projector.log"
            result.hung += ["projector (stalled)"] * stalls(projector_log.read_text(errors="replace"))
            result.ehr_duplicates = int(sim.stats()["duplicates"])
            await sim.stop()
            await proxy.stop()
        result.kills = sum(p.kills for p in sup.procs.values())
        result.restarts = sum(
            max(0, p.starts - 1 - (p.step if not p.service else 0)) for p in sup.procs.values()
        )
        await self.cluster.wait_brokers(3)
        await self.verify(env, result)
        await self.read(settings, result)
        result.seconds = time.monotonic() - started
        return result

    async def inject(
        self,
        faults: list[Fault],
        sup: Supervisor,
        sim: EhrSimulator,
        proxy: CutProxy,
        settings: Settings,
        result: RunResult,
    ) -> None:
        """Apply ``faults`` at their times; undo the ones with a duration."""
        t0 = time.monotonic()
        undo: list[asyncio.Task[None]] = []
        referral_topic = fact_topic(settings.kafka.topic_prefix, "referral")

        async def later(delay: float, fn: Callable[[], Any]) -> None:
            await asyncio.sleep(delay)
            value = fn()
            if asyncio.iscoroutine(value):
                await value

        for f in faults:
            await asyncio.sleep(max(0.0, t0 + f.at - time.monotonic()))
            note = ""
            if f.kind == "leader_kill":
                leader = await self.cluster.leader_of(referral_topic, 0)
                self.cluster.kill(leader)
                note = f"broker {leader}"
                undo.append(
                    asyncio.create_task(later(f.duration, functools.partial(self.cluster.start_node, leader)))
                )
            elif f.kind == "two_brokers_down":
                await self.cluster.wait_brokers(3)  # after a leader kill, wait for its return
                down = random.Random(f.at).sample(list(NODES), 2)
                for n in down:
                    self.cluster.kill(n)
                note = f"brokers {down}"
                await asyncio.sleep(f.duration)
                for n in down:
                    self.cluster.start_node(n)
            elif f.kind == "process_kill":
                target = f.target
                if not sup.running(target):  # a job between steps or done: a service instead
                    target = random.Random(f.at).choice(SERVICES)
                for _ in range(100):  # a service being restarted by the supervisor: await it
                    if sup.running(target):
                        break
                    await asyncio.sleep(0.1)
                note = f"{target} killed" if sup.kill(target) else f"{target} not running"
            elif f.kind in ("pg_immediate", "pg_fast"):
                mode = "immediate" if f.kind == "pg_immediate" else "fast"
                await asyncio.to_thread(self.pg.restart, mode)  # type: ignore[arg-type]
            elif f.kind == "append_cut":
                marker = EVENTS.window_marker(settings.core_schema)  # right after the acks
                cut = proxy.arm(marker)
                # asyncpg prepares a statement once per connection (the SQL text travels only
                # in that first Parse): reset the app's connections so its next index statement is seen
                proxy.down()
                proxy.up()
                try:
                    await asyncio.wait_for(cut.wait(), 30)
                    note = "cut after the ack"
                except TimeoutError:
                    note = "no append within 30 s"
                finally:  # a cut that did not happen now never happens later, unscheduled
                    proxy.disarm(cut)
            elif f.kind in ("ehr_flapping", "ehr_hung"):
                sim.set_mode("flapping" if f.kind == "ehr_flapping" else "hung")
                undo.append(asyncio.create_task(later(f.duration, lambda: sim.set_mode("normal"))))
            result.faults.append(f"{f.describe()}{': ' + note if note else ''}")
        for u in undo:
            await u

    async def quiesce(self, settings: Settings, sup: Supervisor, injector: asyncio.Task[None]) -> None:
        """Wait until the jobs are done, every fault is undone and nothing changes for
        ``settle_s`` with no delivery open and the projector at the log's end."""
        deadline = (
            time.monotonic() + self.opts.quiesce_timeout_s + (self.opts.window_s if self.opts.long else 0)
        )
        last: Snapshot | None = None
        failure: str = ""
        stable_since = time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            if injector.done() and injector.exception():
                raise injector.exception()  # type: ignore[misc]
            if not (sup.jobs_done() and injector.done()):
                continue
            try:
                snapshot = await asyncio.wait_for(self.snapshot(settings), 30)
            except Exception as exc:  # PostgreSQL or a broker still coming back
                failure = f"{type(exc).__name__}: {exc}"[:300]
                continue
            failure = ""
            if snapshot != last:
                last, stable_since = snapshot, time.monotonic()
                continue
            if snapshot.quiet() and time.monotonic() - stable_since >= self.opts.settle_s:
                return
        raise TimeoutError(
            "the run did not become quiescent (a process stopped making progress): "
            + not_quiescent(sup.jobs_done(), injector.done(), last, failure)
            + "".join(f"\n{job}" for job in sup.unfinished_jobs())
        )

    async def snapshot(self, settings: Settings) -> Snapshot:
        clients = KafkaClients(settings.kafka)
        prefix = settings.kafka.topic_prefix
        tps = await topic_partitions(clients, fact_topics(prefix))
        ends = {f"{tp.topic}/{tp.partition}": o for tp, o in (await end_offsets(clients, tps)).items() if o}
        referrals = fact_topic(prefix, "referral")
        intakes: dict[str, dict[str, int]] = {}
        admin = clients.admin("faults-snapshot")
        await admin.start()
        try:
            for channel in INTAKE_CHANNELS:  # the delivery intakes' consumer groups (worker.start)
                group = f"{prefix}-delivery-{channel}"
                committed = await admin.list_consumer_group_offsets(group)
                intakes[group] = {
                    f"{tp.topic}/{tp.partition}": meta.offset
                    for tp, meta in committed.items()
                    if tp.topic == referrals and meta.offset > 0
                }
        finally:
            await admin.close()
        conn = await asyncpg.connect(db.dsn(settings, "owner"), timeout=5)
        try:
            core, schema = settings.core_schema, settings.postgres.schema_
            rows = await conn.fetch(
                f'SELECT topic, "partition", next_offset FROM {schema}.projection_positions'
            )
            positions = {f"{r['topic']}/{r['partition']}": r["next_offset"] for r in rows if r["next_offset"]}
            open_rows = await conn.fetchval(
                f"SELECT count(*) FROM {core}.referral_deliveries "
                "WHERE state IN ('pending', 'sending') OR outbox IS NOT NULL"
            )
        finally:
            await conn.close()
        return Snapshot(ends, positions, int(open_rows), referrals, intakes)

    async def verify(self, env: dict[str, str], result: RunResult) -> None:
        hub = [sys.executable, "-m", "hub.entry.cli"]
        for args in (["seal", "--once"], ["verify", "--json"]):
            proc = await asyncio.create_subprocess_exec(
                *hub,
                *args,
                cwd=PROJECT_ROOT,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            stdout, stderr = await asyncio.wait_for(proc.communicate(), 300)
            if args[0] == "verify":
                report = json.loads(stdout)
                result.verify_ok = bool(report["ok"]) and proc.returncode == 0
                result.verify_breaks = len(report["breaks"])
            elif proc.returncode != 0:
                raise RuntimeError(f"hub seal --once failed: {stderr.decode(errors='replace')[-800:]}")

    async def read(self, settings: Settings, result: RunResult) -> None:
        async with open_runtime(settings, ensure_topics=False) as rt:
            async for e in rt.log.read():
                result.event_ids.add(e.envelope.id)
            schema = settings.postgres.schema_
            async with rt.pool.acquire() as conn:
                tables = await conn.fetch(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
                )
                for t in tables:
                    name = t["table_name"]
                    rows = await conn.fetch(f"SELECT to_jsonb(x) AS r FROM {schema}.{name} AS x")
                    result.rows[name] = [json.loads(r["r"]) for r in rows]
            kids: set[str] = set()
            open_sealed(result.rows, lambda d: kids.add(str(d["kid"])))
            keys = await rt.keyring.resolve_ids(kids)
            result.rows = open_sealed(result.rows, lambda d: unseal(keys, Sealed.model_validate(d)))
            async with rt.pool.acquire() as conn:
                states = await conn.fetch(
                    f"SELECT state, count(*) AS n FROM {settings.core_schema}.referral_deliveries "
                    "GROUP BY state"
                )
                result.referrals = {r["state"]: r["n"] for r in states}

    # ------------------------------------------------------------------ the whole suite

    async def main(self) -> Verdict:
        o = self.opts
        await self.up()
        self.out(
            f"workload: seed {o.seed}, {len(self.cad_files)} CAD files, {o.days} days x {o.calls_per_day} "
            f"calls; processes {', '.join(PROCESSES)} (supervised)"
        )
        clean = await self.run("clean", [])
        self.out(
            f"clean run: {clean.seconds:.0f}s, {len(clean.event_ids)} events, referrals {clean.referrals}, "
            f"verify {'OK' if clean.verify_ok else 'BROKEN'}"
        )
        plan = fault_plan(o.seed, PROCESSES, long=o.long, window_s=o.window_s, kills=o.kills)
        faulted = await self.run("faulted", plan)
        for line in faulted.faults:
            self.out(f"  fault {line}")
        self.out(
            f"faulted run: {faulted.seconds:.0f}s, {len(faulted.event_ids)} events, referrals "
            f"{faulted.referrals}, {faulted.kills} SIGKILLs of hub processes, {faulted.restarts} restarts, "
            f"verify {'OK' if faulted.verify_ok else 'BROKEN'}"
        )
        verdict = judge(
            clean.event_ids,
            faulted.event_ids,
            faulted.verify_breaks,
            clean.rows,
            faulted.rows,
            faulted.ehr_duplicates + clean.ehr_duplicates,
            clean.hung + faulted.hung,
        )
        if not clean.verify_ok:
            verdict.conflicting += clean.verify_breaks
        for line in verdict.lines():
            self.out(line)
        if verdict.detail["tables"] or verdict.detail["hung"]:
            self.out(f"detail: {json.dumps(verdict.detail, sort_keys=True)}")
        return verdict


def components(sim: EhrSimulator, listener_port: int) -> list[dict[str, Any]]:
    """The connectors config of a run: delivery workers, the Task poller, the MLLP listener."""
    retry = {"max_attempts": 8, "base_delay_s": 0.05, "max_delay_s": 1.0, "unknown_budget_s": 60}
    return [
        {"kind": "mllp-listener", "name": "mllp", "port": listener_port},
        {
            "kind": "fhir-delivery",
            "name": "fhir-delivery",
            "poll_interval_s": 0.2,
            "requesters": {REQUESTER: "County co-responder team"},
            "retry": retry,
            "destinations": {
                FHIR_DEST: {
                    "display": "County Mental Health Clinic",
                    "base_url": sim.fhir_base_url,
                    "timeout_s": 2.0,
                }
            },
        },
        {
            "kind": "hl7-delivery",
            "name": "hl7-delivery",
            "poll_interval_s": 0.2,
            "requesters": {REQUESTER: "County co-responder team"},
            "retry": retry,
            "destinations": {
                HL7_DEST: {
                    "display": "Riverside Behavioral Health",
                    "host": "127.0.0.1",
                    "port": sim.mllp_port,
                    "read_timeout_s": 2.0,
                }
            },
        },
        {
            "kind": "fhir-task-poller",
            "name": "fhir-task-poller",
            "interval_s": 0.5,
            "destinations": {FHIR_DEST: {"base_url": sim.fhir_base_url}},
        },
    ]


def stalls(log_text: str) -> int:
    """How many times a projector stopped itself for lack of progress (pure): a hang its
    watchdog turned into a restart still counts as a hung process."""
    return log_text.count(STALL_LOG)


def not_quiescent(jobs_done: bool, faults_done: bool, last: Snapshot | None, failure: str) -> str:
    """Why a run is not quiescent, for the suite's error (pure): jobs or faults still
    running, the fact partitions the projector has not reached (stored position / log end),
    the referral partitions a delivery intake has not taken in (committed / end), open
    deliveries, the last snapshot's error. Names and counts only."""
    why: list[str] = []
    if not jobs_done:
        why.append("jobs not done")
    if not faults_done:
        why.append("faults not undone")
    if last is not None:
        behind = last.projector_behind()
        if behind:
            why.append(f"projector behind on {len(behind)} partition(s): {', '.join(behind[:8])}")
        intakes = last.intakes_behind()
        if intakes:
            why.append(f"delivery intake behind on {len(intakes)} partition(s): {', '.join(intakes[:8])}")
        if last.open_rows:
            why.append(f"{last.open_rows} delivery row(s) open (pending, sending or an unappended outcome)")
    elif jobs_done and faults_done:
        why.append("no snapshot of the log and the ledger was ever taken")
    if failure:
        why.append(f"last snapshot failed: {failure}")
    return "; ".join(why) or "still changing"
