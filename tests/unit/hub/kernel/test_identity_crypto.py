"""Pseudonyms and per-person sealing: the two PHI guarantees the log relies on."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.kernel.crypto import KeyDestroyedError, MemoryKeyring, seal, seal_context, seal_with_key, unseal
from hub.kernel.identity import mask, pseudonymize

KEY = b"k" * 32
PERSON = "psn_" + "0" * 32


@given(st.text(min_size=1).filter(str.strip))
def test_pseudonym_is_stable_and_hides_the_identifier(identifier: str) -> None:
    p = pseudonymize(KEY, "county-mpi", identifier)
    assert p == pseudonymize(KEY, "county-mpi", identifier)
    assert p.startswith("psn_") and len(p) == 36
    assert identifier.strip() not in p[4:] or len(identifier.strip()) < 3


def test_pseudonym_depends_on_key_namespace_and_identifier() -> None:
    base = pseudonymize(KEY, "county-mpi", "12345")
    assert pseudonymize(b"x" * 32, "county-mpi", "12345") != base
    assert pseudonymize(KEY, "mrn:clinic-a", "12345") != base
    assert pseudonymize(KEY, "county-mpi", "12346") != base
    # formatting differences of the same identifier do not split a person
    assert pseudonymize(KEY, "County-MPI", "  12345 ") == base


def test_empty_identifier_is_refused() -> None:
    with pytest.raises(ValueError):
        pseudonymize(KEY, "county-mpi", "  ")


def test_mask_never_returns_the_value() -> None:
    assert mask("Jane Doe") == "Ja…[8]"
    assert "Doe" not in mask("Jane Doe")
    assert mask(None) == "∅"


@given(st.dictionaries(st.text(max_size=10), st.text(max_size=50), max_size=5))
def test_sealed_payload_round_trips(payload: dict[str, str]) -> None:
    ring = MemoryKeyring()
    sealed = seal(ring, PERSON, payload, context="test/fact/note")
    assert PERSON not in sealed.model_dump_json()
    assert unseal(ring, sealed) == payload


def test_destroying_the_key_erases_every_copy() -> None:
    ring = MemoryKeyring()
    copies = [seal(ring, PERSON, {"note": "seen at ER"}, context="test/fact/note") for _ in range(3)]
    ring.destroy(PERSON)
    for sealed in copies:
        with pytest.raises(KeyDestroyedError):
            unseal(ring, sealed)
    with pytest.raises(KeyDestroyedError):
        seal(ring, PERSON, {"note": "new"}, context="test/fact/note")


def test_tampered_ciphertext_is_detected() -> None:
    ring = MemoryKeyring()
    sealed = seal(ring, PERSON, {"note": "x"}, context="test/fact/note")
    forged = sealed.model_copy(update={"ciphertext": sealed.ciphertext[:-4] + "AAAA"})
    with pytest.raises(ValueError, match="authentication"):
        unseal(ring, forged)


def test_sealing_is_byte_identical_on_a_retry_and_distinct_otherwise() -> None:
    """A producer that crashed after Kafka's acknowledgement re-maps its record: the sealed
    field must come out byte-identical (else ``hub verify`` sees a conflicting copy), while
    another fact, another field or another plaintext gets another nonce."""
    ring = MemoryKeyring()
    ctx = seal_context("cases/test", "rec-1", 2, "note")
    first = seal(ring, PERSON, {"note": "seen at ER"}, context=ctx)
    assert seal(ring, PERSON, {"note": "seen at ER"}, context=ctx) == first
    others = [
        seal(ring, PERSON, {"note": "seen at ER"}, context=seal_context("cases/test", "rec-2", 2, "note")),
        seal(ring, PERSON, {"note": "seen at ER"}, context=seal_context("cases/test", "rec-1", 3, "note")),
        seal(ring, PERSON, {"note": "seen at ER"}, context=seal_context("cases/test", "rec-1", 2, "reason")),
        seal(ring, PERSON, {"note": "seen at the ER"}, context=ctx),
    ]
    nonces = {first.nonce, *(o.nonce for o in others)}
    assert len(nonces) == 5 and all(len(base64.b64decode(n)) == 12 for n in nonces)
    assert all(unseal(ring, o)["note"].startswith("seen at") for o in others)
    other_key = seal_with_key(b"z" * 32, first.kid, {"note": "seen at ER"}, context=ctx)
    assert other_key.nonce != first.nonce


def test_a_sealing_context_is_required() -> None:
    with pytest.raises(ValueError, match="context"):
        seal(MemoryKeyring(), PERSON, {"note": "x"}, context="")
