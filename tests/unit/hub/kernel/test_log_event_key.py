"""The event index's key of an event id (:func:`hub.kernel.log.event_key`): a canonical uuid
is its own key; any other id gets a stable, distinct version-8 uuid (the derivation
migration 0004 repeats in SQL)."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from hub.kernel.log import event_key
from schemas.envelope import deterministic_id


def test_a_deterministic_id_is_its_own_key() -> None:
    eid = deterministic_id("cad/sea", "R-1", "0", "received")
    assert str(event_key(eid)) == eid


def test_a_non_canonical_id_gets_a_derived_version_8_key() -> None:
    key = event_key("legacy-1")
    assert key.version == 8 and key.variant == uuid.RFC_4122
    assert key == event_key("legacy-1") != event_key("legacy-2")
    # the upper-case spelling of a uuid is another id, so another key
    eid = deterministic_id("cad/sea", "R-1", "0", "received")
    assert event_key(eid.upper()) != event_key(eid)


@given(st.text(min_size=1, max_size=60))
def test_distinct_ids_get_distinct_keys(text: str) -> None:
    assert event_key(text) != event_key(text + "x")
    assert event_key(text) == event_key(text)
