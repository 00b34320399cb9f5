"""Pure classification of unindexed records: an earlier, identical copy of an indexed event
(an appender crashed after Kafka acknowledged and before the index commit) is an
``orphan_copy``, not a break; every other unindexed record stays ``forged``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from hub.kernel.seal import ChainRecord, next_seal, record_digest
from hub.kernel.verify import (
    Break,
    OrphanCopy,
    VerifyReport,
    classify_unindexed,
    copy_lookups,
    envelope_identity,
    verify_partition,
)
from schemas.dispatch import UnitDispatched
from schemas.envelope import Envelope, new_event

T = "p.facts.dispatch"
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
NOW = datetime(2024, 5, 1, tzinfo=UTC)


def event(n: int, *, recorded: datetime = T0) -> Envelope:
    return new_event(
        UnitDispatched(incident_id=f"sea:{n % 3}", at=T0 + timedelta(minutes=n), unit_id="p1"),
        source="cad/seattle", record_id=f"r{n}", recorded_at=recorded,
    )


def retried(env: Envelope) -> Envelope:
    """The same fact as a retry maps it again: later ``recordedat``, other correlation."""
    later = env.recordedat + timedelta(minutes=3)
    return env.model_copy(update={"recordedat": later, "correlationid": "c-2"})


@dataclass(frozen=True)
class Stored:
    """One record of a partition: its offset and the bytes a producer wrote."""

    offset: int
    value: bytes | None
    event_id: str | None


def chain(stored: Stored) -> ChainRecord:
    headers = [] if stored.event_id is None else [("ce_id", stored.event_id.encode())]
    return ChainRecord(stored.offset, record_digest(1000 + stored.offset, b"k", stored.value, headers),
                       stored.event_id)


def put(env: Envelope | bytes, offset: int, event_id: str | None = None) -> Stored:
    if isinstance(env, Envelope):
        return Stored(offset, env.to_bytes(), event_id or env.id)
    return Stored(offset, env, event_id)


def run(stored: list[Stored], index: dict[int, str], *, seal: bool = True, partition: int = 0,
        elsewhere: dict[tuple[str, int, int], bytes] | None = None,
        located_extra: dict[str, tuple[str, int, int]] | None = None):
    """verify_partition over ``stored`` with the evidence run_verify would gather: where the
    index places each looked-up id and the identity of the records at those positions."""
    records = [chain(s) for s in stored]
    seals = [next_seal(T, partition, None, records, 0, NOW)] if seal and records else []
    lookups = copy_lookups(T, partition, records, index)
    located = {eid: (T, partition, o) for o, eid in index.items() if eid in lookups} | (located_extra or {})
    identities = {(T, partition, s.offset): envelope_identity(s.value) for s in stored}
    identities |= {loc: envelope_identity(v) for loc, v in (elsewhere or {}).items()}
    return verify_partition(
        T, partition, log_start_offset=0, end_offset=len(stored), records=records, seals=seals,
        published=seals, sealed_digests={r.offset: r.digest for r in records} if seal else {},
        index=index, located=located, identities=identities,
    )


def kinds(report) -> list[tuple[str, int]]:
    return [(b.kind, b.offset) for b in report.breaks]


# --------------------------------------------------------------------------- identity


def test_identity_ignores_what_a_retry_changes() -> None:
    env = event(1)
    assert envelope_identity(env.to_bytes()) == envelope_identity(retried(env).to_bytes())
    shifted = env.model_copy(update={"time": env.time.astimezone(timezone(timedelta(hours=-8)))})
    assert envelope_identity(shifted.to_bytes()) == envelope_identity(env.to_bytes())  # same instant


def test_identity_covers_every_identifying_field() -> None:
    env = event(1)
    variants = [
        env.model_copy(update={"id": event(2).id}),
        env.model_copy(update={"type": "cad.unit.en_route.v1"}),
        env.model_copy(update={"source": "cad/tacoma"}),
        env.model_copy(update={"subject": "sea:9"}),
        env.model_copy(update={"time": env.time + timedelta(seconds=1)}),
        env.model_copy(update={"data": env.data | {"unit_id": "p2"}}),
    ]
    ids = {envelope_identity(v.to_bytes()) for v in variants}
    assert envelope_identity(env.to_bytes()) not in ids and len(ids) == len(variants)


def test_identity_compares_upcast_versions() -> None:
    data = {"incident_id": "sea:1", "agency": "sea", "cad_number": "1", "at": T0.isoformat(),
            "category": "welfare", "behavioral_health": False, "precinct": "N", "sector": None, "beat": "B1"}
    old = event(1).model_copy(update={"type": "cad.call.received.v1", "data": data})
    assert envelope_identity(old.to_bytes()) == envelope_identity(old.current().to_bytes())


def test_identity_of_a_non_envelope_is_none() -> None:
    assert envelope_identity(None) is None
    assert envelope_identity(b"{not json") is None
    assert envelope_identity(b'{"id": "x"}') is None


# --------------------------------------------------------------------------- classification


def test_an_earlier_identical_copy_is_an_orphan_not_a_break() -> None:
    envs = [event(n) for n in range(6)]
    # the crashed attempt wrote envs[2] at offset 2; the retry wrote it again at offset 6
    stored = [put(e, i) for i, e in enumerate(envs)] + [put(retried(envs[2]), 6)]
    index = {i: e.id for i, e in enumerate(envs) if i != 2} | {6: envs[2].id}
    report = run(stored, index)
    assert report.breaks == []
    assert report.orphan_copies == [OrphanCopy(T, 0, 2, envs[2].id, T, 0, 6)]
    assert "not a break" in report.orphan_copies[0].describe()


def test_a_fresh_unindexed_id_is_forged() -> None:
    envs = [event(n) for n in range(4)]
    stored = [put(e, i) for i, e in enumerate(envs)] + [put(event(99), 4)]
    report = run(stored, {i: e.id for i, e in enumerate(envs)})
    assert kinds(report) == [("forged", 4)] and report.orphan_copies == []
    assert "no index entry" in report.breaks[0].detail


def test_an_indexed_id_with_altered_content_is_forged() -> None:
    envs = [event(n) for n in range(4)]
    altered = envs[3].model_copy(update={"data": envs[3].data | {"unit_id": "p9"}})
    stored = [put(e, i) for i, e in enumerate(envs)] + [put(altered, 4)]
    report = run(stored, {i: e.id for i, e in enumerate(envs)})
    assert kinds(report) == [("forged", 4)] and report.orphan_copies == []
    assert "different content" in report.breaks[0].detail and f"{T}[0]@3" in report.breaks[0].detail


def test_a_copy_after_the_indexed_record_is_forged() -> None:
    envs = [event(n) for n in range(4)]
    stored = [put(e, i) for i, e in enumerate(envs)] + [put(retried(envs[1]), 4)]
    report = run(stored, {i: e.id for i, e in enumerate(envs)})
    assert kinds(report) == [("forged", 4)] and "written after it" in report.breaks[0].detail


def test_a_header_naming_an_indexed_id_over_another_envelope_is_forged() -> None:
    envs = [event(n) for n in range(4)]
    other = event(50)
    stored = [put(other, 0, event_id=envs[2].id)] + [put(e, i + 1) for i, e in enumerate(envs)]
    report = run(stored, {i + 1: e.id for i, e in enumerate(envs)})
    assert kinds(report) == [("forged", 0)] and "different content" in report.breaks[0].detail


def test_garbage_under_an_indexed_id_is_forged() -> None:
    envs = [event(n) for n in range(3)]
    stored = [put(b"{garbage", 0, event_id=envs[1].id)] + [put(e, i + 1) for i, e in enumerate(envs)]
    report = run(stored, {i + 1: e.id for i, e in enumerate(envs)})
    assert kinds(report) == [("forged", 0)] and "not a valid envelope" in report.breaks[0].detail


def test_a_copy_whose_indexed_record_cannot_be_read_is_forged() -> None:
    env = event(1)
    elsewhere = (T, 3, 40)  # indexed in another partition, not readable (absent from identities)
    report = run([put(env, 0)], {}, located_extra={env.id: elsewhere})
    assert kinds(report) == [("forged", 0)] and "cannot be read" in report.breaks[0].detail


def test_a_copy_of_an_event_indexed_in_another_partition_is_an_orphan() -> None:
    env = event(1)
    home = (T, 3, 2)  # the partition count changed between the attempts
    report = run([put(env, 5)], {}, located_extra={env.id: home},
                 elsewhere={home: retried(env).to_bytes()})
    assert report.breaks == [] and report.orphan_copies == [OrphanCopy(T, 0, 5, env.id, *home)]


def test_without_copy_evidence_every_unindexed_record_is_forged() -> None:
    envs = [event(n) for n in range(3)]
    stored = [put(envs[0], 0), put(envs[1], 1), put(envs[0], 2)]
    records = [chain(s) for s in stored]
    report = verify_partition(T, 0, log_start_offset=0, end_offset=3, records=records, seals=[],
                              published=[], sealed_digests={}, index={1: envs[1].id, 2: envs[0].id})
    assert kinds(report) == [("forged", 0)]


def test_classify_unindexed_never_blesses_a_record_without_event_id() -> None:
    rec = ChainRecord(4, b"\0" * 32, None)
    found = classify_unindexed(T, 0, rec, {}, {(T, 0, 4): "x"})
    assert isinstance(found, Break) and found.kind == "forged"


def test_copy_lookups_names_unindexed_records_with_an_id() -> None:
    records = [ChainRecord(0, b"a", "e1"), ChainRecord(1, b"b", "e2"), ChainRecord(2, b"c", None),
               ChainRecord(3, b"d", "e1")]
    assert copy_lookups(T, 1, records, {1: "e2"}) == {"e1": [(T, 1, 0), (T, 1, 3)]}


def test_the_report_and_its_json_carry_orphans_without_failing() -> None:
    envs = [event(n) for n in range(3)]
    stored = [put(envs[0], 0), put(envs[1], 1), put(retried(envs[0]), 2), put(envs[2], 3)]
    part = run(stored, {1: envs[1].id, 2: envs[0].id, 3: envs[2].id})
    report = VerifyReport(NOW, NOW, [part])
    doc = report.to_json()
    assert report.ok and doc["ok"] is True and doc["breaks"] == []
    assert doc["orphan_copies"] == [{
        "topic": T, "partition": 0, "offset": 0, "event_id": envs[0].id,
        "indexed_topic": T, "indexed_partition": 0, "indexed_offset": 2,
    }]
    assert doc["partitions"][0]["orphan_copies"] == 1 and doc["partitions"][0]["breaks"] == 0


MUTATIONS = ("identical", "retried", "data", "time", "source", "fresh_id")


@given(st.lists(st.tuples(st.sampled_from(MUTATIONS), st.booleans()), max_size=8), st.integers(3, 8))
def test_exactly_the_earlier_identical_copies_are_orphans(copies, n) -> None:
    """A log of ``n`` indexed events plus unindexed copies (mutated or not, placed before or
    after their indexed record): each unindexed record is either an orphan copy or a forged
    break, and it is an orphan exactly when it is identical in its identifying fields and
    precedes the indexed record."""
    envs = [event(k) for k in range(n)]
    before: list[tuple[Envelope, bool]] = []
    after: list[tuple[Envelope, bool]] = []
    for i, (mutation, early) in enumerate(copies):
        src = envs[i % n]
        copy = {
            "identical": src,
            "retried": retried(src),
            "data": src.model_copy(update={"data": src.data | {"unit_id": "zz"}}),
            "time": src.model_copy(update={"time": src.time + timedelta(hours=1)}),
            "source": src.model_copy(update={"source": "cad/elsewhere"}),
            "fresh_id": event(1000 + i),
        }[mutation]
        (before if early else after).append((copy, mutation in ("identical", "retried") and early))
    layout = [(c, ok, False) for c, ok in before] + [(e, False, True) for e in envs] + [
        (c, ok, False) for c, ok in after
    ]
    stored = [put(env, o) for o, (env, _, _) in enumerate(layout)]
    index = {o: env.id for o, (env, _, indexed) in enumerate(layout) if indexed}
    report = run(stored, index)
    expect_orphans = {o for o, (_, ok, _) in enumerate(layout) if ok}
    expect_forged = {o for o, (_, ok, indexed) in enumerate(layout) if not ok and not indexed}
    assert {o.offset for o in report.orphan_copies} == expect_orphans
    assert {b.offset for b in report.breaks} == expect_forged
    assert all(b.kind == "forged" for b in report.breaks)
    assert report.unsealed == 0 and report.records == len(layout)
    assert all(o.indexed_offset > o.offset for o in report.orphan_copies)

