"""Only facts the hub appended are folded (issue 12, item 2), on the real broker and
PostgreSQL: consent and case facts produced straight into the fact topics — without a
record MAC, with a wrong one, with one copied from a genuine record, under a key the hub
does not accept — are quarantined by the projector and by the batch replay, never reach
the consent read model or a person's program scope, and their offsets are consumed; a
record-MAC key rotation keeps old records folding while the old key is accepted and
quarantines them once it is retired; a log written before MACs folds only what the event
index confirms."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.entry.api.readmodels import PostgresReadModels
from hub.entry.api.scope import scope_from_entries
from hub.kernel import metrics
from hub.kernel.identity import pseudonymize
from hub.kernel.kafka_io import scan_records
from hub.kernel.keys import record_mac_key_name
from hub.kernel.log import EventLog
from hub.kernel.quarantine import record_cutover
from hub.kernel.recordmac import MacKeys
from hub.kernel.runtime import Runtime
from hub.kernel.settings import RecordMacSettings, Settings
from projections import queries
from projections.projector import project
from projections.replay import replay_into
from schemas.case import CaseOpened
from schemas.consent import ConsentGranted
from schemas.envelope import Envelope, new_event
from schemas.topics import deadletter_topic, fact_topic
from tests.integration.forge import produce_forged

pytestmark = pytest.mark.integration

OLD_KEY = bytes(range(200, 232))


def consent(cid: str, person: str) -> Envelope:
    data = ConsentGranted(
        consent_id=cid, person=person, at=datetime.now(UTC) - timedelta(seconds=1),
        recipients=("clinic-fhir",), scope=("part2",), expires_at=datetime.now(UTC) + timedelta(days=30),
    )
    return new_event(data, source="test/consents", record_id=cid)


def case_opened(case_id: str, person: str, program: str) -> Envelope:
    at = datetime.now(UTC) - timedelta(seconds=1)
    data = CaseOpened(case_id=case_id, person=person, at=at, program=program)
    return new_event(data, source="test/cases", record_id=case_id)


async def quarantine_letters(rt: Runtime) -> list[dict]:
    rows = await rt.pool.fetch(
        f"SELECT record_ref, reason FROM {rt.settings.core_schema}.deadletters "
        "WHERE source_family = 'quarantine' ORDER BY record_ref"
    )
    return [dict(r) for r in rows]


async def consent_ids(rt: Runtime, schema: str, person: str) -> set[str]:
    reader = queries.ReadModelReader.from_settings(rt.pool, rt.settings, schema=schema)
    return {c["consent_id"] for c in await reader.consents(person)}


async def programs(rt: Runtime, schema: str, person: str) -> frozenset[str]:
    """The programs whose clinicians the read API lets read the person's timeline: the
    scope it derives from the timeline it reads (``hub.entry.api``)."""
    settings = rt.settings.model_copy(
        update={"postgres": rt.settings.postgres.model_copy(update={"schema_": schema})}
    )
    entries = await PostgresReadModels(settings, rt.pool).person_timeline(person)
    return scope_from_entries(entries).programs


def quarantined_metric() -> float:
    return metrics.RECORDS_QUARANTINED.labels("projector")._value.get()


async def test_forged_consent_and_case_facts_are_quarantined_never_folded(proj_rt: Runtime) -> None:
    rt = proj_rt
    schema = f"{rt.settings.kafka.topic_prefix}_forged"
    prefix = rt.settings.kafka.topic_prefix
    person = pseudonymize(rt.pseudonym_key, "test:forged", "victim")
    consent_topic, case_topic = fact_topic(prefix, "consent"), fact_topic(prefix, "case")

    genuine = [consent("C-real", person), case_opened("CASE-a", person, "program-a")]
    await rt.log.append(genuine)
    stats = await project(rt, schema=schema, until_caught_up=True)
    assert await consent_ids(rt, schema, person) == {"C-real"}
    assert await programs(rt, schema, person) == {"program-a"}

    real_records = [r async for r in scan_records(rt.kafka, [consent_topic], role="test")]
    genuine_id = genuine[0].id.encode()
    real_headers = next(list(r.headers) for r in real_records if dict(r.headers)["ce_id"] == genuine_id)
    before = quarantined_metric()
    forged = [
        (consent_topic, consent("C-none", person), "none"),
        (consent_topic, consent("C-wrong", person), "wrong"),
        (consent_topic, consent("C-copied", person), "copied"),
        (consent_topic, consent("C-k9", person), "unknown-key"),
        (case_topic, case_opened("CASE-b", person, "program-b"), "none"),
        (case_topic, case_opened("CASE-c", person, "program-c"), "copied"),
    ]
    refs = set()
    for topic, env, how in forged:
        p, o = await produce_forged(rt, topic, env, how, copy_from=real_headers)  # type: ignore[arg-type]
        refs.add(f"{topic}[{p}]@{o}")
    stats = await project(rt, schema=schema, until_caught_up=True)  # until_caught_up: every offset consumed

    assert stats.quarantined == len(forged) and stats.new_facts == 0
    assert stats.records == len(forged)  # counts add up: each forged record consumed once, as quarantined
    assert quarantined_metric() - before == len(forged)
    assert await consent_ids(rt, schema, person) == {"C-real"}
    assert await programs(rt, schema, person) == {"program-a"}  # no widened program access
    letters = await quarantine_letters(rt)
    assert {letter["record_ref"] for letter in letters} == refs
    reasons = " ".join(letter["reason"] for letter in letters)
    assert "missing MAC" in reasons and "invalid MAC" in reasons and "'k9' is not accepted" in reasons
    assert "victim" not in reasons and person not in reasons  # PHI-free reasons
    q_topic = deadletter_topic(prefix, "quarantine")
    on_topic = [r async for r in scan_records(rt.kafka, [q_topic], role="test")]
    assert len(on_topic) == len(forged)
    assert all(b"C-none" not in r.value for r in on_topic)  # raw record sealed, not in clear

    replayed = await replay_into(rt.settings, rt.pool, rt.kafka, f"{schema}_rp")
    assert replayed.quarantined == len(forged) and replayed.facts == len(genuine)
    assert await consent_ids(rt, f"{schema}_rp", person) == {"C-real"}
    assert await programs(rt, f"{schema}_rp", person) == {"program-a"}


async def test_key_rotation_old_records_fold_while_accepted_and_are_quarantined_after(
    proj_rt: Runtime, tmp_path: Path
) -> None:
    rt = proj_rt
    schema = f"{rt.settings.kafka.topic_prefix}_forged"
    person = pseudonymize(rt.pseudonym_key, "test:forged", "rotated")
    old_log = EventLog(rt.settings, rt.pool, rt.kafka, mac_keys=MacKeys("k-old", {"k-old": OLD_KEY}))
    await old_log.start()
    try:
        await old_log.append([consent("C-old-key", person)])
    finally:
        await old_log.stop()
    await rt.log.append([consent("C-current-key", person)])

    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    current = rt.log.mac_keys.current
    for secret in rt.settings.keys_dir.iterdir():  # the same keys (database passwords included)
        if secret.is_file():
            shutil.copy(secret, keys / secret.name)
    (keys / record_mac_key_name("k-old")).write_text(OLD_KEY.hex())

    def with_keys(accepted: list[str]) -> Settings:
        return rt.settings.model_copy(update={
            "state_dir": tmp_path,
            "record_mac": RecordMacSettings(key_id=current, accepted_key_ids=accepted),
        })

    rotating = await replay_into(with_keys(["k-old"]), rt.pool, rt.kafka, f"{schema}_rot1")
    assert await consent_ids(rt, f"{schema}_rot1", person) == {"C-old-key", "C-current-key"}
    retired = await replay_into(with_keys([]), rt.pool, rt.kafka, f"{schema}_rot2")
    assert await consent_ids(rt, f"{schema}_rot2", person) == {"C-current-key"}
    assert retired.quarantined == rotating.quarantined + 1


async def test_pre_mac_records_fold_only_where_the_event_index_confirms_them(proj_rt: Runtime) -> None:
    """A log written before MACs: the hub's old records (no MAC, indexed at their offset)
    still fold; a MAC-less record the index does not hold at that offset does not."""
    rt = proj_rt
    schema = f"{rt.settings.kafka.topic_prefix}_forged"
    core = rt.settings.core_schema
    person = pseudonymize(rt.pseudonym_key, "test:forged", "legacy")
    topic = fact_topic(rt.settings.kafka.topic_prefix, "consent")
    legacy, intruder = consent("C-legacy", person), consent("C-intruder", person)
    # what the hub appended before MACs: the record, and its id in the index at its offset
    p, o = await produce_forged(rt, topic, legacy, "none")
    await rt.pool.execute(
        f"INSERT INTO {core}.event_index_names (name) VALUES ($1), ($2) ON CONFLICT (name) DO NOTHING",
        legacy.type, topic,
    )
    await rt.pool.execute(
        f"""INSERT INTO {core}.event_index (event_id, topic, event_type, "partition", "offset")
            SELECT $1::uuid, t.code, y.code, $4, $5
            FROM {core}.event_index_names t, {core}.event_index_names y WHERE t.name = $3 AND y.name = $2""",
        legacy.id, legacy.type, topic, p, o,
    )
    await produce_forged(rt, topic, intruder, "none")  # written by someone else in the same era
    # the first start of the MAC-enabled hub on this log records the cut-over
    await rt.pool.execute(f"DELETE FROM {core}.record_mac_cutover")
    assert await record_cutover(rt.pool, core, rt.kafka, rt.settings.kafka.topic_prefix) > 0
    forged_after = consent("C-after", person)
    await produce_forged(rt, topic, forged_after, "none")  # after the cut-over: needs a MAC

    await project(rt, schema=schema, until_caught_up=True)
    ids = await consent_ids(rt, schema, person)
    assert "C-legacy" in ids and not ids & {"C-intruder", "C-after"}
    reasons = {r["reason"] for r in await quarantine_letters(rt)}
    assert any("not in the event index" in r for r in reasons)
