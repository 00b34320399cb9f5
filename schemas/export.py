"""Export of the contract for analysts and integrators: a JSON Schema per event type (plus
the envelope, the dead letter and every registered extra message) and an AsyncAPI 3.0
document of the topic catalogue. ``hub schemas export DIR`` writes them; the committed copy
lives in ``schemas/jsonschema/`` and ``schemas/asyncapi.yaml`` and a unit test fails when
it is stale.

Extra messages (the seal record, the outcome-topic record) are contract types of their own
(:mod:`schemas.seal`, :mod:`schemas.outcome`) listed in :data:`EXTRA_MESSAGES`.

Output is deterministic: sorted keys, no timestamps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from schemas.audit import AuditRecord
from schemas.base import EVENT_TYPES
from schemas.deadletter import DeadLetter
from schemas.envelope import Envelope
from schemas.outcome import OutcomeRecord
from schemas.seal import SealRecord
from schemas.topics import DEADLETTER_SOURCES, FAMILY_KEYS, TopicSpec, catalogue
from schemas.upcasters import UPCASTERS

ASYNCAPI_VERSION = "3.0.0"
CONTRACT_VERSION = "1.0.0"
SCHEMA_ID_BASE = "urn:coresponder-hub:schema:"
JSONSCHEMA_DIR = "jsonschema"


DEIDENTIFICATION_RULES = [
    "no person identifier, pseudonym, incident id, name, address or date finer than a month",
    "every count from 1 to 10 is suppressed (published as null with suppressed=true); zero is shown",
    "complementary suppression: no suppressed cell can be derived from a total and its other cells",
    "areas are police districts/precincts as the agency publishes them, never points",
    "a metric the sources cannot express is published as value null, measured false, with a reason; never 0",
]

#: The metric definitions the outcome records follow (docs/analysts.md, "Metric definitions").
METRIC_DEFINITIONS = {
    "calls": "behavioral-health calls received in the period: a call the vocabulary's rule marks "
             "behavioral-health, looking only at the fields the rule names (Seattle: the final call type)",
    "outcome.<primary>": "one primary outcome per call, the more severe of the CAD disposition (by the "
                         "vocabulary) and the co-responder's on-scene outcome: arrest_or_citation, "
                         "involuntary_hold, emergency_department, voluntary_transport, no_enforcement, other",
    "outcome.no_enforcement": "no arrest, citation, hold, ED or transport; an oral warning counts here "
                              "(footnoted); process codes (unfounded, priority handling, problem-solving) "
                              "do not: they are other",
    "outcome.other": "unable to locate, cancelled, administrative (process codes), unknown dispositions",
    "repeat_three_plus_enrolled": "people with 3+ contacts enrolled in a service whose type the "
                                  "vocabulary marks behavioral-health (housing, shelter, benefits do "
                                  "not count)",
    "time_on_scene_seconds": "first arrival to the last real clear time; a call without a clear time "
                             "has none",
    "vocabulary": "name@version of the vocabularies that gave the source's codes their meaning",
    "custom.<id>": "a county metric (the county's definitions file, stated in the release as "
                   "custom_metrics): the calls its numerator filter selects, share of "
                   "custom.<id>.denominator (the calls its denominator filter selects, share of calls); "
                   "suppressed in the same table as the built-in cells, so neither can be subtracted "
                   "from the other to find a small cell",
}


@dataclass(frozen=True)
class ExtraMessage:
    name: str
    model: type[BaseModel]
    topic_kind: str  # "seal", "outcome", "deadletter", "audit" or "fact"
    description: str


#: message models carried by the non-fact topics, by name
EXTRA_MESSAGES: dict[str, ExtraMessage] = {
    m.name: m
    for m in (
        ExtraMessage("seal", SealRecord, "seal", "A hash-chain seal over one fact partition's records."),
        ExtraMessage(
            "audit.record",
            AuditRecord,
            "audit",
            "One row of an audit table (access log, dead-letter access) as written; key `table:id`.",
        ),
        ExtraMessage(
            "outcome.record",
            OutcomeRecord,
            "outcome",
            "One de-identified outcome cell (metric, month, area) of behavioral-health calls; key "
            "`metric|YYYY-MM|area_kind:area`; value null when suppressed (CMS small-cell rule, with "
            "complementary suppression); a null record value (tombstone) retracts a key.",
        ),
    )
}


def _schema(model: type[BaseModel], name: str, title: str | None = None) -> dict[str, Any]:
    schema = model.model_json_schema(mode="serialization")
    head = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID_BASE + name}
    schema = head | schema
    if title:
        schema["title"] = title
    return schema


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema for every event payload, the envelope, the dead letter and
    each registered extra message."""
    out: dict[str, dict[str, Any]] = {}
    for event_type in sorted(EVENT_TYPES):
        cls = EVENT_TYPES[event_type]
        s = _schema(cls, event_type, event_type)
        s["x-family"] = cls.family
        s["x-partition-key"] = cls.key_field
        older = sorted(old for old, (new, _) in UPCASTERS.items() if _upcasts_to(old, event_type))
        if older:
            s["x-upcast-from"] = older
        out[f"{event_type}.json"] = s
    out["envelope.json"] = _schema(Envelope, "envelope", "Envelope (CloudEvents 1.0 + hub extensions)")
    out["deadletter.json"] = _schema(DeadLetter, "deadletter", "DeadLetter")
    for name in sorted(EXTRA_MESSAGES):
        out[f"{name}.json"] = _schema(EXTRA_MESSAGES[name].model, name, name)
    return out


