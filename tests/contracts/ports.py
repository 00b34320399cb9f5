"""The behaviour every implementation of a connector port promises (``connectors/core/ports.py``),
written once and run against each implementation.

A test module subclasses a contract and provides the implementation as a fixture:

- ``tests/unit/connectors/core/test_memory_ports.py`` — the in-memory fakes
  (``connectors/core/memory.py``), no services;
- ``tests/integration/connectors/core/test_real_ports.py`` — the real adapters
  (``hub.kernel.log.EventLog`` and ``connectors/core/state.py``) on the session's Kafka topics
  and PostgreSQL schema, opened with ``hub.bootstrap.open_runtime``.

The real adapters are the reference: when a fake disagrees, the fake is fixed. Every test
names its sources, receivers and records uniquely, so the contracts run on a shared,
non-empty store as well as on a fresh fake.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.core.ports import CursorStore, DeliveryStore, LogPort, RevisionStore, count_of
from connectors.core.records import RevisionKey
from hub.kernel.log import UnknownEventTypeError
from schemas.deadletter import DeadLetter, deadletter_id
from schemas.dispatch import UnitDispatched
from schemas.envelope import Envelope, new_event

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def new_incident() -> str:
    return f"sea:{uuid.uuid4().hex[:12]}"


def dispatch(incident: str, unit: str = "M1") -> Envelope:
    """One valid fact (an ambulance dispatched to ``incident``), id deterministic over both."""
    return new_event(UnitDispatched(incident_id=incident, unit_id=unit, at=T0),
                     source="cad/contract", record_id=f"{incident}/{unit}")


def letter(ref: str) -> DeadLetter:
    """A PHI-free dead letter whose id is deterministic over ``ref``."""
    raw = f"bad row {ref}"
    return DeadLetter(id=deadletter_id("cad/contract", ref, raw.encode()), source="cad/contract",
                      source_family="cad", record_ref=ref, stage="parse", reason="unparseable row",
                      raw_clear=raw, at=T0)


def ids_of(items: Any) -> list[str]:
    """Event ids of an ``appended``/``duplicates`` field (envelopes or logged events)."""
    return [getattr(item, "envelope", item).id for item in items]


class LogPortContract:
    """``append`` stores each event id once; ``dead_letters`` stores each letter id once."""

    @pytest.fixture
    def log(self) -> LogPort:
        raise NotImplementedError("a contract test module provides the implementation")

    async def test_append_returns_the_new_events_in_input_order(self, log: LogPort) -> None:
        incident = new_incident()
        batch = [dispatch(incident, u) for u in ("M3", "M1", "M2")]
        result = await log.append(batch)
        assert ids_of(result.appended) == [e.id for e in batch]
        assert count_of(result.appended) == 3 and count_of(result.duplicates) == 0

    async def test_append_refuses_an_id_already_in_the_log(self, log: LogPort) -> None:
        incident = new_incident()
        first, second, third = (dispatch(incident, u) for u in ("M1", "M2", "M3"))
        await log.append([first, second])
        result = await log.append([third, first])
        assert ids_of(result.appended) == [third.id]
        assert ids_of(result.duplicates) == [first.id] and count_of(result.duplicates) == 1
        again = await log.append([first, second, third])
        assert count_of(again.appended) == 0 and count_of(again.duplicates) == 3

    async def test_a_repeat_inside_one_batch_is_a_duplicate(self, log: LogPort) -> None:
        event = dispatch(new_incident())
        result = await log.append([event, event])
        assert ids_of(result.appended) == [event.id] and ids_of(result.duplicates) == [event.id]

    async def test_an_empty_append_appends_nothing(self, log: LogPort) -> None:
        result = await log.append([])
        assert count_of(result.appended) == 0 and count_of(result.duplicates) == 0

    async def test_an_unknown_event_type_is_refused_before_anything_is_appended(self, log: LogPort) -> None:
        good = dispatch(new_incident())
        bad = good.model_copy(update={"id": str(uuid.uuid4()), "type": "cad.unheard.of.v1"})
        with pytest.raises(UnknownEventTypeError):
            await log.append([good, bad])
        assert ids_of((await log.append([good])).appended) == [good.id]  # the good one was not kept

    async def test_dead_letters_say_which_letters_were_new(self, log: LogPort) -> None:
        a, b, c = (letter(unique("row")) for _ in range(3))
        assert await log.dead_letters([a, b]) == [True, True]
        assert await log.dead_letters([b, c, a]) == [False, True, False]
        assert await log.dead_letters([]) == []

    async def test_a_repeated_letter_inside_one_batch_is_not_new(self, log: LogPort) -> None:
        a, b = letter(unique("row")), letter(unique("row"))
        assert await log.dead_letters([a, b, a, b]) == [True, True, False, False]


class CursorStoreContract:
    """One cursor per source (JSON values), and the newest record time seen, never moved back."""

    @pytest.fixture
    def cursors(self) -> CursorStore:
        raise NotImplementedError("a contract test module provides the implementation")

    async def test_an_unknown_source_has_no_cursor_and_no_newest(self, cursors: CursorStore) -> None:
        source = unique("cad/contract")
        assert await cursors.load(source) is None
        assert await cursors.newest(source) is None

    async def test_load_returns_the_last_saved_cursor(self, cursors: CursorStore) -> None:
        source, other = unique("cad/contract"), unique("cad/contract")
        await cursors.save(source, {"offset": 10, "files": ["a.csv"], "since": "2024-03-01T00:00:00Z"})
        await cursors.save(other, "elsewhere")
        await cursors.save(source, {"offset": 25, "files": ["a.csv", "b.csv"], "since": None})
        assert await cursors.load(source) == {"offset": 25, "files": ["a.csv", "b.csv"], "since": None}
        assert await cursors.load(other) == "elsewhere"

    async def test_a_loaded_or_saved_cursor_changed_later_leaves_the_store_alone(
        self, cursors: CursorStore
    ) -> None:
        source = unique("cad/contract")
        saved = {"files": ["a.csv"]}
        await cursors.save(source, saved)
        saved["files"].append("b.csv")
        loaded = await cursors.load(source)
        loaded["files"].append("c.csv")
        assert await cursors.load(source) == {"files": ["a.csv"]}

    async def test_newest_only_moves_forward(self, cursors: CursorStore) -> None:
        source = unique("cad/contract")
        await cursors.save(source, 1)
        assert await cursors.newest(source) is None
        await cursors.save(source, 2, newest=T0)
        await cursors.save(source, 3, newest=T0 - timedelta(hours=1))  # an older record
        assert await cursors.newest(source) == T0
        await cursors.save(source, 4)  # no record time: kept
        assert await cursors.newest(source) == T0
        await cursors.save(source, 5, newest=T0 + timedelta(minutes=5))
        assert await cursors.newest(source) == T0 + timedelta(minutes=5)
        assert await cursors.load(source) == 5  # the cursor itself always moves to the last save


class RevisionStoreContract:
    """The first revision claimed of each (source, key) is kept and returned for ever after."""

    @pytest.fixture
    def revisions(self) -> RevisionStore:
        raise NotImplementedError("a contract test module provides the implementation")

    async def test_claim_returns_the_first_revision_of_each_key(self, revisions: RevisionStore) -> None:
        source = unique("cad/contract")
        assert await revisions.claim(source, [RevisionKey("A", "r1"), RevisionKey("B", "r1")]) == {
            "A": "r1", "B": "r1"}
        assert await revisions.claim(source, [RevisionKey("A", "r2"), RevisionKey("C", "r2")]) == {
            "A": "r1", "C": "r2"}

    async def test_inside_one_batch_the_first_occurrence_claims(self, revisions: RevisionStore) -> None:
        source = unique("cad/contract")
        keys = [RevisionKey("A", "r2"), RevisionKey("A", "r1"), RevisionKey("B", "r9")]
        assert await revisions.claim(source, keys) == {"A": "r2", "B": "r9"}
        assert await revisions.claim(source, [RevisionKey("A", "r1")]) == {"A": "r2"}

    async def test_sources_claim_independently(self, revisions: RevisionStore) -> None:
        one, two = unique("cad/contract"), unique("cad/contract")
        await revisions.claim(one, [RevisionKey("A", "r1")])
        assert await revisions.claim(two, [RevisionKey("A", "r7")]) == {"A": "r7"}

    async def test_an_empty_claim_claims_nothing(self, revisions: RevisionStore) -> None:
        assert await revisions.claim(unique("cad/contract"), []) == {}


class DeliveryStoreContract:
    """Each (receiver, delivery id) is recorded once, with its body digest, event count and time."""

    @pytest.fixture
    def deliveries(self) -> DeliveryStore:
        raise NotImplementedError("a contract test module provides the implementation")

    async def test_an_unknown_delivery_is_not_found(self, deliveries: DeliveryStore) -> None:
        assert await deliveries.lookup(unique("cases/contract"), "d-1") is None

    async def test_a_recorded_delivery_is_found_with_its_digest_count_and_time(
        self, deliveries: DeliveryStore
    ) -> None:
        receiver = unique("cases/contract")
        before = datetime.now(UTC) - timedelta(minutes=5)  # the database clock may differ a little
        assert await deliveries.record(receiver, "d-1", 3, "ab" * 32) is True
        found = await deliveries.lookup(receiver, "d-1")
        assert found is not None
        assert (found.body_sha256, found.events) == ("ab" * 32, 3)
        assert found.received_at is not None and found.received_at > before

    async def test_a_delivery_is_recorded_once(self, deliveries: DeliveryStore) -> None:
        receiver = unique("cases/contract")
        assert await deliveries.record(receiver, "d-1", 3, "ab" * 32) is True
        assert await deliveries.record(receiver, "d-1", 5, "cd" * 32) is False
        found = await deliveries.lookup(receiver, "d-1")
        assert found is not None and (found.body_sha256, found.events) == ("ab" * 32, 3)

    async def test_receivers_record_independently(self, deliveries: DeliveryStore) -> None:
        one, two = unique("cases/contract"), unique("cases/contract")
        assert await deliveries.record(one, "d-1", 1, "ab" * 32) is True
        assert await deliveries.record(two, "d-1", 2, "cd" * 32) is True
        assert await deliveries.lookup(two, "d-2") is None
        found = await deliveries.lookup(two, "d-1")
        assert found is not None and found.events == 2
