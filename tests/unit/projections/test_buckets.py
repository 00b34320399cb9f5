"""The bucketed rebuild equals the in-memory one: components resolved from keys, facts
spilled into buckets of whole components, each bucket derived alone, counts summed."""

from __future__ import annotations

import json
import random
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections import tables as T
from projections.buckets import (
    FactSpill,
    KeyMismatch,
    KeyUnion,
    SpillWriter,
    add_counts,
    count_rows,
    derive_bucket,
    distribute,
    encode_parts,
    fact_parts,
    fact_records,
    plan_buckets,
    read_bucket,
    record_keys,
    row_records,
)
from projections.counts import Cell
from projections.facts import Fact
from projections.fold import Rows, component, derive, empty_rows
from projections.store import fact_record, table_records
from tests.unit.projections.projection_events import event_lists
from tests.unit.projections.test_fold import CFG


def bucketed(facts: list[Fact], bucket_facts: int) -> tuple[Rows, list[list[Fact]], int]:
    """The rows of ``facts`` derived bucket by bucket, the buckets, and the duplicates."""
    with tempfile.TemporaryDirectory() as tmp:
        spill = FactSpill(Path(tmp), bucket_facts)
        for f in facts:
            spill.add(fact_parts(f), record_keys(f.event_type, f.event_id, f.data))
        rows, buckets = empty_rows(), []
        counts: Counter[Cell] = Counter()
        for bucket in spill.buckets():
            buckets.append(bucket)
            part = derive(bucket, CFG)
            add_counts(counts, part)
            for table, by_key in part.items():
                assert not set(by_key) & set(rows[table]), f"two buckets wrote one {table} row"
                rows[table].update(by_key)
        rows[T.OUTCOME_COUNTS.name] = count_rows(counts)
        assert list(Path(tmp).iterdir()) == []  # the spill cleans up after itself
        return rows, buckets, spill.duplicates


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_lists, st.sampled_from([1, 2, 3, 7, 1000]), st.randoms(use_true_random=False))
def test_bucketed_derive_equals_derive_over_the_whole_log(facts, bucket_facts, rnd) -> None:  # type: ignore[no-untyped-def]
    log = list(facts) + rnd.sample(facts, k=rnd.randint(0, len(facts)))  # re-deliveries
    rnd.shuffle(log)
    rows, buckets, duplicates = bucketed(log, bucket_facts)
    assert rows == derive(facts, CFG)
    assert duplicates == len(log) - len({f.event_id for f in log})
    # every bucket holds whole components, and no component is split over two buckets
    index: dict[str, set[str]] = {}
    by_id = {f.event_id: f for f in log}
    for f in by_id.values():
        for k in f.keys:
            index.setdefault(k, set()).add(f.event_id)
    for bucket in buckets:
        ids = {f.event_id for f in bucket}
        closure, _ = component(index, by_id, (k for f in bucket for k in f.keys))
        assert closure == ids


@settings(max_examples=30, deadline=None)
@given(event_lists)
def test_one_bucket_keeps_the_first_record_of_each_fact_in_log_order(facts) -> None:  # type: ignore[no-untyped-def]
    _, buckets, duplicates = bucketed(list(facts) * 2, 1_000_000)
    assert len(buckets) == 1
    assert [f.event_id for f in buckets[0]] == list(dict.fromkeys(f.event_id for f in facts))
    assert duplicates == len(facts) + (len(facts) - len({f.event_id for f in facts}))


def test_key_union_joins_chains_in_any_order() -> None:
    rnd = random.Random(7)
    edges = [(f"k{i}", f"k{i + 1}") for i in range(0, 200)] + [(f"x{i}", f"x{i + 1}") for i in range(50)]
    rnd.shuffle(edges)
    u = KeyUnion()
    for a, b in edges:
        u.join((a, b))
    assert len({u.find(u.node(f"k{i}")) for i in range(201)}) == 1
    assert len({u.find(u.node(f"x{i}")) for i in range(51)}) == 1
    assert u.find(u.node("k0")) != u.find(u.node("x0"))
    assert len(u) == 201 + 51


@settings(max_examples=200, deadline=None)
@given(event_lists)
def test_record_keys_are_the_keys_of_the_fact(facts) -> None:  # type: ignore[no-untyped-def]
    for f in facts:
        assert record_keys(f.event_type, f.event_id, f.data) == f.keys


def test_a_caller_is_not_a_key_and_an_invalid_payload_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    data = {"incident_id": "sea:1", "at": "2024-01-01T00:00:00+00:00", "person": "psn_" + "a" * 32}
    t = "encounter.person.identified.v1"
    assert record_keys(t, "e1", data) == ("i:sea:1", "p:psn_" + "a" * 32)
    assert record_keys(t, "e1", {**data, "role": "caller"}) == ("i:sea:1",)
    assert record_keys(t, "e1", {}) == ("e:e1",)
    with pytest.raises(KeyError):
        record_keys("no.such.type.v1", "e1", data)
    when = datetime(2024, 1, 1, tzinfo=UTC)
    spill = FactSpill(tmp_path / "a")
    spill.add(("e1", t, "test", when, {**data, "at": "not a time"}), record_keys(t, "e1", data))
    spill.add(("e2", t, "test", when, data), record_keys(t, "e2", data))
    assert [[f.event_id for f in b] for b in spill.buckets()] == [["e2"]] and spill.unreadable == 1
    spill = FactSpill(tmp_path / "b")
    spill.add(("e2", t, "test", when, data), ("i:sea:1",))  # keys that are not the fact's
    with pytest.raises(KeyMismatch):
        list(spill.buckets())


