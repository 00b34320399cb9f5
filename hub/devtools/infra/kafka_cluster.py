"""A private 3-node Apache Kafka cluster (KRaft, every node broker + controller, a 3-voter
quorum) for the fault suite (:mod:`hub.devtools.faults`), next to the single dev broker of
:mod:`hub.devtools.infra.kafka` and built from the same pieces (jars, log4j2, StorageTool).

Layout under ``home``::

    node-<id>/server.properties   rendered on every start (pure: render_node_properties)
    node-<id>/data/               formatted once with the shared cluster id and --initial-controllers
    node-<id>/logs/               server.log, kafka.out
    node-<id>/kafka.pid

The cluster is PLAINTEXT on loopback ports only: it holds nothing but the suite's synthetic
data and exists for the duration of a run (the dev and production brokers are configured
by ``kafka.security_protocol``; this one is never shared).

Invariants: topics default to RF 3 with ``min.insync.replicas`` 2 (internal topics too), so
one node down never blocks an ``acks=all`` append and two down always do; a node killed by
SIGKILL restarts on its own data dir; unclean leader election is off.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from hub.devtools.infra import InfraError
from hub.devtools.infra.kafka import (
    KafkaLayout,
    _run_tool,
    is_formatted,
    quiet_client_logs,
    render_log4j2,
    require_java,
)
from hub.devtools.infra.proc import is_alive, port_is_free, read_pid, tail, wait_until_dead
from hub.kernel.kafka import KafkaClients
from hub.kernel.settings import KafkaSettings

NODES = (1, 2, 3)
READY_TIMEOUT_S = 180.0


def kafka_uuid() -> str:
    """A random Kafka ``Uuid`` in its text form (URL-safe base64 of 16 bytes, no padding), as
    ``kafka-storage random-uuid`` prints it (without starting a JVM per id)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


@dataclass(frozen=True)
class ClusterSpec:
    """Where the three nodes live and listen. ``base_port`` + 0..2 are the client ports,
    ``base_port`` + 10..12 the controller ports."""

    home: Path
    libs: Path
    base_port: int = 19192
    host: str = "127.0.0.1"
    heap: str = "320m"

    def client_port(self, node: int) -> int:
        return self.base_port + node - 1

    def controller_port(self, node: int) -> int:
        return self.base_port + 10 + node - 1

    def layout(self, node: int) -> KafkaLayout:
        return KafkaLayout(home=self.home / f"node-{node}", libs=self.libs)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{self.host}:{self.client_port(n)}" for n in NODES)

    @property
    def quorum(self) -> str:
        return ",".join(f"{self.host}:{self.controller_port(n)}" for n in NODES)

    def kafka_settings(self) -> KafkaSettings:
        """Client settings for the hub processes of the suite (RF 3, min ISR 2)."""
        return KafkaSettings(
            bootstrap=self.bootstrap,
            replication_factor=3,
            min_insync_replicas=2,
            security_protocol="PLAINTEXT",
        )


def render_node_properties(spec: ClusterSpec, node: int) -> str:
    """The config of one node (pure): broker + controller, RF 3 / min ISR 2 everywhere."""
    if node not in NODES:
        raise ValueError(f"node {node} is not one of {NODES}")
    h = spec.host
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node),
        "controller.quorum.bootstrap.servers": spec.quorum,
        "listeners": f"PLAINTEXT://{h}:{spec.client_port(node)},CONTROLLER://{h}:{spec.controller_port(node)}",
        "advertised.listeners": f"PLAINTEXT://{h}:{spec.client_port(node)},"
        f"CONTROLLER://{h}:{spec.controller_port(node)}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(spec.layout(node).data),
        "num.network.threads": "2",
        "num.io.threads": "2",
        "background.threads": "2",
        "num.partitions": "1",
        "default.replication.factor": "3",
        "min.insync.replicas": "2",
        "offsets.topic.replication.factor": "3",
        "offsets.topic.num.partitions": "6",
        "transaction.state.log.replication.factor": "3",
        "transaction.state.log.min.isr": "2",
        "transaction.state.log.num.partitions": "2",
        "share.coordinator.state.topic.replication.factor": "3",
        "share.coordinator.state.topic.min.isr": "2",
        "auto.create.topics.enable": "false",
        "delete.topic.enable": "true",
        "unclean.leader.election.enable": "false",
        "group.initial.rebalance.delay.ms": "0",
        "replica.lag.time.max.ms": "10000",
        "log.segment.bytes": str(64 * 1024 * 1024),
    }
    head = "# Rendered by the fault suite (hub.devtools.infra.kafka_cluster); edits are overwritten.\n"
    return head + "".join(f"{k}={v}\n" for k, v in props.items())


def initial_controllers(spec: ClusterSpec, directory_ids: dict[int, str]) -> str:
    """``--initial-controllers`` of ``kafka-storage format``: ``id@host:port:dir-id,…`` (pure)."""
    return ",".join(f"{n}@{spec.host}:{spec.controller_port(n)}:{directory_ids[n]}" for n in NODES)


