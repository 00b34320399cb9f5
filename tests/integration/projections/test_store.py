"""The live apply on the real database equals the derivation: random logs applied batch
by batch through :meth:`projections.store.ReadModelStore.apply_batch` (PostgreSQL answers
the live fold's requests — the combined stage queries, the window counts and contact ranges
— and takes its writes in one statement) leave the same rows as ``derive`` over the whole
log, COPYed into another schema. Short repeat and connected windows, in time order (each
added contact its person's latest: counted from the stored summary row) and shuffled (a
backfill: contacts around the added ones; a moved opening time: all of the person's)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from hub.kernel.runtime import Runtime
from projections import tables as T
from projections.config import FoldConfig
from projections.facts import Fact, fact_from_envelope
from projections.fold import derive
from projections.store import Consumed, ReadModelStore, copy_rows, snapshot
from schemas.case import ServiceEnrolled
from schemas.dispatch import CallReceived, UnitDispatched
from schemas.encounter import PersonIdentified
from tests.integration.projections.projection_scenario import scenario
from tests.unit.projections.projection_events import PERSONS, at, fact

pytestmark = pytest.mark.integration
CFG = FoldConfig(connected_window=timedelta(minutes=60), repeat_window=timedelta(minutes=90), timezone="UTC")
TABLES = (*T.DERIVED, T.OUTCOME_COUNTS)


def contact_log(rnd: random.Random, n: int) -> list[Fact]:
    """Calls of two people on a dozen incidents within ten hours, services, dispatches."""
    incidents = [f"sea:3{k:03d}" for k in range(12)]
    out: dict[str, Fact] = {}
    for _ in range(n):
        i, m, p = rnd.choice(incidents), rnd.randint(0, 600), rnd.choice(PERSONS[:2])
        f = fact(rnd.choice([
            CallReceived(incident_id=i, agency="sea", cad_number=i[4:], at=at(m), source_timezone="UTC",
                         call_type_final="CRISIS"),
            PersonIdentified(incident_id=i, at=at(m), person=p),
            PersonIdentified(incident_id=i, at=at(m), person=p),
            ServiceEnrolled(case_id="k1", person=p, at=at(m), service_type="bh", provider="x"),
            UnitDispatched(incident_id=i, at=at(m), unit_id="u1", unit_kind="police"),
        ]))
        out[f.event_id] = f
    return list(out.values())


def cut(facts: list[Fact], rnd: random.Random) -> list[list[Fact]]:
    out, i = [], 0
    while i < len(facts):
        n = rnd.randint(1, 5)
        out.append(facts[i : i + n])
        i += n
    return out


async def apply_live(store: ReadModelStore, batches: list[list[Fact]]) -> None:
    offset = 0
    for batch in batches:
        await store.apply_batch([Consumed("t", 0, offset + k, f) for k, f in enumerate(batch)])
        offset += len(batch)


@pytest.mark.parametrize("seed", range(6))
async def test_live_apply_equals_the_derivation(proj_rt: Runtime, seed: int) -> None:
    rt, rnd = proj_rt, random.Random(seed)
    prefix = rt.settings.kafka.topic_prefix
    if seed < 4:
        facts = contact_log(rnd, 60)
        ordered = sorted(facts, key=lambda f: f.at) if seed % 2 == 0 else rnd.sample(facts, len(facts))
    else:  # the projection scenario: referrals, outcomes, a link and an unlink, shuffled
        facts = [fact_from_envelope(e) for e in scenario(10, tag=f"d{seed}", seed=seed)]
        ordered = facts
    live, derived = f"{prefix}_st{seed}", f"{prefix}_sd{seed}"
    for schema in (live, derived):
        await rt.migrate_schema("read_models", schema)
    await apply_live(ReadModelStore(rt.pool, live, CFG, rt.keyring), cut(ordered, rnd))
    async with rt.pool.acquire() as conn, conn.transaction():
        await copy_rows(conn, derived, derive(facts, CFG))
    assert await snapshot(rt.pool, live, TABLES) == await snapshot(rt.pool, derived, TABLES)
