"""Which Kafka cluster a core schema's state belongs to.

The log's PostgreSQL state (``<core>.event_index``, connector cursors, seals, deliveries) is
only meaningful together with the Kafka log it indexes. Paired with another cluster's log —
PostgreSQL restored from another cluster's backup, the hub pointed at a new cluster, a
second checkout sharing one PostgreSQL — it silently lies: every event looks like a
duplicate, every feed looks read, nothing is appended, and verification fails.

So each core schema is bound to one Kafka cluster id (``<core>.kafka_binding``, migration
``0002``) at first use, and :meth:`hub.kernel.runtime.Runtime.open` refuses another cluster with
:class:`ClusterMismatchError`. A state written before the binding existed is adopted only if
it fits the cluster: no indexed offset may lie at or beyond the end of its partition (a
log that never held those offsets cannot be the one indexed). The deliberate move to a new
cluster is ``hub infra rebind --yes`` (:func:`rebind`).

:func:`decide` is the pure decision; the rest reads the cluster id, the recorded binding
and (for unbound state only) the index's positions and the topics' end offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

import asyncpg

from hub.kernel.db import CORE_MIGRATIONS, Executor, apply_sets, check_schema_name
from hub.kernel.errors import InfraError
from hub.kernel.kafka import KafkaClients
from hub.kernel.kafka_io import end_offsets, topic_partitions
from hub.kernel.settings import Settings

Position = tuple[str, int]  # (topic, partition)


class Action(Enum):
    """What to do with a core schema's binding on open."""

    KEEP = "keep"  # bound to this cluster
    BIND = "bind"  # not bound yet, and its state fits this cluster: record the binding
    REFUSE = "refuse"  # bound to (or indexing) another cluster's log


@dataclass(frozen=True)
class Decision:
    action: Action
    recorded: str | None
    actual: str
    reason: str = ""


def decide(
    recorded: str | None,
    actual: str,
    *,
    indexed: Mapping[Position, int] | None = None,
    ends: Mapping[Position, int] | None = None,
) -> Decision:
    """The binding decision (pure).

    ``recorded``: the cluster id in ``kafka_binding`` (None: not bound yet); ``actual``: the
    connected cluster's id. For unbound state, ``indexed`` is the highest offset the event
    index holds per partition and ``ends`` the cluster's log-end offset per partition
    (missing: the partition does not exist, end 0). Unbound state is adopted only when every
    indexed offset is below its partition's end."""
    if not actual:
        raise ValueError("the Kafka cluster did not report a cluster id")
    if recorded is not None:
        if recorded == actual:
            return Decision(Action.KEEP, recorded, actual)
        return Decision(Action.REFUSE, recorded, actual, f"it is bound to Kafka cluster {recorded}")
    ends = ends or {}
    beyond = sorted((pos, offset) for pos, offset in (indexed or {}).items() if offset >= ends.get(pos, 0))
    if not beyond:
        return Decision(Action.BIND, None, actual)
    (topic, partition), offset = beyond[0]
    end = ends.get((topic, partition), 0)
    return Decision(
        Action.REFUSE,
        None,
        actual,
        f"its event index holds offsets this cluster's log never had ({len(beyond)} partition(s), "
        f"e.g. {topic}[{partition}] indexed up to offset {offset}, log ends at {end})",
    )


class ClusterMismatchError(InfraError):
    """The core schema's state belongs to another Kafka cluster than the connected one."""

    def __init__(self, schema: str, bootstrap: str, decision: Decision) -> None:
        self.schema, self.bootstrap, self.decision = schema, bootstrap, decision
        recorded = decision.recorded or "an unknown cluster (state written before bindings existed)"
        super().__init__(
            f"PostgreSQL schema {schema!r} holds the state of Kafka cluster {recorded}, but "
            f"{bootstrap} is cluster {decision.actual}: {decision.reason}. Pairing them would take "
            "new events for duplicates and feeds for read. Production: point kafka.bootstrap at the "
            "right cluster, or restore PostgreSQL and Kafka from matching backups; for a deliberate "
            "move to this cluster run `hub infra rebind --yes` (docs/operators.md). "
            "Demo: `hub demo --reset`."
        )


# --------------------------------------------------------------------------- I/O


async def cluster_id(settings: Settings, timeout: float = 15.0) -> str:
    """The connected Kafka cluster's id (DescribeCluster)."""
    admin = KafkaClients(settings.kafka).admin("binding", request_timeout_ms=int(timeout * 1000))
    await asyncio.wait_for(admin.start(), timeout)
    try:
        described = await asyncio.wait_for(admin.describe_cluster(), timeout)
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    cid = described.get("cluster_id")
    if not cid:
        raise RuntimeError(f"Kafka at {settings.kafka.bootstrap} did not report a cluster id")
    return str(cid)


