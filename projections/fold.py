"""The projection as pure folds: (state, facts) → (state', row changes).

Design (order independence by construction):

- the state is the *set* of facts (by event id) plus the rows derived from it;
- facts are grouped into connected components by the keys they touch
  (:func:`projections.facts.fact_keys`: incident, subject person, linked person, referral);
  identity links are edges whether their latest word is "linked" or "unlinked", so a
  component never splits and every row depends only on the facts of one component;
- a batch of new facts recomputes the rows of exactly the components it touches, from
  scratch (:func:`derive`), and replaces the rows those components own (:class:`Scope`);
- outcome counts are maintained by deltas of incident rows (old → new), which telescope.

Hence any permutation and duplication of a set of facts, folded one by one or in
batches, ends in the same rows as :func:`derive` over the whole set — the property the
unit tests check with Hypothesis. The PostgreSQL shell (:mod:`projections.store`) runs
the same :func:`derive` / :func:`plan` over components it loads from the ``facts`` table.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from hub.kernel.crypto import Keyring
from projections import tables as T
from projections.config import FoldConfig
from projections.counts import Cell, count_row, counts, delta
from projections.demographics import demographics_rows
from projections.facts import Fact, subject_person, with_payload
from projections.identity import clusters
from projections.incidents import incident_row, service_times
from projections.people import person_rows
from projections.referrals import referral_row
from projections.timelines import timeline_entry
from schemas.consent import ConsentGranted, ConsentRevoked
from schemas.referral import ReferralRequested

Rows = dict[str, dict[tuple, dict[str, Any]]]


@dataclass(frozen=True)
class Scope:
    """What a component owns: rows keyed by these incidents, persons (any pseudonym of the
    component, canonical or not), referrals, and the timeline entries of these events."""

    event_ids: frozenset[str]
    incidents: frozenset[str]
    persons: frozenset[str]
    referrals: frozenset[str]

    @classmethod
    def of(cls, keys: Iterable[str], event_ids: Iterable[str]) -> Scope:
        by: dict[str, set[str]] = defaultdict(set)
        for k in keys:
            kind, _, value = k.partition(":")
            by[kind].add(value)
        return cls(frozenset(event_ids), frozenset(by["i"]), frozenset(by["p"]), frozenset(by["r"]))

    def owns(self, table: str, row: Mapping[str, Any]) -> bool:
        if table == T.INCIDENT_SUMMARY.name:
            return row["incident_id"] in self.incidents
        if table == T.TIMELINE_ENTRIES.name:
            return row["event_id"] in self.event_ids
        if table == T.PERSON_CLUSTERS.name:
            return row["pseudonym"] in self.persons
        if table in (T.PERSON_TIMELINE.name, T.PERSON_CONTACTS.name, T.PERSON_SUMMARY.name, T.CONSENTS.name,
                     T.PERSON_DEMOGRAPHICS.name):
            return row["person"] in self.persons
        if table == T.REFERRAL_FUNNEL.name:
            return row["referral_id"] in self.referrals
        return False


def empty_rows() -> Rows:
    return {t.name: {} for t in (*T.DERIVED, T.OUTCOME_COUNTS)}


def _consent_rows(facts: list[Fact]) -> list[dict[str, Any]]:
    by_id: dict[tuple[str, str], list[Fact]] = defaultdict(list)
    for f in facts:
        if isinstance(f.payload, ConsentGranted | ConsentRevoked):
            by_id[(f.payload.person, f.payload.consent_id)].append(f)
    rows = []
    for (person, cid), fs in sorted(by_id.items()):
        grants = sorted(with_payload(fs, ConsentGranted), key=lambda fp: fp[0].order)
        revokes = [f.at for f in fs if isinstance(f.payload, ConsentRevoked)]
        g = grants[-1][1] if grants else None
        rows.append({
            "person": person,
            "consent_id": cid,
            "granted_at": grants[0][0].at if grants else None,
            "recipients": list(g.recipients) if g else [],
            "scope": list(g.scope) if g else [],
            "purpose": g.purpose if g else None,
            "expires_at": g.expires_at if g else None,
            "revoked_at": min(revokes) if revokes else None,
        })
    return rows


def derive(facts: Iterable[Fact], cfg: FoldConfig, keyring: Keyring | None = None) -> Rows:
    """Every derived row (and the outcome counts) of a closed set of facts — one or more
    whole components. Pure; the result does not depend on the order of ``facts``.
    ``keyring``: a snapshot (no I/O) holding the keys of the facts'
    :func:`projections.incidents.sealed_kids`; it opens sealed disposition texts to classify
    them (:mod:`projections.incidents`); without it they count as unknown words."""
    uniq = {f.event_id: f for f in facts}
    facts = sorted(uniq.values(), key=lambda f: f.order)
    rows = empty_rows()

    def put(table: T.Table, row: dict[str, Any]) -> None:
        rows[table.name][table.pk(row)] = row

    persons = {k[2:] for f in facts for k in f.keys if k.startswith("p:")}
    canon = clusters(facts, persons)
    members: dict[str, set[str]] = defaultdict(set)
    for p, c in canon.items():
        members[c].add(p)
        put(T.PERSON_CLUSTERS, {"pseudonym": p, "canonical": c})

    by_incident: dict[str, list[Fact]] = defaultdict(list)
    by_referral: dict[str, list[Fact]] = defaultdict(list)
    by_person: dict[str, list[Fact]] = defaultdict(list)  # canonical → facts about them
    for f in facts:
        if f.incident_id:
            by_incident[f.incident_id].append(f)
        if f.referral_id:
            by_referral[f.referral_id].append(f)
        for who in {subject_person(f), f.other}:
            if who is not None:
                by_person[canon[who]].append(f)
    services = {c: service_times(fs) for c, fs in by_person.items()}
    # enrolment in *behavioral-health* services (the Colorado metric): by the fallback
    # vocabulary's service types — housing, shelter, benefits do not count
    bh_services = {c: service_times(fs, cfg.vocabularies.fallback) for c, fs in by_person.items()}

    incidents = {i: incident_row(i, fs, canon, services, cfg, keyring) for i, fs in by_incident.items()}
    for row in incidents.values():
        put(T.INCIDENT_SUMMARY, row)
    for r, fs in by_referral.items():
        put(T.REFERRAL_FUNNEL, referral_row(r, fs))
    for row in _consent_rows(facts):
        put(T.CONSENTS, row)
    for row in demographics_rows(facts, canon):
        put(T.PERSON_DEMOGRAPHICS, row)

    part2: dict[str, bool] = {}
    referral_incident: dict[str, str] = {}
    for f in facts:
        if isinstance(f.payload, ReferralRequested):
            part2[f.payload.referral_id] = part2.get(f.payload.referral_id, False) or f.payload.substance_use
            if f.payload.incident_id:
                referral_incident.setdefault(f.payload.referral_id, f.payload.incident_id)
    part2_consents: dict[str, bool] = {}  # consent id -> any of its grants is Part 2
    for f in facts:
        if isinstance(f.payload, ConsentGranted):
            cid = f.payload.consent_id
            part2_consents[cid] = part2_consents.get(cid, False) or "part2" in f.payload.scope
    entries = [timeline_entry(f, part2, referral_incident, part2_consents) for f in facts]
    for e in entries:
        put(T.TIMELINE_ENTRIES, e)

    # incidents of each canonical person (as subject) and their contact times
    contacts: dict[str, dict[str, datetime]] = defaultdict(dict)
    for i, row in incidents.items():
        for c in row["persons"]:
            if row["opened_at"] is not None:
                contacts[c][i] = row["opened_at"]
    entries_by_incident: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in entries:
        if e["incident_id"]:
            entries_by_incident[e["incident_id"]].append(e)
    for c, ms in members.items():
        summary, contact_rows = person_rows(
            c, ms, contacts.get(c, {}), bh_services.get(c, []), cfg.repeat_window
        )
        put(T.PERSON_SUMMARY, summary)
        for row in contact_rows:
            put(T.PERSON_CONTACTS, row)
        mine = {f.event_id: f.at for f in by_person.get(c, [])}
        for i in contacts.get(c, {}):
            mine.update({e["event_id"]: e["at"] for e in entries_by_incident[i]})
        for eid, at in mine.items():
            put(T.PERSON_TIMELINE, {"person": c, "event_id": eid, "at": at})

    for cell, value in counts(incidents.values(), cfg).items():
        put(T.OUTCOME_COUNTS, count_row(cell, value))
    return rows


@dataclass(frozen=True)
class Plan:
    """What one batch does to the read models: inside ``scope`` every owned row is
    replaced by ``rows``; ``count_delta`` is added to ``outcome_counts``."""

    scope: Scope
    rows: Rows
    count_delta: dict[Cell, int]


def plan(component_facts: Iterable[Fact], keys: Iterable[str], old_incidents: Iterable[dict[str, Any]],
         cfg: FoldConfig, keyring: Keyring | None = None) -> Plan:
    """Recompute the components in ``component_facts`` (closed under shared keys, ``keys``
    being all the keys they touch); ``old_incidents`` are the stored incident rows the
    plan replaces (for the count deltas); ``keyring`` as for :func:`derive`."""
    facts = list(component_facts)
    scope = Scope.of(keys, (f.event_id for f in facts))
    rows = derive(facts, cfg, keyring)
    counts_delta = delta(old_incidents, rows[T.INCIDENT_SUMMARY.name].values(), cfg)
    del rows[T.OUTCOME_COUNTS.name]
    return Plan(scope, rows, counts_delta)


# --------------------------------------------------------------------------- in memory


@dataclass(frozen=True)
class Change:
    """One row change: ``delete`` / ``upsert`` of a row by primary key, or ``add`` of a
    delta to an outcome count."""

    table: str
    op: str
    key: tuple
    row: dict[str, Any] | None = None
    amount: int = 0


@dataclass
class ProjectionState:
    """The in-memory projection: facts by id, key → event ids, and the derived rows."""

    facts: dict[str, Fact] = field(default_factory=dict)
    index: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    rows: Rows = field(default_factory=empty_rows)

    def copy(self) -> ProjectionState:
        index: dict[str, set[str]] = defaultdict(set, {k: set(v) for k, v in self.index.items()})
        return ProjectionState(dict(self.facts), index, {t: dict(r) for t, r in self.rows.items()})


def component(index: Mapping[str, set[str]], facts: Mapping[str, Fact], seeds: Iterable[str]
              ) -> tuple[set[str], set[str]]:
    """(event ids, keys) of the components containing ``seeds`` (keys)."""
    keys: set[str] = set()
    ids: set[str] = set()
    todo = list(seeds)
    while todo:
        k = todo.pop()
        if k in keys:
            continue
        keys.add(k)
        for eid in index.get(k, ()):
            if eid not in ids:
                ids.add(eid)
                todo.extend(facts[eid].keys)
    return ids, keys


def changes_of(old_rows: Rows, p: Plan) -> list[Change]:
    """The row changes that turn ``old_rows`` into the rows after applying ``p``."""
    out: list[Change] = []
    for table, new in p.rows.items():
        old = {k: r for k, r in old_rows.get(table, {}).items() if p.scope.owns(table, r)}
        out += [Change(table, "delete", k) for k in old if k not in new]
        out += [Change(table, "upsert", k, r) for k, r in new.items() if old.get(k) != r]
    out += [Change(T.OUTCOME_COUNTS.name, "add", cell, amount=v) for cell, v in sorted(
        p.count_delta.items(), key=repr)]
    return out


def apply_changes(rows: Rows, changes: Iterable[Change]) -> None:
    for c in changes:
        table = rows[c.table]
        if c.op == "delete":
            table.pop(c.key, None)
        elif c.op == "upsert":
            assert c.row is not None
            table[c.key] = c.row
        else:  # add
            current = table.get(c.key, {}).get("value", 0) + c.amount
            if current:
                table[c.key] = count_row(cast(Cell, c.key), current)  # count changes are keyed by cells
            else:
                table.pop(c.key, None)


def fold_batch(state: ProjectionState, facts: Iterable[Fact], cfg: FoldConfig,
               keyring: Keyring | None = None) -> tuple[ProjectionState, list[Change]]:
    """Fold a batch of facts (duplicates ignored by event id) into a new state (``keyring``
    as for :func:`derive`)."""
    new = {f.event_id: f for f in facts if f.event_id not in state.facts}
    if not new:
        return state, []
    state = state.copy()
    for f in new.values():
        state.facts[f.event_id] = f
        for k in f.keys:
            state.index[k].add(f.event_id)
    ids, keys = component(state.index, state.facts, (k for f in new.values() for k in f.keys))
    old_incidents = [r for r in state.rows[T.INCIDENT_SUMMARY.name].values() if r["incident_id"] in
                     {k[2:] for k in keys if k.startswith("i:")}]
    p = plan((state.facts[i] for i in ids), keys, old_incidents, cfg, keyring)
    changes = changes_of(state.rows, p)
    apply_changes(state.rows, changes)
    return state, changes


def fold(state: ProjectionState, fact: Fact, cfg: FoldConfig) -> tuple[ProjectionState, list[Change]]:
    """Fold one fact: ``fold_batch`` of one."""
    return fold_batch(state, [fact], cfg)
