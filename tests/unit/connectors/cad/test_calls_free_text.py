"""CAD free text out of clear text: remarks and clearance text beyond the code are sealed
with the incident's key (erased with a linked person), coordinates are stored at the
profile's precision, and nothing of the free text reaches the log without a keyring."""

from __future__ import annotations

import asyncio

import pytest

from connectors.cad.mapping import CadMapper, clear_label
from connectors.cad.profile import Profile, load_profile
from connectors.core.memory import MemoryLog
from connectors.core.records import Mapped, RawRecord
from connectors.core.runner import DeadLetterSink, ingest_batch
from hub.kernel.crypto import KeyDestroyedError, MemoryKeyring, incident_subject, unseal
from hub.kernel.deadletters import ErasedPayloadError, open_raw
from hub.kernel.keystore import DeadLetterSealer
from schemas.base import Sealed

NAME = "Jane Quimby"
REMARK = f"RP says {NAME} DOB 1984-07-19 is off her meds"
SEAL = DeadLetterSealer(bytes(32))


def profile(**update: object) -> Profile:
    p = load_profile("generic")
    return p.model_copy(update={"fields": p.fields | {"remarks": "remarks"}, **update})


def row(**values: str) -> dict[str, str]:
    base = {"incident_number": "2026-77", "received_at": "2026-02-01T09:00:00-08:00",
            "call_type_initial": "PERSON IN CRISIS", "longitude": "-122.335167", "latitude": "47.608013",
            "remarks": REMARK, "disposition_code": "", "disposition_text": ""}
    return base | values


def events(result: object) -> dict[str, dict]:
    assert isinstance(result, Mapped)
    return {e.type: e.data for e in result.events}


def test_remarks_are_sealed_with_the_incident_key_and_never_clear() -> None:
    keyring = MemoryKeyring()
    p = profile()
    rec = RawRecord("f.csv:2", b"", row())
    mapper = CadMapper(p, keyring=keyring)
    assert mapper.persons_to_seal(rec) == [incident_subject("COUNTY:2026-77")]
    received = events(mapper.map(rec))["cad.call.received.v4"]
    assert NAME not in str(received)
    assert received["remarks"]["kid"] == keyring.key_id(incident_subject("COUNTY:2026-77"))
    assert unseal(keyring, Sealed.model_validate(received["remarks"])) == {"remarks": REMARK}
    # without a keyring the remark is dropped, never stored clear
    assert events(CadMapper(p).map(rec))["cad.call.received.v4"]["remarks"] is None


def test_coordinates_are_blurred_to_the_profile_precision() -> None:
    rec = RawRecord("f.csv:2", b"", row())
    blurred = events(CadMapper(profile()).map(rec))["cad.call.received.v4"]
    assert (blurred["longitude"], blurred["latitude"]) == (-122.335, 47.608)  # default: 3 decimals
    coarse = events(CadMapper(profile(coordinate_decimals=2)).map(rec))["cad.call.received.v4"]
    assert (coarse["longitude"], coarse["latitude"]) == (-122.34, 47.61)
    exact = events(CadMapper(profile(coordinate_decimals=None)).map(rec))["cad.call.received.v4"]
    assert (exact["longitude"], exact["latitude"]) == (-122.335167, 47.608013)


def test_clearance_text_beyond_the_code_is_sealed_and_the_code_kept() -> None:
    keyring, p = MemoryKeyring(), profile()
    known = events(CadMapper(p, keyring=keyring).map(
        RawRecord("f.csv:2", b"", row(disposition_text="VOLUNTARY MH TRANSPORT"))))
    assert known["cad.call.disposition.v2"]["disposition_text"] == "VOLUNTARY MH TRANSPORT"
    assert known["cad.call.disposition.v2"]["disposition_note"] is None
    clearance = row(disposition_code="VOLTX", disposition_text=f"took {NAME} to Harborview")
    free = events(CadMapper(p, keyring=keyring).map(RawRecord("f.csv:2", b"", clearance)))
    disp = free["cad.call.disposition.v2"]
    assert disp["disposition_text"] is None and disp["disposition_code"] == "VOLTX"
    assert NAME not in str(disp) and disp["disposition_note"] is not None
    assert unseal(keyring, Sealed.model_validate(disp["disposition_note"])) == {
        "disposition_text": f"took {NAME} to Harborview"}
    # the vocabulary in force at ingest decides what is a label (kept clear)
    assert clear_label("advised", p) == "advised" and clear_label("advised Jane", p) is None


def test_erasing_the_incident_key_erases_remarks_and_the_rows_dead_letters() -> None:
    keyring, p = MemoryKeyring(), profile()
    bad = RawRecord("f.csv:3", f"2026-77,not-a-time,{REMARK}".encode(), row(received_at="not a time"))
    good = RawRecord("f.csv:2", b"", row())
    log = MemoryLog()
    counts = asyncio.run(ingest_batch([good, bad], CadMapper(p, keyring=keyring), log,
                                      DeadLetterSink(p.source, "cad", SEAL)))
    assert counts.dead_lettered == 1
    (letter,) = log.letters.values()
    assert letter.raw is not None and letter.raw.kid == keyring.key_id(incident_subject("COUNTY:2026-77"))
    assert asyncio.run(open_raw(letter, SEAL, keyring)) == bad.raw
    keyring.destroy(incident_subject("COUNTY:2026-77"))
    with pytest.raises(ErasedPayloadError):
        asyncio.run(open_raw(letter, SEAL, keyring))
    received = next(e for e in log.events if e.type == "cad.call.received.v4")
    with pytest.raises(KeyDestroyedError):
        unseal(keyring, Sealed.model_validate(received.data["remarks"]))
    # a later export of the erased incident keeps the facts, never the remark
    again = events(CadMapper(p, keyring=keyring).map(RawRecord("f.csv:9", b"", row())))
    assert again["cad.call.received.v4"]["remarks"] is None