def _upcasts_to(old: str, current: str) -> bool:
    seen = set()
    t = old
    while t in UPCASTERS and t not in seen:
        seen.add(t)
        t = UPCASTERS[t][0]
    return t == current


def _channel_id(spec: TopicSpec, prefix: str) -> str:
    return spec.name.removeprefix(prefix + ".")


def _kafka_binding(spec: TopicSpec) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for k, v in sorted(spec.config.items()):
        if k == "cleanup.policy":
            config[k] = v.split(",")
        elif v.lstrip("-").isdigit():
            config[k] = int(v)
        else:
            config[k] = v
    return {
        "kafka": {
            "topic": spec.name,
            "partitions": spec.partitions,
            "replicas": spec.replication_factor,
            "topicConfiguration": config,
            "bindingVersion": "0.5.0",
        }
    }


def asyncapi(prefix: str = "hub") -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the topic catalogue for ``prefix``."""
    specs = catalogue(prefix)
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    def key_binding(description: str) -> dict[str, Any]:
        return {"kafka": {"key": {"type": "string", "description": description}, "bindingVersion": "0.5.0"}}

    for event_type in sorted(EVENT_TYPES):
        cls = EVENT_TYPES[event_type]
        messages[event_type] = {
            "name": event_type,
            "title": cls.__name__,
            "summary": (cls.__doc__ or event_type).strip().splitlines()[0],
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "properties": {
                    "ce_id": {"type": "string"},
                    "ce_type": {"const": event_type},
                    "hub_mac_kid": {"type": "string", "description": "id of the record-MAC key"},
                    "hub_mac": {
                        "type": "string",
                        "description": "HMAC-SHA256 (64 hex characters) over topic, key, value and the other "
                        "headers (hub.kernel.recordmac); consumers quarantine records without a valid one",
                    },
                },
                "required": ["ce_id", "ce_type", "hub_mac_kid", "hub_mac"],
            },
            "payload": {
                "allOf": [
                    {"$ref": f"{JSONSCHEMA_DIR}/envelope.json"},
                    {
                        "type": "object",
                        "properties": {
                            "type": {"const": event_type},
                            "data": {"$ref": f"{JSONSCHEMA_DIR}/{event_type}.json"},
                        },
                    },
                ]
            },
            "bindings": key_binding(FAMILY_KEYS[cls.family]),
        }
    messages["deadletter"] = {
        "name": "deadletter",
        "title": "DeadLetter",
        "summary": "An input record that could not be parsed, validated or mapped (raw payload sealed).",
        "contentType": "application/json",
        "payload": {"$ref": f"{JSONSCHEMA_DIR}/deadletter.json"},
        "bindings": key_binding("dead-letter id"),
    }
    for name in sorted(EXTRA_MESSAGES):
        extra = EXTRA_MESSAGES[name]
        messages[name] = {
            "name": name,
            "title": extra.model.__name__,
            "summary": extra.description.splitlines()[0] if extra.description else name,
            "contentType": "application/json",
            "payload": {"$ref": f"{JSONSCHEMA_DIR}/{name}.json"},
        }

    for spec in specs:
        cid = _channel_id(spec, prefix)
        if spec.kind == "fact":
            family = cid.split(".", 1)[1]
            names = [t for t in sorted(EVENT_TYPES) if EVENT_TYPES[t].family == family]
        elif spec.kind == "deadletter":
            names = ["deadletter"]
        else:
            names = [n for n, e in sorted(EXTRA_MESSAGES.items()) if e.topic_kind == spec.kind]
        channel: dict[str, Any] = {
            "address": spec.name,
            "title": cid,
            "description": f"{spec.description}. Key: {spec.key}.",
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
            "bindings": _kafka_binding(spec),
        }
        if spec.kind == "outcome":
            channel["description"] += " De-identification rules: " + "; ".join(DEIDENTIFICATION_RULES) + "."
            channel["x-deidentification"] = {"small_cell_range": [1, 10], "rules": DEIDENTIFICATION_RULES}
            channel["x-metric-definitions"] = METRIC_DEFINITIONS
        channels[cid] = channel
        action = "send" if spec.kind in ("fact", "deadletter", "seal", "audit") else "receive"
        operations[f"{action}-{cid}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{cid}"},
            "summary": {
                "send": "the hub writes this topic",
                "receive": "analysts and downstream systems subscribe to this topic",
            }[action],
            "messages": [{"$ref": f"#/channels/{cid}/messages/{n}"} for n in names],
        }

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Co-responder integration hub: event log",
            "version": CONTRACT_VERSION,
            "description": (
                "Append-only Kafka topics of the hub. Fact topics keep records forever; every record is a "
                "CloudEvents 1.0 envelope (JSON) whose `data` is the event payload, with headers ce_id, "
                "ce_type and the record MAC (hub_mac_kid, hub_mac). Event types carry a version; older "
                "versions are upcast on read. Person identifiers are keyed-HMAC pseudonyms; clinical "
                "content is sealed per person. Topic names are "
                f"`<prefix>.<kind>.<name>` (shown for prefix `{prefix}`). Dead-letter sources: "
                + ", ".join(DEADLETTER_SOURCES)
                + "."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "the development broker started by `hub infra up`",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def render() -> dict[str, str]:
    """Relative path → file content of the whole export."""
    files = {
        f"{JSONSCHEMA_DIR}/{name}": json.dumps(schema, indent=2, sort_keys=True) + "\n"
        for name, schema in json_schemas().items()
    }
    files["asyncapi.yaml"] = yaml.safe_dump(asyncapi(), sort_keys=False, allow_unicode=True, width=100)
    return files


def write(out_dir: Path) -> list[Path]:
    """Write the export under ``out_dir`` (JSON Schemas in ``jsonschema/``); stale JSON
    files from removed types are deleted."""
    files = render()
    schema_dir = out_dir / JSONSCHEMA_DIR
    schema_dir.mkdir(parents=True, exist_ok=True)
    keep = {Path(p).name for p in files if p.startswith(JSONSCHEMA_DIR + "/")}
    for old in schema_dir.glob("*.json"):
        if old.name not in keep:
            old.unlink()
    written = []
    for rel, text in files.items():
        path = out_dir / rel
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
