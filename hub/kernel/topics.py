"""Apply the topic catalogue (:func:`schemas.topics.catalogue`) to the configured cluster.

Missing topics are created with the catalogue's partitions, replication factor and config.
Existing topics are never altered: their partition count, replication factor and every
config the catalogue names (retention, cleanup policy, min ISR, ...) are compared with the
catalogue and each difference is reported as drift, so an operator decides — the hub
never silently runs on a topic that would, say, delete facts after seven days.

The comparison is pure (:func:`diff_topic`); :func:`ensure_topics` is the I/O shell.

:func:`append_health` says whether the log takes appends now (every fact topic partition
led, with enough in-sync replicas; :func:`append_problems` is the pure check): what
``/healthz`` and ``hub health`` report when brokers are down.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import asdict, dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from hub.kernel.errors import InfraError
from hub.kernel.kafka import KafkaClients
from hub.kernel.kafka_acl import apply_acls, namespace_acls
from hub.kernel.settings import Settings
from schemas.topics import TopicSpec, catalogue, fact_topics

TOPIC_ALREADY_EXISTS = 36
UNKNOWN_TOPIC_OR_PARTITION = 3
READY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class TopicDrift:
    """One way an existing topic differs from the catalogue."""

    topic: str
    setting: str  # "partitions", "replication.factor" or a topic config name
    expected: str
    actual: str

    def __str__(self) -> str:
        return f"{self.topic}: {self.setting} is {self.actual!r}, the catalogue says {self.expected!r}"


@dataclass
class TopicReport:
    """Outcome of applying the catalogue: what was created, what already matched, what drifted."""

    bootstrap: str
    prefix: str
    created: list[str] = field(default_factory=list)
    matching: list[str] = field(default_factory=list)
    drift: list[TopicDrift] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: ACL rules of the namespace's principals ensured (None: the broker runs no authorizer)
    acls: int | None = 0

    @property
    def ok(self) -> bool:
        return not self.drift and not self.errors

    def to_dict(self) -> dict[str, object]:
        return {
            "bootstrap": self.bootstrap,
            "prefix": self.prefix,
            "ok": self.ok,
            "created": self.created,
            "matching": self.matching,
            "drift": [asdict(d) for d in self.drift],
            "errors": self.errors,
            "acls": self.acls,
        }


def catalogue_for(settings: Settings) -> list[TopicSpec]:
    """The catalogue with this deployment's prefix, partitions, RF and min ISR."""
    k = settings.kafka
    return catalogue(k.topic_prefix, k.partitions, k.replication_factor, k.min_insync_replicas)


def diff_topic(
    spec: TopicSpec, partitions: int, replication_factor: int, configs: dict[str, str]
) -> list[TopicDrift]:
    """Differences between ``spec`` and an existing topic's effective state (pure).

    Only the configs the catalogue names are compared; an absent config counts as drift.
    """
    drift = []
    if partitions != spec.partitions:
        drift.append(TopicDrift(spec.name, "partitions", str(spec.partitions), str(partitions)))
    if replication_factor != spec.replication_factor:
        drift.append(
            TopicDrift(spec.name, "replication.factor", str(spec.replication_factor), str(replication_factor))
        )
    for name, expected in sorted(spec.config.items()):
        actual = configs.get(name)
        if actual != expected:
            drift.append(TopicDrift(spec.name, name, expected, "<absent>" if actual is None else actual))
    return drift


def _admin(settings: Settings) -> AIOKafkaAdminClient:
    return KafkaClients(settings.kafka).admin("topics", request_timeout_ms=30000)


async def _apply_acls(admin: AIOKafkaAdminClient, settings: Settings) -> int | None:
    """The namespace's ACLs (:func:`hub.kernel.kafka_acl.namespace_acls`), created with the
    topics; None on a broker without an authorizer."""
    acls = namespace_acls(settings.kafka.topic_prefix, settings.projections.consumer_group)
    try:
        applied = await apply_acls(admin, acls)
    except InfraError as exc:
        prefix = settings.kafka.topic_prefix
        raise InfraError(f"{exc} (prefix {prefix}; only the admin principal may)") from None
    return len(acls) if applied else None


async def _describe(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, tuple[int, int, bool]]:
    """topic → (partitions, replication factor, every partition has a leader), existing topics only."""
    out = {}
    for topic in await admin.describe_topics(names):
        if topic["error_code"] == UNKNOWN_TOPIC_OR_PARTITION:
            continue
        parts = topic["partitions"]
        rf = min((len(p["replicas"]) for p in parts), default=0)
        led = bool(parts) and all(p["leader"] >= 0 and p["error_code"] == 0 for p in parts)
        out[topic["topic"]] = (len(parts), rf, led)
    return out