def test_bucket_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        FactSpill(Path(tempfile.gettempdir()), 0)



def sharded(log: list[Fact], shards: int, bucket_facts: int, tmp: Path) -> tuple[Rows, list[list[Fact]], int]:
    """The rebuild's path with ``shards`` readers: each spills its share of the log, one plan
    over all spills packs whole components, each spill is split into bucket files, each
    bucket is read from its files and derived alone."""
    writers = [SpillWriter(tmp, i) for i in range(shards)]
    for n, f in enumerate(log):
        writers[n % shards].add(encode_parts(fact_parts(f)), record_keys(f.event_type, f.event_id, f.data))
    spills = [w.close() for w in writers]
    plan = plan_buckets([s.keys for s in spills], bucket_facts)
    assert sum(plan.sizes) == len(log)
    largest = max(len(component_of(log, f)[1]) for f in log)
    assert all(size <= max(bucket_facts, largest) for size in plan.sizes)  # the memory bound
    for s in spills:
        s.keys.unlink()
    parts = [distribute(s.spill, plan.assignments[i], tmp, i) for i, s in enumerate(spills)]
    rows, buckets, duplicates = empty_rows(), [], 0
    counts: Counter[Cell] = Counter()
    for b in range(len(plan.sizes)):
        bucket = read_bucket([p[b] for p in parts if b in p])
        buckets.append(bucket.facts)
        duplicates += bucket.duplicates
        part = derive(bucket.facts, CFG)
        add_counts(counts, part)
        for table, by_key in part.items():
            assert not set(by_key) & set(rows[table]), f"two buckets wrote one {table} row"
            rows[table].update(by_key)
    rows[T.OUTCOME_COUNTS.name] = count_rows(counts)
    assert list(tmp.iterdir()) == []  # every file is removed once read
    return rows, buckets, duplicates


def component_of(log: list[Fact], f: Fact) -> tuple[set[str], set[str]]:
    """(keys, records) of the component of ``f`` in ``log`` (re-deliveries counted)."""
    by_id = {g.event_id: g for g in log}
    index: dict[str, set[str]] = {}
    for g in by_id.values():
        for k in g.keys:
            index.setdefault(k, set()).add(g.event_id)
    ids, keys = component(index, by_id, f.keys)
    return keys, [g for g in log if g.event_id in ids]  # type: ignore[return-value]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_lists, st.sampled_from([1, 2, 3]), st.sampled_from([1, 2, 5, 1000]),
       st.randoms(use_true_random=False))
def test_buckets_of_several_readers_equal_derive_over_the_whole_log(facts, shards, bucket_facts, rnd) -> None:  # type: ignore[no-untyped-def]
    log = list(facts) + rnd.sample(facts, k=rnd.randint(0, len(facts)))  # re-deliveries
    rnd.shuffle(log)
    with tempfile.TemporaryDirectory() as tmp:
        rows, buckets, duplicates = sharded(log, shards, bucket_facts, Path(tmp))
    assert rows == derive(facts, CFG)
    assert duplicates == len(log) - len({f.event_id for f in log})
    for bucket in buckets:  # whole components only
        for f in bucket:
            keys, _ = component_of(log, f)
            assert {g.event_id for g in bucket} >= {g.event_id for g in log if set(g.keys) & keys}


def normalized(records: list[tuple], table: T.Table) -> list[tuple]:
    """Records with their JSON text parsed (jsonb keeps values, not the text)."""
    at = [i for i, c in enumerate(table.columns) if c in T.JSON_COLUMNS]
    return [tuple(json.loads(v) if i in at else v for i, v in enumerate(r)) for r in records]


@settings(max_examples=100, deadline=None)
@given(event_lists)
def test_copy_records_are_the_records_the_store_writes(facts) -> None:  # type: ignore[no-untyped-def]
    assert normalized(fact_records(facts), T.FACTS) == normalized([fact_record(f) for f in facts], T.FACTS)
    rows = derive(facts, CFG)
    for table in T.ALL_TABLES:
        if rows.get(table.name):
            mine, theirs = (f(table, rows[table.name].values()) for f in (row_records, table_records))
            assert normalized(mine, table) == normalized(theirs, table)


@settings(max_examples=40, deadline=None)
@given(event_lists)
def test_a_bucket_becomes_the_copy_records_of_its_facts_and_rows(facts) -> None:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as tmp:
        spill = FactSpill(Path(tmp), 1_000_000)
        for f in facts + facts[:1]:
            spill.add(fact_parts(f), record_keys(f.event_type, f.event_id, f.data))
        (paths,) = spill.bucket_paths()
        derived = derive_bucket(paths, CFG)
    rows = derive(facts, CFG)
    counts: Counter[Cell] = Counter()
    add_counts(counts, rows)
    assert (derived.facts, derived.duplicates, derived.unreadable) == (len(facts), 1, 0)
    assert derived.counts == counts
    assert derived.records[T.FACTS.name] == fact_records(facts)
    for table in T.DERIVED:
        assert derived.records.get(table.name, []) == row_records(table, rows[table.name].values())
