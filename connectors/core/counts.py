"""Per-record accounting of an ingest.

Invariant (checked by :meth:`IngestCounts.balanced`)::

    read == appended + duplicates + excluded + dead_lettered

Every *record* read lands in exactly one bucket:

- ``appended``: it produced events and at least one of them was new to the log;
- ``duplicates``: it produced events and every one was already in the log (re-import);
- ``excluded``: the source marks it as not a real call (duplicate / void / test row);
- ``dead_lettered``: it could not be parsed, validated or mapped (sent to a dead letter).

Events are counted apart: ``events_appended + events_duplicate`` is the number of events
the records produced. ``dead_letters_new`` counts dead letters not already recorded (a
re-import of a bad row dead-letters the record again but stores one dead letter).
``newest_record_at`` is the latest event time among the records that produced events
(new or duplicate): the runner derives the source's lag from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime


@dataclass
class IngestCounts:
    read: int = 0
    appended: int = 0
    duplicates: int = 0
    excluded: int = 0
    dead_lettered: int = 0
    events_appended: int = 0
    events_duplicate: int = 0
    dead_letters_new: int = 0
    unknown_dispositions: int = 0
    by_event_type: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    newest_record_at: datetime | None = None

    def balanced(self) -> bool:
        return self.read == self.appended + self.duplicates + self.excluded + self.dead_lettered

    def add(self, other: IngestCounts) -> None:
        for name in (
            "read",
            "appended",
            "duplicates",
            "excluded",
            "dead_lettered",
            "events_appended",
            "events_duplicate",
            "dead_letters_new",
            "unknown_dispositions",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for src, dst in ((other.by_event_type, self.by_event_type), (other.reasons, self.reasons)):
            for k, v in src.items():
                dst[k] = dst.get(k, 0) + v
        self.note_time(other.newest_record_at)

    def note_time(self, at: datetime | None) -> None:
        """Keep the latest record time seen (``None`` is ignored)."""
        if at is not None and (self.newest_record_at is None or at > self.newest_record_at):
            self.newest_record_at = at

    def note_reason(self, reason: str) -> None:
        """Tally a rejection or exclusion reason (reasons never carry PHI: they name
        columns and formats, not values)."""
        key = reason if len(reason) <= 120 else reason[:117] + "..."
        self.reasons[key] = self.reasons.get(key, 0) + 1

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["newest_record_at"] = self.newest_record_at.isoformat() if self.newest_record_at else None
        d["balanced"] = self.balanced()
        return d
