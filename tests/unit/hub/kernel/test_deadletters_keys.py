"""Dead-letter building, masking and redriver lookup; key wrapping; the export is current."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.kernel.crypto import MemoryKeyring, ResolvedKeys
from hub.kernel.deadletters import (
    ErasedPayloadError,
    PersonRawSealer,
    build_dead_letter,
    find_redriver,
    mask_raw,
    open_raw,
    person_sealer,
    redriver_keys,
)
from hub.kernel.keystore import DeadLetterSealer, unwrap_key, wrap_key
from hub.kernel.settings import PROJECT_ROOT
from schemas import export

RAW = b"2023-000311445,PERSON IN CRISIS,Jane Q Public,555-0100"
AT = datetime(2024, 1, 2, tzinfo=UTC)


def test_dead_letter_raw_is_sealed_and_the_id_is_deterministic() -> None:
    sealer = DeadLetterSealer(os.urandom(32))
    kwargs = dict(source="cad/seattle", source_family="cad", record_ref="calls.csv:17", stage="parse",
                  reason="bad date", raw=RAW, sealer=sealer, profile="seattle", at=AT)
    dl = build_dead_letter(**kwargs)
    assert dl.raw is not None and dl.raw_clear is None
    assert b"Jane" not in dl.model_dump_json().encode()
    assert asyncio.run(open_raw(dl, sealer, MemoryKeyring())) == RAW
    assert build_dead_letter(**kwargs).id == dl.id
    assert build_dead_letter(**(kwargs | {"raw": RAW + b" "})).id != dl.id
    assert build_dead_letter(**(kwargs | {"record_ref": "calls.csv:18"})).id != dl.id
    with pytest.raises(ValueError):
        DeadLetterSealer(os.urandom(32)).open(dl.raw)  # another key does not open it


def test_phi_free_input_may_be_stored_clear() -> None:
    dl = build_dead_letter(source="hub/projections", source_family="hub", record_ref="x", stage="project",
                           reason="r", raw=b"plain", sealer=None, at=AT)
    assert dl.raw is None and dl.raw_clear == "plain"
    assert asyncio.run(open_raw(dl, DeadLetterSealer(os.urandom(32)), MemoryKeyring())) == b"plain"


def test_a_persons_dead_letter_is_sealed_under_their_key_and_erased_with_it() -> None:
    """``hub erase`` must leave no readable copy of a person's rejected record: their dead
    letters are sealed under their key (not the global dead-letter key), so destroying the
    key shreds every copy; a person already erased gets a letter without payload."""
    keyring, sealer, person = MemoryKeyring(b"s"), DeadLetterSealer(os.urandom(32)), "psn_" + "a" * 32
    kwargs = dict(source="cases/acme", source_family="cases", record_ref="r1", stage="map",
                  reason="bad date", raw=RAW, profile=None, at=AT)
    dl = build_dead_letter(**kwargs, sealer=PersonRawSealer(keyring, person))
    assert dl.raw is not None and dl.raw.kid == keyring.key_id(person) != sealer.kid
    assert b"Jane" not in dl.model_dump_json().encode()
    assert asyncio.run(open_raw(dl, sealer, keyring)) == RAW
    with pytest.raises(ValueError):
        sealer.open(dl.raw)  # the global key does not open it
    keyring.destroy(person)
    with pytest.raises(ErasedPayloadError):
        asyncio.run(open_raw(dl, sealer, keyring))
    late = build_dead_letter(**(kwargs | {"record_ref": "r2"}), sealer=PersonRawSealer(keyring, person))
    assert late.raw is None and late.raw_clear is None  # nothing of an erased person is stored
    with pytest.raises(ErasedPayloadError):
        asyncio.run(open_raw(late, sealer, keyring))


@given(st.text(max_size=200))
def test_masking_keeps_shape_but_no_letters_or_digits(text: str) -> None:
    masked = mask_raw(text.encode())
    assert len(masked) == len(text.encode().decode("utf-8", errors="replace"))
    assert not any(c.isdigit() and c != "9" for c in masked)
    assert not any(c.isalpha() and c != "x" for c in masked)


def test_masking_example_and_truncation() -> None:
    assert mask_raw(b"Jane,555-0100") == "xxxx,999-9999"
    assert mask_raw(b"a" * 3000, limit=10).endswith("[2990 more characters]")


def test_redriver_lookup_order() -> None:
    dl = build_dead_letter(source="cad/seattle", source_family="cad", record_ref="r", stage="map",
                           reason="r", raw=b"x", sealer=None, profile="seattle", at=AT)
    assert redriver_keys(dl) == ["cad/seattle", "cad/seattle", "seattle", "cad"]

    def by_family(dl, raw):  # pragma: no cover - identity only
        return []

    def by_source(dl, raw):  # pragma: no cover - identity only
        return []

    assert find_redriver(dl, {"cad": by_family}) is by_family
    assert find_redriver(dl, {"cad": by_family, "cad/seattle": by_source}) is by_source
    assert find_redriver(dl, {"ehr": by_family}) is None

    # a reference to the exact profile used is looked up by the profile's name
    ref = dl.model_copy(update={"profile": "seattle@sha256:0123456789abcdef"})
    assert ref.profile_name == "seattle"
    assert redriver_keys(ref) == redriver_keys(dl)
    assert redriver_keys(dl.model_copy(update={"profile": None})) == ["cad/seattle", "cad"]


def test_person_keys_are_wrapped_under_the_master_key_and_bound_to_their_id() -> None:
    master, key = os.urandom(32), os.urandom(32)
    wrapped = wrap_key(master, "k_1", key)
    assert key not in wrapped
    assert unwrap_key(master, "k_1", wrapped) == key
    with pytest.raises(ValueError):
        unwrap_key(master, "k_2", wrapped)  # a wrapped key moved to another id does not open
    with pytest.raises(ValueError):
        unwrap_key(os.urandom(32), "k_1", wrapped)


def test_committed_schema_export_is_current() -> None:
    root = PROJECT_ROOT / "schemas"
    files = export.render()
    stale = [rel for rel, text in files.items()
             if not (root / rel).exists() or (root / rel).read_text() != text]
    extra = sorted(p.name for p in (root / "jsonschema").glob("*.json")
                   if f"jsonschema/{p.name}" not in files)
    assert not stale and not extra, (
        f"schemas/ export is stale (run `hub schemas export schemas`): changed {stale}, removed {extra}"
    )


def test_export_covers_every_event_type_and_topic() -> None:
    from schemas import EVENT_TYPES
    from schemas.topics import catalogue

    files = export.render()
    for t in EVENT_TYPES:
        assert f"jsonschema/{t}.json" in files
    assert {"jsonschema/envelope.json", "jsonschema/deadletter.json", "jsonschema/seal.json"} <= set(files)
    doc = export.asyncapi()
    assert doc["asyncapi"] == "3.0.0"
    assert {c["address"] for c in doc["channels"].values()} == {s.name for s in catalogue()}
    outcome = doc["channels"]["outcomes.counts"]
    assert outcome["x-deidentification"]["small_cell_range"] == [1, 10]
    assert doc["channels"]["facts.dispatch"]["bindings"]["kafka"]["topicConfiguration"]["retention.ms"] == -1


def test_redriver_kwargs_passes_only_declared_keyword_only_resources() -> None:
    from types import SimpleNamespace

    from hub.kernel.deadletters import redriver_kwargs

    rt = SimpleNamespace(keyring="KR", pseudonym_key=b"PK", deadletter_sealer="no")

    def plain(dl, raw):  # type: ignore[no-untyped-def]
        return []

    def with_keyring(dl, raw, *, keyring):  # type: ignore[no-untyped-def]
        return []

    def both(dl, raw, *, keyring, pseudonym_key):  # type: ignore[no-untyped-def]
        return []

    def positional(dl, raw, keyring=None):  # type: ignore[no-untyped-def]
        return []

    assert redriver_kwargs(plain, rt) == {}
    assert redriver_kwargs(with_keyring, rt) == {"keyring": "KR"}
    assert redriver_kwargs(both, rt) == {"keyring": "KR", "pseudonym_key": b"PK"}
    assert redriver_kwargs(positional, rt) == {}  # only keyword-only parameters are resources


def test_an_unverified_pseudonym_never_creates_a_key_for_its_dead_letter() -> None:
    """An inbound message naming a pseudonym the hub never keyed is sealed with the
    dead-letter key (no key is created for it); a known person's under theirs; an erased
    person's letter keeps no payload."""
    sealer = DeadLetterSealer(os.urandom(32))
    live, gone, stranger = "psn_" + "1" * 32, "psn_" + "2" * 32, "psn_" + "3" * 32
    keys = ResolvedKeys({live: "k_live", gone: "k_gone", stranger: "k_new"},
                        {"k_live": os.urandom(32), "k_gone": None, "k_new": None}, destroyed={"k_gone"})
    assert person_sealer(keys, stranger, sealer) is sealer
    assert person_sealer(keys, live, sealer).seal(RAW).kid == "k_live"
    dl = build_dead_letter(source="ehr/mllp", source_family="ehr", record_ref="m1", stage="inbound",
                           reason="r", raw=RAW, sealer=person_sealer(keys, gone, sealer), at=AT)
    assert dl.raw is None and dl.raw_clear is None
