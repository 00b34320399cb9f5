"""Only facts the hub appended are folded: the check every consuming worker runs on a
record before it uses it, and the quarantine for the records that fail it.

:class:`RecordGuard` accepts a record when

- it carries a valid record MAC under an accepted key (:mod:`hub.kernel.recordmac`), or
- it was written before MACs (no MAC headers, offset below its partition's cut-over
  offset in ``<core>.record_mac_cutover``) and the event index holds its event id
  (``ce_id``) at exactly that topic, partition and offset — a record an outsider produced
  can never sit at the offset the hub recorded for its own record.

Anything else — no MAC after the cut-over, an invalid MAC, a MAC copied from another
record, a retired or unknown key id, a pre-MAC record the index does not confirm — is
refused with a PHI-free reason. The consumer then calls :meth:`Quarantine.put`: the record
becomes a dead letter of family ``quarantine`` (topic ``<prefix>.deadletter.quarantine``,
raw bytes sealed: a forged record may still carry PHI), ``hub_records_quarantined_total``
grows (an alert rule fires on it), and the consumer moves past its offset without folding
it or basing any disclosure on it. The dead-letter id depends only on the record's
position and bytes, so several consumers quarantining one record make one dead letter.

The cut-over is recorded once per namespace (:func:`record_cutover`, called by the
composition root when a process opens): the end offset of every fact partition that
exists at that moment. A log that starts empty (every test, the demo, a new deployment)
records zeros, so from its first record on everything needs a MAC.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg

from hub.kernel import metrics
from hub.kernel.db import MigrationSet
from hub.kernel.deadletters import build_dead_letter
from hub.kernel.kafka import KafkaClients
from hub.kernel.kafka_io import end_offsets, topic_partitions
from hub.kernel.log import event_key
from hub.kernel.recordmac import MacKeys, RecordLike
from schemas.topics import fact_topics

log = logging.getLogger(__name__)

#: ``<core>.record_mac_cutover``, in the namespace's core schema
RECORD_MAC_MIGRATIONS = MigrationSet(
    "record-mac", Path(__file__).resolve().parent / "migrations" / "record_mac", "core"
)
QUARANTINE_SOURCE = "hub/quarantine"
NOT_INDEXED = "pre-MAC record not in the event index at its offset"


def record_ref(rec: Any) -> str:
    return f"{rec.topic}[{rec.partition}]@{rec.offset}"


def header(rec: RecordLike, name: str) -> str | None:
    for n, v in rec.headers or ():
        if n == name:
            return bytes(v or b"").decode("utf-8", errors="replace")
    return None


async def record_cutover(pool: asyncpg.Pool, schema: str, clients: KafkaClients, prefix: str) -> int:
    """Record the cut-over offsets of ``prefix``'s fact partitions once (a namespace that has
    them already is left alone). Returns the number of partitions recorded now."""
    if await pool.fetchval(f"SELECT EXISTS (SELECT 1 FROM {schema}.record_mac_cutover)"):
        return 0
    tps = await topic_partitions(clients, fact_topics(prefix))
    ends = await end_offsets(clients, tps) if tps else {}
    result = await pool.execute(
        f"""INSERT INTO {schema}.record_mac_cutover (topic, "partition", before_offset)
            SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[])
            ON CONFLICT DO NOTHING""",
        [tp.topic for tp in ends], [tp.partition for tp in ends], list(ends.values()),
    )
    recorded = int(result.split()[-1])
    if any(ends.values()):
        log.warning("record MACs: %d fact partition(s) hold records written before MACs; "
                    "they are folded only where the event index confirms them", recorded)
    return recorded


class RecordGuard:
    """Decides which consumed records may be used (see the module docstring). One per
    consumer; the cut-over offsets are read once, on first use."""

    def __init__(self, keys: MacKeys, pool: asyncpg.Pool | None, schema: str) -> None:
        self.keys = keys
        self.pool = pool
        self.schema = schema
        self._cutover: dict[tuple[str, int], int] | None = None

    async def _cutovers(self) -> dict[tuple[str, int], int]:
        if self._cutover is None:
            if self.pool is None:
                self._cutover = {}
            else:
                try:
                    rows = await self.pool.fetch(
                        f'SELECT topic, "partition", before_offset FROM {self.schema}.record_mac_cutover'
                    )
                except asyncpg.UndefinedTableError:  # a runtime without the set: nothing is legacy
                    rows = []
                self._cutover = {(r["topic"], r["partition"]): r["before_offset"] for r in rows}
        return self._cutover

    async def check(self, records: Sequence[Any]) -> list[str | None]:
        """One verdict per record, in order: None to use it, else the reason to quarantine it.
        At most one PostgreSQL query per call (for pre-MAC records only)."""
        verdicts = [self.keys.verify_record(rec) for rec in records]
        legacy = [i for i, v in enumerate(verdicts) if v == "missing MAC"]
        if not legacy:
            return verdicts
        cutover = await self._cutovers()
        below = [i for i in legacy
                 if records[i].offset < cutover.get((records[i].topic, records[i].partition), 0)]
        if below and self.pool is not None:
            candidates = [(i, eid) for i in below if (eid := header(records[i], "ce_id"))]
            rows = await self.pool.fetch(
                f"""SELECT u.i FROM unnest($1::int[], $2::uuid[], $3::text[], $4::int[], $5::bigint[])
                        AS u(i, id, t, p, o)
                    JOIN {self.schema}.event_index e
                      ON e.event_id = u.id AND e."partition" = u.p AND e."offset" = u.o
                    JOIN {self.schema}.event_index_names n ON n.code = e.topic AND n.name = u.t""",
                [i for i, _ in candidates], [event_key(eid) for _, eid in candidates],
                [records[i].topic for i, _ in candidates], [records[i].partition for i, _ in candidates],
                [records[i].offset for i, _ in candidates],
            )
            for r in rows:
                verdicts[r["i"]] = None
        for i in below:
            if verdicts[i] is not None:
                verdicts[i] = NOT_INDEXED
        return verdicts


class Quarantine:
    """Writes refused records to the quarantine dead-letter topic (through the event log,
    sealed) and counts them. ``consumer`` names the worker in the metric and the log."""

    def __init__(self, log_: Any, sealer: Any, consumer: str) -> None:
        self.log = log_  # hub.kernel.log.EventLog (anything with ``dead_letters``)
        self.sealer = sealer  # hub.kernel.keystore.DeadLetterSealer
        self.consumer = consumer
        self.count = 0

    async def put(self, rec: Any, reason: str) -> bool:
        """Quarantine one record; returns whether its dead letter is new."""
        ref = record_ref(rec)
        dl = build_dead_letter(
            source=QUARANTINE_SOURCE,
            source_family="quarantine",
            record_ref=ref,
            stage="quarantine",
            reason=f"record refused by {self.consumer}: {reason}",
            raw=rec.value or b"",
            sealer=self.sealer,
        )
        (new,) = await self.log.dead_letters([dl])
        self.count += 1
        metrics.RECORDS_QUARANTINED.labels(self.consumer).inc()
        log.error("quarantined %s (%s) in %s", ref, reason, self.consumer)
        return new
