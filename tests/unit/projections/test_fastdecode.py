"""The rebuild's fast record decode equals the pydantic envelope: the same parts for every
record it accepts, and every record it cannot vouch for goes to the reference path, which
then refuses exactly the records the live projector refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.kernel.log import CorruptRecordError, decode_record
from projections.fastdecode import RecordParts, fast_parts, record_parts
from schemas.envelope import new_event
from tests.unit.projections.projection_events import any_event

TIMES = [
    "2024-01-01T00:00:00Z", "2024-01-01T00:00:00.5Z", "2024-01-01T00:00:00.123456+05:30",
    "2024-01-01T00:00:00-00:00", "2024-02-29T23:59:59.999999-11:00",
    # forms the fast path leaves to pydantic (accepted or not there)
    "2024-01-01 00:00:00Z", "2024-01-01T00:00:00", "2024-01-01T00:00:00.1234567Z", "2024-01-01T24:00:00Z",
    "2024-01-01T00:00:00+24:00", "2024-13-01T00:00:00Z", "2024-01-01T00:00:60Z", "2024-01-01t00:00:00z",
    "20240101T000000Z", "2024-01-01T00:00Z", 1_700_000_000, 1.5, None, "", "now",
]
VALUES: list[Any] = [None, 0, 1.5, True, "", "x", "1.0", "application/json", [], {}, ["a"], {"a": 1}]
FIELDS = ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema",
          "correlationid", "causationid", "recordedat", "partitionkey", "data"]


def record(value: bytes | None) -> ConsumerRecord:
    return ConsumerRecord("t.fact.dispatch", 0, 7, 0, 0, None, value, None, 0, 0, ())


def reference(value: bytes | None) -> RecordParts | None:
    """The parts the pydantic envelope reads, or None when it refuses the record."""
    try:
        env = decode_record(record(value)).envelope
    except CorruptRecordError:
        return None
    return RecordParts(env.id, env.type, env.source, env.time, env.recordedat, env.data, False)


def same(a: RecordParts, b: RecordParts) -> bool:
    times = ((a.time, b.time), (a.recorded_at, b.recorded_at))
    same_values = (a.event_id, a.event_type, a.source, a.data) == (b.event_id, b.event_type, b.source, b.data)
    return same_values and all(x == y and x.utcoffset() == y.utcoffset() for x, y in times)


def check(value: bytes | None) -> None:
    """The property: fast parts, when given, are the reference's; ``record_parts`` is the
    reference."""
    ref = reference(value)
    try:
        fast = fast_parts(value)
    except ValueError:  # an upcaster refused the data
        fast = None
    if fast is not None:
        assert ref is not None, value
        assert same(fast, ref), value
    if ref is None:
        with pytest.raises(CorruptRecordError):
            record_parts(record(value))
    else:
        assert same(record_parts(record(value)), ref)


offsets = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11))])


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """A valid envelope's JSON object, recorded at a time with any offset and precision."""
    when = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(microseconds=draw(st.integers(0, 10**13)))
    env = new_event(draw(any_event), source="test", record_id="r", recorded_at=when.astimezone(draw(offsets)))
    return orjson.loads(env.to_bytes())


@settings(max_examples=300, deadline=None)
@given(envelopes())
def test_the_hubs_own_records_take_the_fast_path_with_the_same_parts(env: dict[str, Any]) -> None:
    value = orjson.dumps(env)
    fast = fast_parts(value)
    assert fast is not None and fast.raw_is_current
    check(value)


mutation = st.one_of(
    st.tuples(st.just("drop"), st.sampled_from(FIELDS), st.none()),
    st.tuples(st.just("set"), st.sampled_from(FIELDS), st.sampled_from(VALUES)),
    st.tuples(st.just("set"), st.sampled_from(["time", "recordedat"]), st.sampled_from(TIMES)),
    st.tuples(st.just("set"), st.sampled_from(["extra", "Type"]), st.sampled_from(VALUES)),
    st.tuples(st.just("set"), st.just("type"), st.sampled_from(["cad.call.received.v1", "no.such.v1"])),
)


@settings(max_examples=600, deadline=None)
@given(envelopes(), st.lists(mutation, min_size=1, max_size=3))
def test_a_record_in_another_shape_is_decoded_as_the_envelope_model_decodes_it(
    env: dict[str, Any], mutations: list[tuple[str, str, Any]]
) -> None:
    for op, name, value in mutations:
        if op == "drop":
            env.pop(name, None)
        else:
            env[name] = value
    check(orjson.dumps(env))


@pytest.mark.parametrize(
    "value", [None, b"", b"not json", b"[]", b'{"id": "x"}', b"\xff\xfe", b'{"a": 1e400}']
)
def test_bytes_that_are_no_envelope_are_refused_as_by_the_model(value: bytes | None) -> None:
    check(value)
