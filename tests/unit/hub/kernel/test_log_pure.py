"""Pure parts of the event log: batch de-duplication, routing, timestamps, decoding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import ConsumerRecord, RecordMetadata, TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from hub.kernel.log import (
    CorruptRecordError,
    UnknownEventTypeError,
    _Batcher,
    _record_metadata,
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


class BatchingProducer:
    """What :class:`hub.kernel.log._Batcher` uses of an aiokafka producer (its partitioner,
    request limit and batch builders), with tiny batches so that they fill up."""

    def __init__(self, batch_bytes: int = 600, max_request: int = 4000) -> None:
        self._partitioner = DefaultPartitioner()
        self._max_request_size = max_request
        self.batch_bytes = batch_bytes

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_bytes, 0)


@given(st.lists(st.tuples(st.binary(min_size=1, max_size=12), st.binary(max_size=300)), max_size=60))
def test_records_are_placed_on_sends_partition_in_order_in_batches_that_fill_up(
    records: list[tuple[bytes, bytes]],
) -> None:
    """Each record goes to the partition ``send`` would choose (the producer's partitioner
    over the topic's partitions), records of one partition keep their input order over as
    many batches as it takes, and each one's relative offset is its place in its batch."""
    batcher = _Batcher(BatchingProducer())
    parts = [0, 1, 2, 3, 4, 5]
    batcher.partitions["t"] = (parts, parts)
    for i, (key, value) in enumerate(records):
        batcher.add(i, (key, value), "t", value, key, [("ce_id", b"x")], timestamp_ms=1000 + i)
    placed: dict[int, list[int]] = {}
    for batch in batcher.batches:
        assert [meta.offset for _, _, meta in batch.members] == list(range(len(batch.members)))
        assert all(meta.timestamp == 1000 + i for i, _, meta in batch.members)
        for i, (key, _), _ in batch.members:
            assert batch.tp == TopicPartition("t", DefaultPartitioner()(key, parts, parts))
            placed.setdefault(batch.tp.partition, []).append(i)
    assert sorted(i for got in placed.values() for i in got) == list(range(len(records)))
    assert all(got == sorted(got) for got in placed.values())


def test_a_record_too_large_or_not_bytes_is_refused_alone() -> None:
    batcher = _Batcher(BatchingProducer(max_request=500))
    batcher.partitions["t"] = ([0], [0])
    with pytest.raises(MessageSizeTooLargeError):
        batcher.add(0, "big", "t", b"x" * 600, b"k", [])
    with pytest.raises(TypeError):
        batcher.add(1, "text", "t", "not bytes", b"k", [])  # type: ignore[arg-type]
    batcher.add(2, "ok", "t", b"x" * 400, b"k", [])  # larger than a batch: a batch of its own
    assert [[item for _, item, _ in b.members] for b in batcher.batches] == [["ok"]]


def test_a_records_metadata_is_its_batchs_base_offset_plus_its_place() -> None:
    tp = TopicPartition("t", 3)
    batcher = _Batcher(BatchingProducer())
    batcher.partitions["t"] = ([3], [3])
    for i in range(3):
        batcher.add(i, i, "t", b"v", b"k", [], timestamp_ms=5000 + i)
    [batch] = batcher.batches
    create_time = RecordMetadata("t", 3, tp, 70, -1, 0, 0)  # the broker kept the records' times
    placed = [_record_metadata(create_time, meta) for _, _, meta in batch.members]
    assert [(m.offset, m.timestamp) for m in placed] == [(70, 5000), (71, 5001), (72, 5002)]
    log_append = RecordMetadata("t", 3, tp, 70, 9999, 1, 0)  # LogAppendTime: the batch's time
    assert {_record_metadata(log_append, meta).timestamp for _, _, meta in batch.members} == {9999}
