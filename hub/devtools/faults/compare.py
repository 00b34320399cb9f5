"""What a faulted run is judged by, against a clean run of the same inputs (pure).

- **lost**: event ids in the clean run's log that the faulted run's log lacks;
- **conflicting**: breaks ``hub verify`` reports (two different copies of one event id);
- **read-model differences**: rows of the read models present in one run and not the other,
  after normalizing only wall-clock fields (:data:`WALL_CLOCK`: when the hub recorded
  something, or when a delivery happened, which a slower, faulted run legitimately changes);
  outcome releases by the months they cover (:data:`COMPARED_BY`);
- **EHR duplicates**: referrals the EHR simulator stored twice;
- **hung**: processes that did not end within their bound after SIGTERM, plus every time a
  projector's watchdog stopped it for lack of progress (a hang turned into a restart).
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: per read-model table, the columns that hold wall-clock values (time of recording, or of a
#: delivery attempt) and are blanked before comparing. ``*`` names JSON keys blanked at any
#: depth of every jsonb column. Nothing else is normalized.
WALL_CLOCK: Mapping[str, frozenset[str]] = {
    "*": frozenset({"recorded_at", "attempts", "delivered_at", "sent_at"}),
    "facts": frozenset({"recorded_at"}),
    "referral_funnel": frozenset({"delivered_at", "seconds_requested_to_delivered"}),
}

#: consumer bookkeeping, not read models (offsets differ with every retry)
NOT_COMPARED = frozenset({"projection_positions", "outcome_publications", "schema_migrations"})

#: publisher state, compared by what it covers only (the distinct values of these columns):
#: which months were released. How many releases a month took, and when, follows from when
#: the projector was idle and caught up — which faults legitimately change — and each
#: release's suppression depends on the ones before it; a month never released shows.
COMPARED_BY: Mapping[str, tuple[str, ...]] = {"outcome_releases": ("period_start",)}

#: event types the delivery workers stamp with the wall clock (the moment of an attempt or
#: of the consent gate's decision): their ``at`` is a wall-clock field wherever it is copied
DELIVERY_TYPES = (
    "referral.delivered",
    "referral.delivery_failed",
    "referral.rejected",
    "referral.held_for_consent",
)
SEALED_KEYS = frozenset({"alg", "ciphertext", "kid", "nonce"})
#: a read-model row that stores a sealed payload in columns (``person_demographics``)
SEALED_COLUMNS = frozenset({"ciphertext", "kid", "nonce"})


def is_sealed(value: Any) -> bool:
    """A sealed payload as stored in a read model (its keys exactly those of ``Sealed``)."""
    return isinstance(value, dict) and set(value) == SEALED_KEYS


def open_sealed(value: Any, opener: Callable[[dict[str, Any]], Any]) -> Any:
    """``value`` with every sealed payload replaced by ``{"sealed": opener(payload)}``: each
    run seals with its own random per-person keys, so the same fact's ciphertexts differ
    between runs while its clear content must not. A row whose columns hold one (``kid``,
    ``nonce``, ``ciphertext``) gets the opened payload in place of those columns."""
    if is_sealed(value):
        return {"sealed": opener(value)}
    if isinstance(value, dict) and set(value) >= SEALED_COLUMNS:
        rest = {k: open_sealed(v, opener) for k, v in value.items() if k not in SEALED_COLUMNS}
        return rest | {"sealed": opener({"alg": "A256GCM"} | {k: value[k] for k in SEALED_COLUMNS})}
    if isinstance(value, dict):
        return {k: open_sealed(v, opener) for k, v in value.items()}
    if isinstance(value, list):
        return [open_sealed(v, opener) for v in value]
    return value


def wall_clock_events(rows: Mapping[str, Iterable[Mapping[str, Any]]]) -> frozenset[str]:
    """Ids of the facts whose own time is a wall-clock time (:data:`DELIVERY_TYPES`)."""
    return frozenset(
        str(r["event_id"])
        for r in rows.get("facts", ())
        if str(r.get("event_type", "")).startswith(DELIVERY_TYPES)
    )


def _blank(value: Any, keys: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: (None if k in keys else _blank(v, keys)) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_blank(v, keys) for v in value]
    return value


def normalize_row(table: str, row: Mapping[str, Any], wall_clock_ids: frozenset[str] = frozenset()) -> str:
    """One row as canonical JSON with its wall-clock fields blanked. The own time of a fact
    in ``wall_clock_ids`` (``at`` of the fact, its timeline entry, its person-timeline row)
    is the moment of a delivery attempt, so it is blanked too."""
    cols = WALL_CLOCK.get(table, frozenset())
    json_keys = WALL_CLOCK["*"]
    out: dict[str, Any] = {}
    delivery = str(row.get("event_id", "")) in wall_clock_ids
    for name, value in sorted(row.items()):
        if name in cols or (delivery and name == "at"):
            out[name] = None
            continue
        if isinstance(value, str) and value[:1] in "{[":
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        out[name] = _blank(value, json_keys | ({"at"} if delivery else frozenset()))
    return json.dumps(out, sort_keys=True, default=str)


def table_differences(
    clean: Mapping[str, Iterable[Mapping[str, Any]]], faulted: Mapping[str, Iterable[Mapping[str, Any]]]
) -> dict[str, int]:
    """Per table, the number of normalized rows in one run and not the other (multiset
    symmetric difference); tables equal in both runs are left out."""
    out: dict[str, int] = {}
    clean_ids, faulted_ids = wall_clock_events(clean), wall_clock_events(faulted)
    for table in sorted(set(clean) | set(faulted)):
        if table in NOT_COMPARED:
            continue
        if table in COMPARED_BY:
            cols = COMPARED_BY[table]
            a = Counter({json.dumps([r.get(c) for c in cols], default=str) for r in clean.get(table, ())})
            b = Counter({json.dumps([r.get(c) for c in cols], default=str) for r in faulted.get(table, ())})
        else:
            a = Counter(normalize_row(table, r, clean_ids) for r in clean.get(table, ()))
            b = Counter(normalize_row(table, r, faulted_ids) for r in faulted.get(table, ()))
        diff = sum(((a - b) + (b - a)).values())
        if diff:
            out[table] = diff
    return out


@dataclass
class Verdict:
    """The five numbers the suite prints; ``ok`` only when all are 0."""

    lost: int
    conflicting: int
    read_model_differences: int
    ehr_duplicates: int
    hung: int
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (
            self.lost or self.conflicting or self.read_model_differences or self.ehr_duplicates or self.hung
        )

    def lines(self) -> list[str]:
        return [
            f"lost events:            {self.lost}",
            f"conflicting copies:     {self.conflicting}",
            f"read-model differences: {self.read_model_differences}",
            f"EHR duplicates:         {self.ehr_duplicates}",
            f"hung processes:         {self.hung}",
            f"verdict:                {'PASS' if self.ok else 'FAIL'}",
        ]


def judge(
    clean_ids: set[str],
    faulted_ids: set[str],
    verify_breaks: int,
    clean_rows: Mapping[str, Iterable[Mapping[str, Any]]],
    faulted_rows: Mapping[str, Iterable[Mapping[str, Any]]],
    ehr_duplicates: int,
    hung: list[str],
) -> Verdict:
    """The verdict of a faulted run against its clean run."""
    diffs = table_differences(clean_rows, faulted_rows)
    return Verdict(
        lost=len(clean_ids - faulted_ids),
        conflicting=verify_breaks,
        read_model_differences=sum(diffs.values()),
        ehr_duplicates=ehr_duplicates,
        hung=len(hung),
        detail={"tables": diffs, "hung": hung, "extra_events": len(faulted_ids - clean_ids)},
    )
