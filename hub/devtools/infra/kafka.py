"""The local single-node Apache Kafka broker (KRaft combined mode: broker + controller).

Everything is derived from :class:`~hub.kernel.settings.Settings`, so a second, independent broker
(other ports, other ``state_dir``) is just another ``Settings`` — the durability test uses this.

Layout under ``settings.state_dir / "kafka"``::

    server.properties   rendered from settings on every start (pure: render_server_properties)
    log4j2.properties   broker logging to logs/server.log (pure: render_log4j2)
    data/               log.dirs (formatted once, with a random cluster id; survives restarts)
    logs/server.log     the broker's log; logs/kafka.out holds the JVM's stdout/stderr
    kafka.pid           pid of the detached JVM (stale files are detected and replaced)

Jars come from Maven Central via ``deploy/local/pom.xml`` into ``settings.cache_dir/kafka/libs``;
a stamp file records which pom and Kafka version filled the directory.

Invariants: ``up`` is idempotent (a healthy broker is left alone); a broker that died, even by
SIGKILL, is restarted on the same data dir so every acknowledged record is still there;
``down`` sends SIGTERM (controlled shutdown) and waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from aiokafka import TopicPartition

from hub.devtools.infra import InfraError
from hub.devtools.infra.kafka_security import (
    BROKER_SUBJECT,
    TlsLayout,
    controller_ssl_context,
    ensure_credentials,
    ensure_passwords,
    ensure_tls,
    write_private,
)
from hub.devtools.infra.proc import (
    async_file_lock,
    describe_pid,
    file_lock,
    is_alive,
    is_loopback,
    listener_pids,
    owned_pid,
    parse_host_port,
    port_is_free,
    tail,
    wait_until_dead,
)
from hub.kernel.kafka import KafkaClients
from hub.kernel.kafka_acl import ADMIN
from hub.kernel.settings import PROJECT_ROOT, Settings

POM = PROJECT_ROOT / "deploy" / "local" / "pom.xml"
MAIN_CLASS = "kafka.Kafka"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class KafkaLayout:
    """Paths of one local broker instance."""

    home: Path
    libs: Path

    @classmethod
    def of(cls, settings: Settings) -> KafkaLayout:
        return cls(home=settings.state_dir / "kafka", libs=settings.cache_dir / "kafka" / "libs")

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def properties(self) -> Path:
        return self.home / "server.properties"

    @property
    def log4j2(self) -> Path:
        return self.home / "log4j2.properties"

    @property
    def pid_file(self) -> Path:
        return self.home / "kafka.pid"

    @property
    def lock_file(self) -> Path:
        return self.home / ".lock"

    @property
    def server_log(self) -> Path:
        return self.logs / "server.log"

    @property
    def jvm_out(self) -> Path:
        return self.logs / "kafka.out"

    @property
    def credentials_stamp(self) -> Path:
        """Digest of the password files the broker's SCRAM credentials were written from
        (inside ``data/``: a fresh data dir gets its credentials written again)."""
        return self.data / ".hub-credentials"

    @property
    def stamp(self) -> Path:
        return self.libs / ".fetched"


@dataclass(frozen=True)
class Listeners:
    """Where the local broker listens: client port from ``kafka.bootstrap``, controller port
    from ``kafka.controller_port``, both on the bootstrap host."""

    host: str
    port: int
    controller_port: int

    @classmethod
    def of(cls, settings: Settings) -> Listeners:
        host, port = parse_host_port(settings.kafka.bootstrap, 9092)
        if port == settings.kafka.controller_port:
            raise InfraError(f"kafka.bootstrap port {port} equals kafka.controller_port; choose two ports")
        return cls(host=host, port=port, controller_port=settings.kafka.controller_port)


def is_managed(settings: Settings) -> bool:
    """True when ``kafka.bootstrap`` names this machine, so ``hub infra`` runs the broker.
    Any other host is an operator's cluster: we only probe it and apply topics."""
    host, _ = parse_host_port(settings.kafka.bootstrap, 9092)
    return is_loopback(host)


# --------------------------------------------------------------------------- pure rendering