async def recorded_cluster(conn: Executor, schema: str) -> str | None:
    """The cluster id ``schema`` is bound to; None when unbound or the table does not exist."""
    schema = check_schema_name(schema)
    exists = await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".kafka_binding')
    if exists is None:
        return None
    return await conn.fetchval(f'SELECT cluster_id FROM "{schema}".kafka_binding')


async def indexed_positions(conn: Executor, schema: str) -> dict[Position, int]:
    """The highest offset per partition in ``schema``'s event index (empty without an index)."""
    schema = check_schema_name(schema)
    if await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".event_index') is None:
        return {}
    if await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".event_index_names') is None:
        rows = await conn.fetch(  # the layout before core migration 0004 (text topics)
            f'SELECT topic, "partition", max("offset") AS o FROM "{schema}".event_index '
            'WHERE "offset" IS NOT NULL GROUP BY topic, "partition"'
        )
        return {(r["topic"], r["partition"]): r["o"] for r in rows}
    rows = await conn.fetch(
        f'SELECT n.name AS topic, e."partition", max(e."offset") AS o FROM "{schema}".event_index e '
        f'JOIN "{schema}".event_index_names n ON n.code = e.topic GROUP BY n.name, e."partition"'
    )
    return {(r["topic"], r["partition"]): r["o"] for r in rows}


async def inspect(pool: asyncpg.Pool, settings: Settings, actual: str | None = None) -> Decision:
    """Decide (read only) whether ``settings.core_schema``'s state may be used with the
    connected cluster."""
    schema = settings.core_schema
    actual = actual or await cluster_id(settings)
    recorded = await recorded_cluster(pool, schema)
    if recorded is not None:
        return decide(recorded, actual)
    indexed = await indexed_positions(pool, schema)
    if not indexed:
        return decide(None, actual)
    clients = KafkaClients(settings.kafka)
    existing = await topic_partitions(clients, sorted({t for t, _ in indexed}))
    ends = await end_offsets(clients, existing)
    return decide(None, actual, indexed=indexed, ends={(tp.topic, tp.partition): o for tp, o in ends.items()})


async def ensure_bound(pool: asyncpg.Pool, settings: Settings) -> Decision:
    """Bind ``settings.core_schema`` (migrated) to the connected cluster at first use, or
    confirm it is bound to it; raises :class:`ClusterMismatchError` otherwise. Two processes
    binding at once agree: the first insert wins and the second is checked against it."""
    decision = await inspect(pool, settings)
    if decision.action is Action.BIND:
        schema = check_schema_name(settings.core_schema)
        await pool.execute(
            f'INSERT INTO "{schema}".kafka_binding (cluster_id, bootstrap) VALUES ($1, $2) '
            "ON CONFLICT (singleton) DO NOTHING",
            decision.actual,
            settings.kafka.bootstrap,
        )
        winner = decide(await recorded_cluster(pool, schema), decision.actual)
        if winner.action is Action.REFUSE:  # a concurrent opener bound it to another cluster
            decision = winner
    if decision.action is Action.REFUSE:
        raise ClusterMismatchError(settings.core_schema, settings.kafka.bootstrap, decision)
    return decision


async def rebind(pool: asyncpg.Pool, settings: Settings) -> tuple[str | None, str]:
    """Deliberately bind ``settings.core_schema`` to the connected cluster (a planned move
    of the log to a new cluster whose topics were migrated with it). Returns (previous id,
    new id). The schema must be migrated (``Runtime.open`` does it; so does this)."""
    await apply_sets(pool, (CORE_MIGRATIONS,), "core", settings.core_schema)
    schema = check_schema_name(settings.core_schema)
    actual = await cluster_id(settings)
    previous = await recorded_cluster(pool, schema)
    await pool.execute(
        f'INSERT INTO "{schema}".kafka_binding (cluster_id, bootstrap, previous_cluster_id) '
        "VALUES ($1, $2, $3) ON CONFLICT (singleton) DO UPDATE SET cluster_id = EXCLUDED.cluster_id, "
        "bootstrap = EXCLUDED.bootstrap, bound_at = now(), "
        "previous_cluster_id = EXCLUDED.previous_cluster_id",
        actual,
        settings.kafka.bootstrap,
        previous,
    )
    return previous, actual