async def _configs(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    if not names:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
    out: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        for res in response.to_object()["resources"]:
            if res["error_code"]:
                raise InfraError(f"describe configs of {res['resource_name']} failed: {res['error_message']}")
            out[res["resource_name"]] = {
                e["config_names"]: e["config_value"]
                for e in res["config_entries"]
                if e["config_value"] is not None
            }
    return out


async def ensure_topics(settings: Settings, *, create: bool = True) -> TopicReport:
    """Create missing catalogue topics and the namespace's ACLs (unless ``create`` is False:
    then only check, as a non-admin principal may) and report drift of existing ones.
    Raises :class:`InfraError` when the cluster is unreachable; creation
    errors other than "already exists" are listed in ``report.errors``.

    On return every created topic has a leader for each partition (producers can use it).
    """
    specs = catalogue_for(settings)
    report = TopicReport(bootstrap=settings.kafka.bootstrap, prefix=settings.kafka.topic_prefix)
    admin = _admin(settings)
    try:
        await admin.start()
    except Exception as exc:
        raise InfraError(f"cannot reach Kafka at {settings.kafka.bootstrap}: {exc}") from exc
    try:
        names = [s.name for s in specs]
        existing = await _describe(admin, names)
        missing = [s for s in specs if s.name not in existing]
        if missing and create:
            response = await admin.create_topics(
                [
                    NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=dict(s.config))
                    for s in missing
                ]
            )
            for err in response.to_object()["topic_errors"]:
                if err["error_code"] == 0:
                    report.created.append(err["topic"])
                elif err["error_code"] != TOPIC_ALREADY_EXISTS:  # a concurrent caller won the race
                    report.errors.append(
                        f"{err['topic']}: create failed ({err['error_code']}): {err['error_message']}"
                    )
            existing = await _await_leaders(admin, names, report.created)
        elif missing:
            report.errors.extend(
                f"{s.name}: missing (the admin principal creates it: hub infra topics)" for s in missing
            )
        if create:
            report.acls = await _apply_acls(admin, settings)
        configs = await _configs(admin, [n for n in names if n in existing and n not in report.created])
        for spec in specs:
            if spec.name not in configs:
                continue
            partitions, rf, _ = existing[spec.name]
            drift = diff_topic(spec, partitions, rf, configs[spec.name])
            report.drift.extend(drift)
            if not drift:
                report.matching.append(spec.name)
    finally:
        await admin.close()
    return report


async def _await_leaders(
    admin: AIOKafkaAdminClient, names: list[str], created: list[str]
) -> dict[str, tuple[int, int, bool]]:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        existing = await _describe(admin, names)
        if all(t in existing and existing[t][2] for t in created):
            return existing
        if time.monotonic() > deadline:
            waiting = [t for t in created if not (t in existing and existing[t][2])]
            raise InfraError(
                f"created topics have no leader after {READY_TIMEOUT_S:.0f}s: {', '.join(waiting)}"
            )
        await asyncio.sleep(0.2)


# --------------------------------------------------------------------------- append health


@dataclass(frozen=True)
class AppendHealth:
    """Whether the log takes appends now: every fact topic partition has a leader and at
    least ``min.insync.replicas`` in-sync replicas (else the producer's acknowledgements
    never come and every append ends in ``AckTimeout``); ``problems`` says where not."""

    available: bool
    problems: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {"available": self.available, "problems": list(self.problems)}


def append_problems(described: list[dict], min_insync: int, limit: int = 10) -> list[str]:
    """Why appends would block, from admin ``describe_topics`` results (pure): a missing
    topic, a partition without a leader, fewer in-sync replicas than ``min_insync``. At
    most ``limit`` problems, then a count of the rest."""
    problems = []
    for topic in described:
        name = topic["topic"]
        if topic["error_code"] == UNKNOWN_TOPIC_OR_PARTITION or not topic["partitions"]:
            problems.append(f"{name}: topic missing")
            continue
        for p in sorted(topic["partitions"], key=lambda p: p["partition"]):
            where = f"{name}[{p['partition']}]"
            if p["leader"] < 0 or p["error_code"]:
                problems.append(f"{where}: no leader")
            elif len(p["isr"]) < min_insync:
                problems.append(f"{where}: {len(p['isr'])} in-sync replica(s), {min_insync} required")
    if len(problems) > limit:
        problems = [*problems[:limit], f"… and {len(problems) - limit} more"]
    return problems


async def append_health(settings: Settings, timeout_s: float = 5.0) -> AppendHealth:
    """Ask the cluster whether the namespace's fact topics take appends (a metadata
    request, bounded by ``timeout_s``): what ``/healthz`` and ``hub health`` report. A
    cluster that cannot be reached is unavailable too."""
    k = settings.kafka
    names = fact_topics(k.topic_prefix)
    admin = KafkaClients(k).admin("health", request_timeout_ms=int(timeout_s * 1000))
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            described = await admin.describe_topics(names)
    except Exception as exc:  # unreachable, refused, timed out: no broker takes appends
        return AppendHealth(False, (f"no broker answered within {timeout_s:g}s ({type(exc).__name__})",))
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    problems = append_problems(described, k.min_insync_replicas)
    return AppendHealth(not problems, tuple(problems))
