"""Issue 13, finding 8: two schema-valid EIDO documents were refused — the incident id only
in the incident component's ``$id``, and RFC 3339 timestamps with a lowercase ``t``/``z``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connectors.cad.eido import EidoError, EidoMapper, eido_record, incident_of, parse_timestamp
from connectors.cad.profile import load_profile
from connectors.core.records import Mapped
from hub.kernel.settings import PROJECT_ROOT

SAMPLE = PROJECT_ROOT / "tests" / "data" / "cad" / "eido" / "sample-call-transfer.json"
URN = "urn:emergency:uid:incidentid:a56e556d871:bcf.state.pa.us"


def sample() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SAMPLE.read_bytes())
    return doc


@pytest.mark.parametrize("as_array", [False, True])
def test_the_incident_id_in_the_incident_component_is_read(as_array: bool) -> None:
    doc = sample()
    del doc["$id"]
    component = {"$id": URN, "lastUpdateTimeStamp": "2021-04-30T15:00:00-04:00"}
    doc["incidentComponent"] = [component] if as_array else component
    profile = load_profile("eido")
    assert incident_of(doc, profile) == ("bcf.state.pa.us", "a56e556d871")
    res = EidoMapper(profile).map(eido_record(json.dumps(doc).encode(), "x"))
    assert isinstance(res, Mapped) and res.events[0].data["incident_id"] == "bcf.state.pa.us:a56e556d871"
    del component["$id"]
    with pytest.raises(EidoError):  # no id anywhere: still refused, and says why
        incident_of(doc, profile)


def test_lowercase_t_and_z_are_rfc3339_timestamps() -> None:
    lower = (
        "2021-04-30t18:40:00z", "2021-04-30T18:40:00z", "2021-04-30t18:40:00Z", "2021-04-30t14:40:00-04:00"
    )
    for text in lower:
        assert parse_timestamp(text, "x").isoformat() == "2021-04-30T18:40:00+00:00", text
    doc = sample()
    doc["lastUpdateTimeStamp"] = "2021-04-30t18:40:00z"
    res = EidoMapper(load_profile("eido")).map(eido_record(json.dumps(doc).encode(), "x"))
    assert isinstance(res, Mapped) and res.events[0].data["at"] == "2021-04-30T18:40:00Z"
    with pytest.raises(EidoError):
        parse_timestamp("2021-04-30t18:40:00", "x")  # still no offset: refused