def render_server_properties(settings: Settings, layout: KafkaLayout, admin_password: str) -> str:
    """The broker config for a single KRaft node (broker + controller in one JVM), secured:
    SASL_SSL (SCRAM-SHA-512) for clients, mutual TLS between broker and controller, the
    KRaft StandardAuthorizer with ``admin`` and the broker's certificate as super users
    (everyone else needs ACLs: :mod:`hub.kernel.kafka_acl`). The file holds the admin's
    password (the broker's own SCRAM login), so it is written with mode 0600.

    Single-node durability: internal topics have RF 1 / min ISR 1 (acks=all then means the
    leader's log); topics are only created by the catalogue (no auto-creation).
    """
    ls = Listeners.of(settings)
    host = f"[{ls.host}]" if ":" in ls.host else ls.host
    tls = TlsLayout.of(settings)
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"{host}:{ls.controller_port}",
        "listeners": f"SASL_SSL://{host}:{ls.port},CONTROLLER://{host}:{ls.controller_port}",
        "advertised.listeners": f"SASL_SSL://{host}:{ls.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "SASL_SSL",
        "listener.security.protocol.map": "CONTROLLER:SSL,SASL_SSL:SASL_SSL",
        # clients: TLS + SCRAM-SHA-512; the controller listener: mutual TLS (the broker's own
        # certificate, signed by the development CA, is the only one that gets in)
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{ADMIN}" password="{admin_password}";'
        ),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(tls.broker_pem),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(tls.ca_cert),
        "listener.name.controller.ssl.client.auth": "required",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN};User:{BROKER_SUBJECT}",
        "allow.everyone.if.no.acl.found": "false",
        "log.dirs": str(layout.data),
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "auto.create.topics.enable": "false",
        "delete.topic.enable": "true",
        "unclean.leader.election.enable": "false",
        "group.initial.rebalance.delay.ms": "0",
        "log.segment.bytes": str(256 * 1024 * 1024),
        "log.retention.check.interval.ms": "300000",
        # the compaction dedupe buffer is allocated at start-up (128 MiB by default); a small
        # development heap (TLS and SASL take their share) needs less
        "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
    }
    head = "# Rendered by `hub infra up` from hub settings; edits are overwritten.\n"
    return head + "".join(f"{k}={v}\n" for k, v in props.items())


def render_log4j2(layout: KafkaLayout) -> str:
    """log4j2 (properties syntax) writing the broker log to ``logs/server.log``, rolled by size."""
    log = layout.server_log
    return "\n".join(
        [
            "status = warn",
            "name = hub-kafka",
            "appender.file.type = RollingFile",
            "appender.file.name = file",
            f"appender.file.fileName = {log}",
            f"appender.file.filePattern = {log}.%i",
            "appender.file.layout.type = PatternLayout",
            "appender.file.layout.pattern = [%d] %p %m (%c)%n",
            "appender.file.policies.type = Policies",
            "appender.file.policies.size.type = SizeBasedTriggeringPolicy",
            "appender.file.policies.size.size = 20MB",
            "appender.file.strategy.type = DefaultRolloverStrategy",
            "appender.file.strategy.max = 5",
            "rootLogger.level = INFO",
            "rootLogger.appenderRef.file.ref = file",
            "logger.request.name = kafka.request.logger",
            "logger.request.level = WARN",
            "logger.statechange.name = state.change.logger",
            "logger.statechange.level = WARN",
            "",
        ]
    )


def java_command(settings: Settings, layout: KafkaLayout, java: str) -> list[str]:
    """The JVM command line of the broker (modest heap for small machines)."""
    return [
        java,
        f"-Xmx{settings.kafka.heap}",
        "-Xms128m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={layout.log4j2}",
        f"-Dkafka.logs.dir={layout.logs}",
        "-cp",
        f"{layout.libs}/*",
        MAIN_CLASS,
        str(layout.properties),
    ]


def fetch_stamp(settings: Settings) -> str:
    """What the jar directory must have been fetched for: the pom's content and the version."""
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:16]
    return f"kafka={settings.kafka.version} pom={digest}"


