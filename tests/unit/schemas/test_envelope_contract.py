"""The event contract: JSON round-trips, deterministic ids, upcasting of old versions."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.kernel.settings import PROJECT_ROOT
from schemas import EVENT_TYPES, Envelope, deterministic_id
from schemas.deadletter import DeadLetter
from schemas.dispatch import CallReceived, CallRevised
from schemas.envelope import SCHEMA_URN
from tests.unit.schemas.strategies import envelope_strategy, model_strategy

FIXTURES = PROJECT_ROOT / "tests" / "data" / "events"
ALL_TYPES = sorted(EVENT_TYPES)


def test_every_family_has_event_types() -> None:
    families = {cls.family for cls in EVENT_TYPES.values()}
    assert families == {"dispatch", "encounter", "referral", "case", "consent", "identity", "erasure"}
    assert all(t.rsplit(".", 1)[-1].startswith("v") for t in ALL_TYPES)


@pytest.mark.parametrize("event_type", ALL_TYPES)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_event_type_round_trips_through_json(event_type: str, data: st.DataObject) -> None:
    cls = EVENT_TYPES[event_type]
    event = data.draw(model_strategy(cls))
    assert cls.model_validate_json(event.model_dump_json()) == event
    envelope = data.draw(envelope_strategy(cls))
    again = Envelope.from_bytes(envelope.to_bytes())
    assert again == envelope
    assert again.payload() == cls.model_validate(envelope.data)
    assert again.family == cls.family
    assert again.dataschema == SCHEMA_URN + event_type
    assert again.partitionkey == again.subject == again.payload().partition_key()


@given(model_strategy(DeadLetter))
@settings(max_examples=50, deadline=None)
def test_dead_letter_round_trips(dl: DeadLetter) -> None:
    assert DeadLetter.model_validate_json(dl.model_dump_json()) == dl


def test_payload_models_are_frozen_and_forbid_unknown_fields() -> None:
    cls = EVENT_TYPES["cad.unit.dispatched.v1"]
    event = cls(incident_id="sea:1", at="2024-01-01T00:00:00Z")
    with pytest.raises(Exception, match="frozen"):
        event.unit_id = "x"  # type: ignore[misc]
    with pytest.raises(Exception, match="Extra inputs"):
        cls(incident_id="sea:1", at="2024-01-01T00:00:00Z", surprise=1)


IDENTIFYING = st.tuples(
    st.text(min_size=1, max_size=12), st.text(min_size=1, max_size=12), st.integers(0, 99),
    st.sampled_from(sorted({c.fact_kind() for c in EVENT_TYPES.values()})),
)


@given(IDENTIFYING, st.integers(0, 3), st.text(min_size=1, max_size=12))
def test_deterministic_id_changes_when_any_identifying_field_changes(
    parts: tuple[str, str, int, str], which: int, replacement: str
) -> None:
    changed = list(parts)
    if which == 2:
        changed[2] = parts[2] + 1
    elif which == 3:
        changed[3] = parts[3] + "." + replacement
    else:
        changed[which] = parts[which] + replacement
    assert deterministic_id(*parts) == deterministic_id(*parts)
    assert deterministic_id(*changed) != deterministic_id(*parts)


def test_deterministic_id_fields_cannot_bleed_into_each_other() -> None:
    assert deterministic_id("a", "bc", 1, "k") != deterministic_id("ab", "c", 1, "k")


def test_deterministic_ids_are_stable_across_processes() -> None:
    code = (
        "from schemas import deterministic_id;"
        "from schemas.dispatch import CallReceived;"
        "from schemas.envelope import new_event;"
        "e = CallReceived(incident_id='sea:1', agency='sea', cad_number='1', at='2024-01-01T00:00:00Z',"
        " source_timezone='UTC');"
        "print(deterministic_id('cad/seattle', 'R-1', 3, 'cad.call.received'));"
        "print(new_event(e, source='cad/seattle', record_id='R-1', revision=3).id)"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={"PYTHONHASHSEED": str(seed), "PATH": ""},
            cwd=PROJECT_ROOT,
        ).stdout
        for seed in (1, 2)
    }
    assert len(runs) == 1
    here = deterministic_id("cad/seattle", "R-1", 3, "cad.call.received")
    first, second = runs.pop().split()
    assert first == second == here  # the id ignores the payload version and the recording time


def test_committed_v1_fixture_is_upcast_to_the_current_version() -> None:
    raw = (FIXTURES / "cad.call.received.v1.json").read_bytes()
    stored = Envelope.from_bytes(raw)
    assert stored.type == "cad.call.received.v1"
    current = stored.current()
    assert current.type == CallReceived.event_type == "cad.call.received.v4"
    assert current.id == stored.id and current.recordedat == stored.recordedat
    assert current.dataschema == SCHEMA_URN + "cad.call.received.v4"
    payload = current.payload()
    assert isinstance(payload, CallReceived)
    assert payload.area.precinct == "WEST" and payload.area.sector == "KING" and payload.area.beat == "K2"
    assert payload.area.district is None
    assert payload.source_timezone == "UTC"
    assert stored.payload() == payload  # payload() upcasts too
    assert json.loads(raw)["data"]["precinct"] == "WEST"  # the stored bytes are untouched
    # the meaning v1 carried is not a fact any more: the projections apply a vocabulary
    assert "behavioral_health" in json.loads(raw)["data"] and "behavioral_health" not in current.data
    assert payload.custom == {}  # v4: no county-defined fields in a v1 call


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_stored_revision_is_read_as_v3_without_county_fields(version: str) -> None:
    """A revision published before revisions carried county fields (v1 with the meaning
    frozen at ingest, v2) reads as the current version with none: it corrects no county
    field; its id and corrections are kept."""
    data: dict[str, object] = {"incident_id": "SPD:1", "at": "2024-03-01T12:00:00Z", "revision": "r2",
                               "call_type_final": "CRISIS", "disposition_code": "ARREST"}
    if version == "v1":
        data |= {"category": "other", "behavioral_health": False, "outcome": "arrest"}
    raw = json.dumps({
        "specversion": "1.0", "id": "evt_rev", "source": "cad/seattle", "type": f"cad.call.revised.{version}",
        "subject": "SPD:1", "partitionkey": "SPD:1", "time": "2024-03-01T12:00:00Z",
        "recordedat": "2024-03-01T12:00:01Z", "dataschema": SCHEMA_URN + f"cad.call.revised.{version}",
        "data": data,
    }).encode()
    current = Envelope.from_bytes(raw).current()
    assert current.type == CallRevised.event_type == "cad.call.revised.v3" and current.id == "evt_rev"
    payload = current.payload()
    assert isinstance(payload, CallRevised)
    assert payload.custom == {}
    assert (payload.call_type_final, payload.disposition_code) == ("CRISIS", "ARREST")
    assert "custom" not in json.loads(raw)["data"]  # the stored bytes are untouched
