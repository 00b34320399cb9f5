"""Pure parts of the event log: batch de-duplication, routing, timestamps, decoding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.structs import ConsumerRecord
from hypothesis import given
from hypothesis import strategies as st

from hub.kernel.log import (
    CorruptRecordError,
    UnknownEventTypeError,
    decode_record,
    family_topics,
    record_headers,
    split_batch_duplicates,
    timestamp_ms,
    topic_for,
)
from schemas.dispatch import CallReceived, UnitDispatched
from schemas.envelope import Envelope, new_event
from schemas.referral import ReferralRequested

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
PERSON = "psn_" + "ab" * 16


def dispatched(record: str, incident: str = "sea:1", revision: int = 0) -> Envelope:
    return new_event(
        UnitDispatched(incident_id=incident, at=T0), source="cad/seattle", record_id=record,
        revision=revision, recorded_at=T0,
    )


@given(st.lists(st.integers(0, 8), max_size=30))
def test_split_batch_keeps_first_occurrences_in_order(picks: list[int]) -> None:
    batch = [dispatched(str(i)) for i in picks]
    unique, repeats = split_batch_duplicates(batch)
    assert [e.id for e in unique] == list(dict.fromkeys(e.id for e in batch))
    assert len(unique) + len(repeats) == len(batch)
    assert {e.id for e in repeats} <= {e.id for e in unique}
    assert sorted(e.id for e in unique + repeats) == sorted(e.id for e in batch)


def test_routing_follows_the_family_and_upcasts_old_types() -> None:
    assert topic_for("p", dispatched("1")) == "p.facts.dispatch"
    referral = new_event(
        ReferralRequested(referral_id="r1", person=PERSON, at=T0, destination="clinic-a", channel="fhir",
                          service_type="mh", requester="team-1"),
        source="cases/acme", record_id="r1",
    )
    assert topic_for("p", referral) == "p.facts.referral"
    assert referral.partitionkey == PERSON
    old = dispatched("1").model_copy(update={"type": "cad.call.received.v1"})
    assert topic_for("p", old) == "p.facts.dispatch"
    with pytest.raises(UnknownEventTypeError):
        topic_for("p", dispatched("1").model_copy(update={"type": "cad.call.teleported.v1"}))


def test_family_topics_rejects_unknown_families() -> None:
    assert family_topics("p", ["case"]) == ["p.facts.case"]
    assert len(family_topics("p")) == 7
    with pytest.raises(ValueError, match="unknown"):
        family_topics("p", ["nope"])


def test_record_timestamp_is_recordedat_clamped_to_now() -> None:
    env = dispatched("1")
    assert timestamp_ms(env, T0 + timedelta(days=1)) == int(T0.timestamp() * 1000)
    assert timestamp_ms(env, T0 - timedelta(days=1)) == int((T0 - timedelta(days=1)).timestamp() * 1000)
    assert dict(record_headers(env)) == {"ce_id": env.id.encode(), "ce_type": b"cad.unit.dispatched.v1"}


def _record(value: bytes | None, offset: int = 7) -> ConsumerRecord:
    return ConsumerRecord(
        topic="p.facts.dispatch", partition=2, offset=offset, timestamp=int(T0.timestamp() * 1000),
        timestamp_type=0, key=b"sea:1", value=value, checksum=None, serialized_key_size=5,
        serialized_value_size=len(value or b""), headers=(),
    )


def test_decode_record_upcasts_and_keeps_position() -> None:
    data = {"incident_id": "sea:1", "agency": "sea", "cad_number": "1", "at": T0.isoformat(),
            "category": "welfare", "behavioral_health": False, "precinct": "N", "sector": None, "beat": "B1"}
    old = dispatched("1").model_copy(update={"type": "cad.call.received.v1", "data": data})
    event = decode_record(_record(old.to_bytes()))
    assert (event.topic, event.partition, event.offset, event.timestamp) == ("p.facts.dispatch", 2, 7, T0)
    assert event.envelope.type == "cad.call.received.v4"  # v1 -> v2 -> v3 -> v4, the stored bytes untouched
    payload = event.envelope.payload()
    assert isinstance(payload, CallReceived) and "behavioral_health" not in payload.model_dump()
    assert event.key == "sea:1"


@pytest.mark.parametrize("value", [b"not json", b'{"id": "x"}', None])
def test_decode_record_names_the_offset_of_a_corrupt_record(value: bytes | None) -> None:
    with pytest.raises(CorruptRecordError, match=r"p\.facts\.dispatch\[2\]@9"):
        decode_record(_record(value, offset=9))
