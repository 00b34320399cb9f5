"""The CAD mapper parses and content-hashes each record once per ingest (``revision_key``
then ``map`` share the parse), on the fast path and on the reference path, and the result
is exactly what a fresh parse gives."""

from __future__ import annotations

import asyncio

import pytest

from connectors.cad import fast, mapping
from connectors.cad.csvfile import read_csv_file
from connectors.cad.ingest import chunks, ingest_files
from connectors.cad.mapping import CadMapper
from connectors.cad.profile import load_profile
from connectors.core.counts import IngestCounts
from connectors.core.memory import MemoryLog, MemoryRevisionStore
from connectors.core.records import RawRecord
from connectors.core.runner import DeadLetterSink, ingest_batch
from hub.kernel.keystore import DeadLetterSealer
from hub.kernel.settings import PROJECT_ROOT

SEATTLE = PROJECT_ROOT / "tests" / "data" / "cad" / "seattle" / "call-data-sample.csv"
SEAL = DeadLetterSealer(bytes(32))
ROWS = [
    {"CAD Event Number": "9", "Original Time Queued": "13/45/2023 99:00:00 XM"},  # FieldError
    {"CAD Event Number": "", "Original Time Queued": "01/01/2023 1:00:00 AM"},  # rejection
]


def facts(result: object) -> object:
    """A map result without the envelopes' ``recordedat`` (the clock at mapping time)."""
    events = getattr(result, "events", None)
    if events is None:
        return result
    return [ev.model_dump(exclude={"recordedat"}) for ev in events], result.unknown_disposition  # type: ignore[attr-defined]


def _count_calls(monkeypatch: pytest.MonkeyPatch, reference: bool) -> dict[str, int]:
    """Counts the row reads and content hashes of one path."""
    calls = {"read_row": 0, "content_hash": 0}
    owner: object = mapping if reference else fast.FastRows
    read_name = "read_row" if reference else "_parse"
    hash_owner = mapping.CadRow if reference else fast.FastRows
    read_row, content_hash = getattr(owner, read_name), hash_owner.content_hash

    def counted_read_row(*a, **k):  # type: ignore[no-untyped-def]
        calls["read_row"] += 1
        return read_row(*a, **k)

    def counted_hash(*a, **k):  # type: ignore[no-untyped-def]
        calls["content_hash"] += 1
        return content_hash(*a, **k)

    monkeypatch.setattr(owner, read_name, counted_read_row)
    monkeypatch.setattr(hash_owner, "content_hash", counted_hash)
    return calls


def test_ingest_parses_and_hashes_each_row_once(monkeypatch: pytest.MonkeyPatch) -> None:
    p = load_profile("seattle")
    calls = _count_calls(monkeypatch, reference=False)
    counts = asyncio.run(ingest_files([SEATTLE], p, MemoryLog(), SEAL, MemoryRevisionStore()))
    assert counts.read == 222 and counts.balanced()
    assert calls["read_row"] == 222
    assert calls["content_hash"] <= 222  # rows with an updated-at need no hash at all


def test_the_reference_path_parses_and_hashes_each_row_once(monkeypatch: pytest.MonkeyPatch) -> None:
    p = load_profile("seattle")
    calls = _count_calls(monkeypatch, reference=True)
    mapper, log, revisions = CadMapper(p, reference=True), MemoryLog(), MemoryRevisionStore()
    sink = DeadLetterSink(mapper.source, "cad", SEAL)
    counts = IngestCounts()
    for chunk in chunks(read_csv_file(SEATTLE, p)):
        counts.add(asyncio.run(ingest_batch(chunk, mapper, log, sink, revisions)))
    assert counts.read == 222 and counts.balanced()
    assert calls["read_row"] == 222
    assert calls["content_hash"] <= 222


@pytest.mark.parametrize("reference", [False, True])
def test_shared_parse_maps_exactly_like_a_fresh_parse(reference: bool) -> None:
    p = load_profile("seattle")
    records = read_csv_file(SEATTLE, p)
    extra = [RawRecord(f"x{i}", b"", {c: row.get(c, "") for c in p.columns}) for i, row in enumerate(ROWS)]
    shared = CadMapper(p, reference=reference)
    for rec in [*records, *extra]:
        key = shared.revision_key(rec)
        first = key.revision if key else None
        assert facts(shared.map(rec, first)) == facts(CadMapper(p).map(rec, first))
        # a second map of the same record parses afresh (the memo is single-use)
        assert facts(shared.map(rec, "sha256:other")) == facts(CadMapper(p).map(rec, "sha256:other"))
    assert not shared._parsed  # every parse handed over to its map


def test_the_parse_memo_is_bounded_and_keyed_by_the_record_object() -> None:
    p = load_profile("seattle")
    records = read_csv_file(SEATTLE, p)
    m = CadMapper(p)
    m.PARSED_MAX = 10  # type: ignore[misc]
    for rec in records:
        m.revision_key(rec)
    assert len(m._parsed) == 10
    # an equal but distinct record object is parsed afresh, not served another's parse
    twin = RawRecord(records[-1].ref, records[-1].raw, dict(records[-1].fields))
    assert facts(m.map(twin)) == facts(CadMapper(p).map(records[-1]))
    assert len(m._parsed) == 10