# --------------------------------------------------------------------------- tools & jars


def require_java() -> str:
    java = shutil.which("java")
    if not java:
        raise InfraError(
            "java was not found on PATH. Kafka needs a Java 17+ runtime: "
            "apt-get install -y openjdk-17-jre-headless (or run .ci/run, which installs it)."
        )
    return java


def ensure_jars(settings: Settings) -> Path:
    """Fetch the broker jars with Maven unless ``libs`` already holds this pom's fetch."""
    layout = KafkaLayout.of(settings)
    stamp = fetch_stamp(settings)
    if layout.stamp.exists() and layout.stamp.read_text().strip() == stamp and any(layout.libs.glob("*.jar")):
        return layout.libs
    mvn = shutil.which("mvn")
    if not mvn:
        raise InfraError(
            f"the Kafka jars are missing from {layout.libs} and mvn was not found on PATH; "
            "apt-get install -y maven (or run .ci/run, which installs it)."
        )
    staging = layout.libs.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(POM),
        f"-Dkafka.version={settings.kafka.version}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any(staging.glob("*.jar")):
        out = (result.stdout + result.stderr).strip()[-3000:]
        raise InfraError(f"fetching the Kafka jars with Maven failed ({' '.join(cmd)}):\n{out}")
    (staging / ".fetched").write_text(stamp + "\n")
    old = layout.libs.with_name("libs.old")
    shutil.rmtree(old, ignore_errors=True)
    if layout.libs.exists():
        layout.libs.rename(old)
    staging.rename(layout.libs)
    shutil.rmtree(old, ignore_errors=True)
    return layout.libs


def _run_tool(java: str, layout: KafkaLayout, *args: str) -> str:
    cmd = [
        java,
        "-Xmx256m",
        f"-Dlog4j2.configurationFile={layout.log4j2}",
        "-cp",
        f"{layout.libs}/*",
        "kafka.tools.StorageTool",
        *args,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InfraError(
            f"kafka StorageTool {' '.join(args)} failed:\n{(result.stdout + result.stderr).strip()[-3000:]}"
        )
    return result.stdout


def is_formatted(layout: KafkaLayout) -> bool:
    return (layout.data / "meta.properties").exists()


def format_storage(java: str, layout: KafkaLayout) -> str:
    """Format ``data/`` for a standalone KRaft quorum with a fresh cluster id (first start only)."""
    lines = [ln.strip() for ln in _run_tool(java, layout, "random-uuid").splitlines() if ln.strip()]
    if not lines:
        raise InfraError("kafka StorageTool random-uuid printed no cluster id")
    cluster_id = lines[-1]
    _run_tool(java, layout, "format", "--standalone", "-t", cluster_id, "-c", str(layout.properties))
    return cluster_id


# --------------------------------------------------------------------------- probing


@dataclass
class KafkaStatus:
    """Health of the configured Kafka (``managed``: a local broker run by ``hub infra``)."""

    bootstrap: str
    managed: bool
    reachable: bool
    pid: int | None = None
    cluster_id: str | None = None
    brokers: int = 0
    controller_id: int | None = None
    error: str | None = None
    log: str | None = None

    @property
    def healthy(self) -> bool:
        return self.reachable and self.brokers > 0

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "healthy": self.healthy}


@contextlib.contextmanager
def quiet_client_logs() -> Iterator[None]:
    """Silence aiokafka's connection-refused warnings while we poll on purpose."""
    logger = logging.getLogger("aiokafka")
    before = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(before)


async def probe(settings: Settings, timeout: float = 5.0) -> KafkaStatus:
    """One metadata request against ``kafka.bootstrap`` (never raises)."""
    with quiet_client_logs():
        return await _probe(settings, timeout)