class KafkaCluster:
    """Lifecycle of the three nodes: ``start()`` formats (first time) and starts every node
    and waits until all three are brokers; ``kill(n)`` (SIGKILL), ``start_node(n)``,
    ``leader_of(topic, partition)``, ``stop()`` (SIGTERM, then SIGKILL)."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    def _format(self, java: str) -> None:
        if all(is_formatted(self.spec.layout(n)) for n in NODES):
            return
        cluster_id = kafka_uuid()
        dirs = {n: kafka_uuid() for n in NODES}
        controllers = initial_controllers(self.spec, dirs)
        for n in NODES:
            layout = self.spec.layout(n)
            _run_tool(
                java,
                layout,
                "format",
                "-t",
                cluster_id,
                "-c",
                str(layout.properties),
                "--initial-controllers",
                controllers,
            )

    def _write_configs(self) -> None:
        for n in NODES:
            layout = self.spec.layout(n)
            layout.data.mkdir(parents=True, exist_ok=True)
            layout.logs.mkdir(parents=True, exist_ok=True)
            layout.properties.write_text(render_node_properties(self.spec, n))
            layout.log4j2.write_text(render_log4j2(layout))

    async def start(self) -> None:
        for n in NODES:
            for port in (self.spec.client_port(n), self.spec.controller_port(n)):
                if not port_is_free(self.spec.host, port):
                    raise InfraError(f"the fault cluster's port {self.spec.host}:{port} is in use")
        if not any(self.spec.libs.glob("*.jar")):
            raise InfraError(f"no Kafka jars in {self.spec.libs}: run `make setup` (hub infra setup) first")
        java = require_java()
        self._write_configs()
        await asyncio.to_thread(self._format, java)
        for n in NODES:
            self.start_node(n)
        await self.wait_brokers(3)

    def start_node(self, node: int) -> int:
        """Start ``node`` (no-op when it runs); returns its pid."""
        proc = self._procs.get(node)
        if proc is not None and proc.poll() is None:
            return proc.pid
        layout = self.spec.layout(node)
        java = require_java()
        cmd = [
            java,
            f"-Xmx{self.spec.heap}",
            "-Xms96m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={layout.log4j2}",
            f"-Dkafka.logs.dir={layout.logs}",
            "-cp",
            f"{layout.libs}/*",
            "kafka.Kafka",
            str(layout.properties),
        ]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(
            port_is_free(self.spec.host, p)
            for p in (self.spec.client_port(node), self.spec.controller_port(node))
        ):
            time.sleep(0.2)  # a just-killed node's ports
        with open(layout.jvm_out, "ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=layout.home,
                start_new_session=True,
                close_fds=True,
            )
        self._procs[node] = proc
        layout.pid_file.write_text(f"{proc.pid}\n")
        return proc.pid

    def pid(self, node: int) -> int | None:
        proc = self._procs.get(node)
        return proc.pid if proc is not None and proc.poll() is None else None

    def running(self) -> list[int]:
        return [n for n in NODES if self.pid(n) is not None]

    def kill(self, node: int) -> None:
        """SIGKILL ``node`` (no shutdown at all) and reap it."""
        proc = self._procs.get(node)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    async def wait_brokers(self, count: int, timeout: float = READY_TIMEOUT_S) -> None:
        """Wait until ``count`` brokers are registered and answer metadata."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for n in NODES:
                proc = self._procs.get(n)
                if proc is not None and proc.poll() is not None and proc.returncode not in (-9, 0, 143):
                    layout = self.spec.layout(n)
                    raise InfraError(
                        f"fault-cluster node {n} exited ({proc.returncode}):\n{tail(layout.server_log)}"
                    )
            try:
                if len(await self._brokers()) >= count:
                    return
            except Exception as exc:  # not up yet
                last = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.5)
        raise InfraError(f"the fault cluster did not get {count} brokers within {timeout:.0f}s ({last})")

    async def _admin_call(self, fn: str, *args: object) -> object:
        with quiet_client_logs():
            admin = KafkaClients(self.spec.kafka_settings()).admin("faults", request_timeout_ms=5000)
            try:
                await asyncio.wait_for(admin.start(), 10)
                return await asyncio.wait_for(getattr(admin, fn)(*args), 10)
            finally:
                with contextlib.suppress(Exception):
                    await admin.close()

    async def _brokers(self) -> list[int]:
        cluster = await self._admin_call("describe_cluster")
        assert isinstance(cluster, dict)
        return [int(b["node_id"]) for b in cluster.get("brokers", [])]

    async def leader_of(self, topic: str, partition: int = 0) -> int:
        """The node leading ``topic``/``partition`` now."""
        described = await self._admin_call("describe_topics", [topic])
        assert isinstance(described, list)
        for t in described:
            for p in t["partitions"]:
                if p["partition"] == partition and p["leader"] >= 0:
                    return int(p["leader"])
        raise InfraError(f"{topic}[{partition}] has no leader")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every node, SIGKILL what is left after ``timeout``."""
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for n, proc in self._procs.items():
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            self.spec.layout(n).pid_file.unlink(missing_ok=True)

    def kill_stale(self) -> None:
        """SIGKILL nodes a previous, crashed run of the suite left under ``home`` (by pid file,
        only when the process still runs this node's config)."""
        for n in NODES:
            layout = self.spec.layout(n)
            pid = read_pid(layout.pid_file)
            if (
                pid
                and is_alive(pid)
                and str(layout.properties)
                in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            ):
                os.kill(pid, signal.SIGKILL)
                wait_until_dead(pid, 10)
