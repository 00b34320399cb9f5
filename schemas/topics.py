"""The topic catalogue: every topic the hub reads or writes, with its key and config.

Fact topics keep records forever (``retention.ms=-1``, ``cleanup.policy=delete``);
outcome topics for analysts are compacted; one dead-letter topic per source family; one
seal topic for tamper evidence; one audit topic (every access-log and dead-letter-reveal
row, kept forever and sealed like a fact partition). Names are ``<prefix>.<kind>.<name>`` so a test or a
second tenant can use another prefix on the same cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from schemas.base import FAMILIES

DEADLETTER_SOURCES = ("cad", "cases", "ehr", "hub", "quarantine")
Kind = Literal["fact", "outcome", "deadletter", "seal", "audit"]


@dataclass(frozen=True)
class TopicSpec:
    name: str
    kind: Kind
    key: str  # what the record key holds
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)
    description: str = ""


def _forever(min_isr: int) -> dict[str, str]:
    return {
        "retention.ms": "-1",
        "retention.bytes": "-1",
        "cleanup.policy": "delete",
        "min.insync.replicas": str(min_isr),
        "message.timestamp.type": "CreateTime",
    }


def fact_topic(prefix: str, family: str) -> str:
    return f"{prefix}.facts.{family}"


def deadletter_topic(prefix: str, source_family: str) -> str:
    return f"{prefix}.deadletter.{source_family}"


def outcome_topic(prefix: str) -> str:
    return f"{prefix}.outcomes.counts"


def seal_topic(prefix: str) -> str:
    return f"{prefix}.seals"


def audit_topic(prefix: str) -> str:
    return f"{prefix}.audit"


FAMILY_KEYS = {
    "dispatch": "incident id",
    "encounter": "incident id",
    "referral": "person pseudonym",
    "case": "person pseudonym",
    "consent": "person pseudonym",
    "identity": "person pseudonym",
    "erasure": "person pseudonym",
}


def catalogue(
    prefix: str = "hub", partitions: int = 6, replication_factor: int = 1, min_insync_replicas: int = 1
) -> list[TopicSpec]:
    """All topics for one deployment, in a stable order."""
    specs = [
        TopicSpec(
            fact_topic(prefix, fam),
            "fact",
            FAMILY_KEYS[fam],
            partitions,
            replication_factor,
            _forever(min_insync_replicas),
            f"{fam} facts (append-only, kept forever)",
        )
        for fam in FAMILIES
    ]
    specs += [
        TopicSpec(
            deadletter_topic(prefix, src),
            "deadletter",
            "source record reference",
            1,
            replication_factor,
            _forever(min_insync_replicas),
            f"records from {src} sources that could not be parsed, validated or mapped",
        )
        for src in DEADLETTER_SOURCES
    ]
    specs.append(
        TopicSpec(
            outcome_topic(prefix),
            "outcome",
            "metric|period|area",
            partitions,
            replication_factor,
            {
                "cleanup.policy": "compact",
                "min.insync.replicas": str(min_insync_replicas),
                "min.compaction.lag.ms": "0",
            },
            "de-identified outcome counts for analysts (small cells suppressed)",
        )
    )
    specs.append(
        TopicSpec(
            seal_topic(prefix),
            "seal",
            "topic|partition",
            1,
            replication_factor,
            _forever(min_insync_replicas),
            "hash-chain seals over each fact partition (tamper evidence)",
        )
    )
    specs.append(
        TopicSpec(
            audit_topic(prefix),
            "audit",
            "table:row id",
            1,
            replication_factor,
            _forever(min_insync_replicas),
            "every access-log and dead-letter-access row (sealed; hub verify compares it with the tables)",
        )
    )
    return specs


def fact_topics(prefix: str = "hub") -> list[str]:
    return [fact_topic(prefix, fam) for fam in FAMILIES]


def sealed_topics(prefix: str = "hub") -> list[str]:
    """The topics ``hub seal`` chains and ``hub verify`` checks: the facts and the audit topic."""
    return [*fact_topics(prefix), audit_topic(prefix)]