async def _probe(settings: Settings, timeout: float) -> KafkaStatus:
    managed = is_managed(settings)
    layout = KafkaLayout.of(settings)
    status = KafkaStatus(
        bootstrap=settings.kafka.bootstrap,
        managed=managed,
        reachable=False,
        pid=owned_pid(layout.pid_file, str(layout.properties)) if managed else None,
        log=str(layout.server_log) if managed else None,
    )
    admin = KafkaClients(settings.kafka).admin("infra", request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        cluster = await asyncio.wait_for(admin.describe_cluster(), timeout)
        status.reachable = True
        status.cluster_id = cluster.get("cluster_id")
        status.brokers = len(cluster.get("brokers", []))
        status.controller_id = cluster.get("controller_id")
    except Exception as exc:  # any failure means "not healthy"; the message says why
        text, name = str(exc), type(exc).__name__
        status.error = text if text.startswith(name) else f"{name}: {text}" if text else name
    finally:
        with contextlib.suppress(Exception):  # closing a never-started client may fail
            await asyncio.wait_for(admin.close(), timeout)
    return status


async def partitions_online(settings: Settings, timeout: float = 10.0) -> bool:
    """True when every partition of every topic has a leader that answers a ListOffsets
    request. After an unclean stop the broker registers before it has recovered its logs;
    until then clients would see NOT_LEADER errors, so start-up is not finished."""
    with quiet_client_logs():
        clients = KafkaClients(settings.kafka)
        admin = clients.admin("infra", request_timeout_ms=int(timeout * 1000))
        consumer = clients.consumer("infra", request_timeout_ms=int(timeout * 1000))
        try:
            await asyncio.wait_for(admin.start(), timeout)
            topics = await asyncio.wait_for(admin.describe_topics(), timeout)
            tps = []
            for topic in topics:
                for part in topic["partitions"]:
                    if topic["error_code"] or part["error_code"] or part["leader"] < 0:
                        return False
                    tps.append(TopicPartition(topic["topic"], part["partition"]))
            if not tps:
                return True
            await asyncio.wait_for(consumer.start(), timeout)
            await asyncio.wait_for(consumer.end_offsets(tps), timeout)
            return True
        except Exception:  # not ready yet, whatever the reason
            return False
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
            with contextlib.suppress(Exception):
                await admin.close()


async def _await_ready(settings: Settings, layout: KafkaLayout, pid: int, *, started: bool) -> KafkaStatus:
    """Wait until the broker answers metadata and — when we just ``started`` it — until every
    partition is online again (log recovery after a crash)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    last: KafkaStatus | None = None
    while time.monotonic() < deadline:
        # liveness by pid, not by command line: right after exec /proc/<pid>/cmdline can still
        # be empty for a moment, and the pid was verified as ours before we got here
        if not is_alive(pid):
            raise InfraError(
                f"the Kafka broker (pid {pid}) exited during start-up. Last lines of "
                f"{layout.server_log}:\n{tail(layout.server_log)}\n--- {layout.jvm_out}:\n"
                f"{tail(layout.jvm_out, 10)}"
            )
        last = await probe(settings, timeout=3.0)
        if last.healthy and (not started or await partitions_online(settings)):
            return last
        await asyncio.sleep(0.5)
    raise InfraError(
        f"the Kafka broker (pid {pid}) did not answer a metadata request on {settings.kafka.bootstrap} "
        f"within {READY_TIMEOUT_S:.0f}s (last error: {last.error if last else '-'}). "
        f"See {layout.server_log}."
    )


# --------------------------------------------------------------------------- lifecycle


async def _await_controller(settings: Settings, layout: KafkaLayout, pid: int) -> None:
    """Wait until the controller listener accepts the broker's certificate (the credentials
    are written through it before any client can log in)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    ctx = controller_ssl_context(settings)
    host = Listeners.of(settings).host
    while True:
        if not is_alive(pid):
            raise InfraError(
                f"the Kafka broker (pid {pid}) exited during start-up. Last lines of "
                f"{layout.server_log}:\n{tail(layout.server_log)}\n--- {layout.jvm_out}:\n"
                f"{tail(layout.jvm_out, 10)}"
            )
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, settings.kafka.controller_port, ssl=ctx), 3.0
            )
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
        except (OSError, TimeoutError, ssl.SSLError):
            if time.monotonic() > deadline:
                raise InfraError(
                    f"the Kafka controller listener on {host}:{settings.kafka.controller_port} did not "
                    "accept "
                    f"the broker's certificate within {READY_TIMEOUT_S:.0f}s. See {layout.server_log}."
                ) from None
            await asyncio.sleep(0.3)



