"""Pure tamper-evidence functions: record digests, chains, seals and partition verification."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.kernel.seal import (
    GENESIS_SEAL,
    ChainRecord,
    SealRecord,
    extend_chain,
    genesis,
    next_seal,
    record_digest,
)
from hub.kernel.verify import verify_partition, verify_seal_chain

T = "p.facts.dispatch"
NOW = datetime(2024, 5, 1, tzinfo=UTC)


def rec(offset: int, value: bytes | None = None, event_id: str | None = None) -> ChainRecord:
    value = value if value is not None else f"value-{offset}".encode()
    headers = [("ce_id", (event_id or f"e{offset}").encode())]
    digest = record_digest(1000 + offset, b"k", value, headers)
    return ChainRecord(offset, digest, event_id or f"e{offset}")


def test_record_digest_covers_every_field() -> None:
    base = record_digest(2, b"k", b"v", [("h", b"x")])
    variants = [
        record_digest(3, b"k", b"v", [("h", b"x")]),
        record_digest(2, b"K", b"v", [("h", b"x")]),
        record_digest(2, None, b"v", [("h", b"x")]),
        record_digest(2, b"k", b"w", [("h", b"x")]),
        record_digest(2, b"k", b"v", [("h", b"y")]),
        record_digest(2, b"k", b"v", []),
        record_digest(2, b"", b"v", [("h", b"x")]),
        record_digest(2, b"kv", b"", [("h", b"x")]),  # no ambiguity across field boundaries
    ]
    assert base == record_digest(2, b"k", b"v", [("h", b"x")])
    assert len({base, *variants}) == len(variants) + 1


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=2, max_size=20, unique=True), st.data())
def test_chain_is_sensitive_to_content_position_and_order(digests: list[bytes], data: st.DataObject) -> None:
    links = list(enumerate(digests))
    head = extend_chain(genesis(T, 0), links)
    assert head == extend_chain(genesis(T, 0), list(links))
    assert head != extend_chain(genesis(T, 1), links)
    i = data.draw(st.integers(0, len(digests) - 1))
    altered = list(links)
    altered[i] = (i, bytes(b ^ 0xFF for b in digests[i]))
    assert extend_chain(genesis(T, 0), altered) != head
    j = (i + 1) % len(digests)
    swapped = list(links)
    swapped[i], swapped[j] = (i, digests[j]), (j, digests[i])
    assert extend_chain(genesis(T, 0), swapped) != head
    shifted = [(o + 1, d) for o, d in links]
    assert extend_chain(genesis(T, 0), shifted) != head


def test_seals_link_and_split_a_chain() -> None:
    records = [rec(o) for o in range(10)]
    s1 = next_seal(T, 0, None, records[:4], 0, NOW)
    s2 = next_seal(T, 0, s1, records[4:], 0, NOW)
    assert (s1.seq, s1.first_offset, s1.last_offset, s1.record_count) == (1, 0, 3, 4)
    assert (s2.seq, s2.first_offset, s2.last_offset, s2.prev_seal_hash) == (2, 4, 9, s1.seal_hash)
    assert s1.prev_seal_hash == GENESIS_SEAL and s1.computed_hash() == s1.seal_hash
    whole = extend_chain(genesis(T, 0), ((r.offset, r.digest) for r in records))
    assert s2.head_hash == whole.hex()  # sealing in rounds = one chain
    with pytest.raises(ValueError, match="already sealed"):
        next_seal(T, 0, s2, [rec(9)], 0, NOW)
    with pytest.raises(ValueError):
        next_seal(T, 0, s2, [], 0, NOW)
    assert SealRecord.model_validate_json(s2.model_dump_json()) == s2


def _world(n: int = 10, split: int = 6):
    records = [rec(o) for o in range(n)]
    s1 = next_seal(T, 0, None, records[:split], 0, NOW)
    s2 = next_seal(T, 0, s1, records[split:], 0, NOW)
    seals = [s1, s2]
    return records, seals, {r.offset: r.digest for r in records}, {r.offset: r.event_id for r in records}


def check(records, seals, digests, index, *, published=None, log_start=0):
    return verify_partition(
        T, 0, log_start_offset=log_start, end_offset=(records[-1].offset + 1 if records else 0),
        records=records, seals=seals, published=seals if published is None else published,
        sealed_digests=digests, index=index,
    )


def kinds(report) -> list[tuple[str, int, int]]:
    return [(b.kind, b.offset, b.last_offset) for b in report.breaks]


def test_an_intact_partition_has_no_breaks_and_counts_unsealed_records() -> None:
    records, seals, digests, index = _world()
    extra = rec(10)
    report = check([*records, extra], seals, digests, index | {10: extra.event_id})
    assert report.breaks == [] and report.unsealed == 1 and report.sealed_through == 9


def test_an_altered_record_is_named_by_offset() -> None:
    records, seals, digests, index = _world()
    records[3] = rec(3, value=b"tampered")
    assert kinds(check(records, seals, digests, index)) == [("altered", 3, 3)]


def test_swapped_records_are_reported_as_reordered() -> None:
    records, seals, digests, index = _world()
    # records 2 and 5 trade places in the partition (each keeps its own bytes)
    moved = list(records)
    moved[2] = ChainRecord(2, records[5].digest, records[5].event_id)
    moved[5] = ChainRecord(5, records[2].digest, records[2].event_id)
    found = kinds(check(moved, seals, digests, index))
    assert [k for k in found if k[0] == "reordered"] == [("reordered", 2, 2), ("reordered", 5, 5)]
    assert {k[0] for k in found} == {"reordered", "forged"}  # the index also disagrees at 2 and 5


def test_a_rewritten_digest_row_alone_is_blamed_on_the_digest_table() -> None:
    records, seals, digests, index = _world()
    digests[4] = b"\0" * 32
    report = check(records, seals, digests, index)
    assert kinds(report) == [("chain", 4, 4)] and "PostgreSQL" in report.breaks[0].detail


def test_records_removed_from_the_start_are_missing() -> None:
    records, seals, digests, index = _world()
    report = check(records[3:], seals, digests, index, log_start=3)
    assert kinds(report) == [("missing", 0, 2)]
    assert "log now starts at offset 3" in report.breaks[0].detail


def test_a_hole_in_the_middle_is_missing() -> None:
    records, seals, digests, index = _world()
    assert kinds(check(records[:4] + records[5:], seals, digests, index)) == [("missing", 4, 4)]


def test_unsealed_but_indexed_records_that_vanish_are_missing() -> None:
    records, seals, digests, index = _world()
    assert kinds(check(records, seals, digests, index | {10: "e10", 11: "e11"})) == [("missing", 10, 11)]


def test_a_record_not_written_by_the_log_is_forged() -> None:
    records, seals, digests, index = _world()
    forged = rec(10, event_id="evil")
    assert kinds(check([*records, forged], seals, digests, index)) == [("forged", 10, 10)]
    # a record at an indexed offset with another id is forged too
    records[7] = rec(7, event_id="other")
    digests[7] = records[7].digest
    found = kinds(check(records, seals, digests, index))
    assert ("forged", 7, 7) in found


def test_a_rewritten_digest_table_breaks_the_chain_head() -> None:
    records, seals, digests, index = _world()
    records[8] = rec(8, value=b"rewritten")
    digests[8] = records[8].digest  # the attacker also updated PostgreSQL's digest
    assert kinds(check(records, seals, digests, index)) == [("chain", 6, 9)]


def test_seal_copies_must_agree() -> None:
    records, seals, digests, index = _world()
    other = seals[1].model_copy(update={"head_hash": "ff" * 32}).sealed()
    found = kinds(check(records, seals, digests, index, published=[seals[0], other]))
    assert found == [("seal_mismatch", 6, 9)]
    assert kinds(check(records, seals, digests, index, published=[seals[0]])) == [("seal_mismatch", 6, 9)]


def test_seal_chain_detects_edited_or_unlinked_seals() -> None:
    _, seals, _, _ = _world()
    edited = seals[1].model_copy(update={"record_count": 3})  # hash not recomputed
    assert [b.kind for b in verify_seal_chain(T, 0, [seals[0], edited], [seals[0], edited])] == ["chain"]
    unlinked = seals[1].model_copy(update={"prev_seal_hash": "00" * 32}).sealed()
    breaks = verify_seal_chain(T, 0, [seals[0], unlinked], [seals[0], unlinked])
    assert [b.kind for b in breaks] == ["chain"] and "link" in breaks[0].detail
