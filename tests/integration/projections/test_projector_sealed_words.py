"""Sealed words on the real broker, database and key store (issue 12 item 5 with issue 15):
a clearance text the ingest vocabulary does not know reaches the log sealed with the
incident's key (never in clear), the live projector opens it with the token keyring to
classify it, a corrected vocabulary reclassifies it on re-projection without re-ingest, and
a replay (in worker processes too) derives the same rows as the live store."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from connectors.cad.csvfile import parse_csv
from connectors.cad.mapping import CadMapper
from connectors.cad.profile import load_profile
from connectors.core.memory import MemoryLog
from connectors.core.runner import DeadLetterSink, ingest_batch
from hub.kernel.kafka_io import scan_records
from hub.kernel.keystore import DeadLetterSealer
from hub.kernel.log import family_topics
from hub.kernel.runtime import Runtime
from hub.kernel.settings import Settings
from hub.kernel.vocabulary import VOCABULARIES_DIR, vocabulary_names
from projections.config import FoldConfig
from projections.projector import project
from projections.replay import replay_into
from projections.store import ReadModelStore

pytestmark = pytest.mark.integration

CRISIS = "--CRISIS COMPLAINT - GENERAL"
FREE_TEXT = "TOOK JANE QUIMBY DOB 07/19/1984 TO HARBORVIEW"
NEW_CODE = "DCR ITA DETENTION"
ROWS = {  # CAD number -> clearance text (numbers no other test of the session uses)
    "990000001": NEW_CODE,  # a code the ingest vocabulary does not know yet
    "990000002": FREE_TEXT,  # free text naming a person
    "990000003": "PHYSICAL ARREST MADE",  # a label the vocabulary knows: clear
}


def seattle_csv() -> str:
    profile = load_profile("seattle")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(profile.columns)
    for n, clearance in ROWS.items():
        row = {"CAD Event Number": n, "Event Clearance Description": clearance, "Final Call Type": CRISIS,
               "Initial Call Type": "SUICIDE - SUICIDAL PERSON AND ATTEMPTS",
               "Original Time Queued": "03/01/2024 10:00:00 AM"}
        w.writerow([row.get(c, "") for c in profile.columns])
    return buf.getvalue()


def with_vocabularies(settings: Settings, fixed: Path) -> Settings:
    names = [*(n for n in vocabulary_names() if n != "seattle"), str(fixed)]
    return settings.model_copy(
        update={"projections": settings.projections.model_copy(update={"vocabularies": names})}
    )


async def outcomes(rt: Runtime, schema: str) -> dict[str, str | None]:
    rows = await rt.pool.fetch(
        f"""SELECT incident_id, cad_outcome FROM "{schema}".incident_summary
            WHERE incident_id = any($1::text[])""",
        [f"SPD:{n}" for n in ROWS],
    )
    return {r["incident_id"].split(":")[1]: r["cad_outcome"] for r in rows}


async def test_sealed_clearance_text_is_classified_by_a_later_vocabulary(
    proj_rt: Runtime, tmp_path: Path
) -> None:
    rt = proj_rt
    prefix = rt.settings.kafka.topic_prefix
    profile = load_profile("seattle")
    staged = MemoryLog()
    counts = await ingest_batch(
        list(parse_csv(seattle_csv(), profile, "crisis.csv")),
        CadMapper(profile, keyring=rt.keyring),  # the key store the connectors seal with
        staged,
        DeadLetterSink(profile.source, "cad", DeadLetterSealer(bytes(32))),
    )
    assert counts.appended == len(ROWS) and counts.unknown_dispositions == 2
    assert len((await rt.log.append(staged.events)).appended) == len(staged.events)
    # the log holds neither text in clear (the arrest label, known, is clear)
    records = scan_records(rt.kafka, family_topics(prefix), role="test-sealed")
    dispatch = [r.value or b"" async for r in records]
    assert not [v for v in dispatch if b"QUIMBY" in v or b"07/19/1984" in v or NEW_CODE.encode() in v]
    assert any(b"PHYSICAL ARREST MADE" in v for v in dispatch)

    live = f"{prefix}_sealed"
    await project(rt, schema=live, until_caught_up=True)
    ingest_time = {"990000001": "unknown", "990000002": "unknown", "990000003": "arrest"}
    assert await outcomes(rt, live) == ingest_time

    fixed = tmp_path / "seattle.yaml"
    text = (VOCABULARIES_DIR / "seattle.yaml").read_text()
    known = "OTHER REPORT MADE: no_enforcement"
    fixed.write_text(text.replace("version: 1", "version: 2").replace(
        known, f"{known}\n  {NEW_CODE}: involuntary_hold"))
    corrected = with_vocabularies(rt.settings, fixed)
    store = ReadModelStore(rt.pool, live, FoldConfig.from_settings(corrected), rt.keyring)
    assert await store.reclassify()  # the live re-projection: stored facts, no re-ingest
    reclassified = {**ingest_time, "990000001": "involuntary_hold"}
    assert await outcomes(rt, live) == reclassified

    # a replay under the corrected vocabulary opens the same texts, in this process and in
    # worker processes (the keyring snapshot travels with each bucket)
    for schema, workers in ((f"{prefix}_sealed_rp", 0), (f"{prefix}_sealed_rp2", 2)):
        await replay_into(corrected, rt.pool, rt.kafka, schema, bucket_facts=2, workers=workers,
                          keys=rt.keyring)
        assert await outcomes(rt, schema) == reclassified, workers
    # without the key store the sealed words stay unknown: nothing else can open them
    await replay_into(corrected, rt.pool, rt.kafka, f"{prefix}_sealed_nokeys")
    assert await outcomes(rt, f"{prefix}_sealed_nokeys") == ingest_time