def _check_ports(listeners: Listeners, grace: float = 5.0) -> None:
    """Both ports must be bindable; a port held a moment longer by a just-killed process gets
    ``grace`` seconds to be released."""
    for name, port in (("client", listeners.port), ("controller", listeners.controller_port)):
        deadline = time.monotonic() + grace
        while not port_is_free(listeners.host, port) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not port_is_free(listeners.host, port):
            holders = ", ".join(describe_pid(p) for p in listener_pids(port)) or "unknown process"
            raise InfraError(
                f"cannot start Kafka: the {name} port {listeners.host}:{port} is already in use by "
                f"{holders}. Stop it, or choose other ports (HUB_KAFKA__BOOTSTRAP / "
                f"HUB_KAFKA__CONTROLLER_PORT)."
            )


def _spawn(settings: Settings, layout: KafkaLayout, java: str) -> int:
    layout.logs.mkdir(parents=True, exist_ok=True)
    with open(layout.jvm_out, "ab") as out:
        proc = subprocess.Popen(
            java_command(settings, layout, java),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=layout.home,
            start_new_session=True,  # detached: survives the hub command and its terminal
            close_fds=True,
        )
    layout.pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


async def up(settings: Settings) -> KafkaStatus:
    """Ensure the configured Kafka answers; start the local broker when it is ours and down.

    Idempotent. Raises :class:`InfraError` with an actionable message on failure.
    """
    if not is_managed(settings):
        status = await probe(settings, timeout=10.0)
        if not status.healthy:
            raise InfraError(
                f"the configured Kafka cluster {settings.kafka.bootstrap} is unreachable: {status.error}"
            )
        return status
    layout = KafkaLayout.of(settings)
    layout.home.mkdir(parents=True, exist_ok=True)
    async with async_file_lock(layout.lock_file):
        pid = owned_pid(layout.pid_file, str(layout.properties))
        if pid is not None:
            # a new principal or a rotated password file reaches the running broker
            await ensure_credentials(settings, layout.credentials_stamp)
            return await _await_ready(settings, layout, pid, started=False)
        layout.pid_file.unlink(missing_ok=True)  # stale (crash, SIGKILL, reboot)
        listeners = Listeners.of(settings)
        java = require_java()
        await asyncio.to_thread(ensure_jars, settings)
        await asyncio.to_thread(_check_ports, listeners)
        layout.data.mkdir(parents=True, exist_ok=True)
        passwords = ensure_passwords(settings)
        await asyncio.to_thread(ensure_tls, settings)
        props = render_server_properties(settings, layout, passwords[ADMIN])
        write_private(layout.properties, props.encode())
        layout.log4j2.write_text(render_log4j2(layout))
        if not is_formatted(layout):
            await asyncio.to_thread(format_storage, java, layout)
        pid = _spawn(settings, layout, java)
        await _await_controller(settings, layout, pid)
        await ensure_credentials(settings, layout.credentials_stamp)
        return await _await_ready(settings, layout, pid, started=True)


def down(settings: Settings, timeout: float = STOP_TIMEOUT_S) -> bool:
    """Stop the local broker with SIGTERM (controlled shutdown) and wait; SIGKILL only after
    ``timeout``. Returns True if a broker was running. External clusters are never touched."""
    if not is_managed(settings):
        return False
    layout = KafkaLayout.of(settings)
    with file_lock(layout.lock_file):
        pid = owned_pid(layout.pid_file, str(layout.properties))
        if pid is None:
            layout.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        if not wait_until_dead(pid, timeout):
            os.kill(pid, signal.SIGKILL)
            wait_until_dead(pid, 10)
        layout.pid_file.unlink(missing_ok=True)
        return True


def kill(settings: Settings) -> int | None:
    """SIGKILL the local broker without any shutdown (tests of crash durability only)."""
    layout = KafkaLayout.of(settings)
    pid = owned_pid(layout.pid_file, str(layout.properties))
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
        wait_until_dead(pid, 10)
    return pid
