"""Incremental live folds (pure): the row changes a batch of new facts makes, computed from
the rows and facts those changes depend on — not from the whole connected component.

:func:`projections.fold.derive` stays the definition. Every row here is computed by the
same row functions (:func:`~projections.incidents.incident_row`,
:func:`~projections.people.person_rows`, :func:`~projections.referrals.referral_row`,
:func:`~projections.timelines.timeline_entry`, :func:`~projections.fold.consent_rows`,
:func:`~projections.demographics.demographics_rows`) from exactly the facts ``derive`` would
give them; what is incremental is only *which* rows are recomputed and what is read for them.

Why that suffices, without identity links / unlinks and erasures in the batch (those, and a
vocabulary change, re-derive components — :func:`needs_component`):

- clusters (canonical pseudonyms) depend on link facts only, so they do not change; a new
  pseudonym is its own cluster;
- an incident row depends on the incident's facts, the clusters and the service times of
  its persons: the incidents of the new facts are recomputed; a new service time can only
  turn ``connected_to_services`` on for the incidents of its person opened within the
  window before it (those rows are patched);
- an incident's persons only grow, so the person timeline gains the incident's entries for
  each new person; a referral request can move the entries of its referral's other facts
  to another incident (they are recomputed with their persons);
- a timeline entry depends on its fact and its referral's requests / its consent's grants
  (:func:`projections.fold.timeline_context`): the new facts' entries, and those of the
  referral's / consent's facts when a request / grant is new, are recomputed;
- a person's summary and contacts depend on the person's members, incident rows and
  behavioral-health services: recomputed for every person the batch touches — the contact
  statistics (how many, first, last, most within the repeat window) from the stored
  summary row and only the contacts they need (:func:`_growth`), so a frequent utilizer's
  batch does not read their history;
- outcome counts change by the delta of the replaced incident rows.

The fold is a generator (:func:`live_fold`) that yields lists of :class:`Request` and is
sent their answers; its driver answers from PostgreSQL (:mod:`projections.store`, one
stage per list) or from memory (:func:`answer_in_memory`, used by the unit tests). It
returns a :class:`Delta`. The Hypothesis tests check that folding any log this way equals
``derive`` over it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hub.kernel.crypto import Keyring
from projections import tables as T
from projections.config import FoldConfig
from projections.counts import Cell, delta
from projections.demographics import demographics_rows, report_of
from projections.facts import Fact, subject_person
from projections.fold import (
    Change,
    ProjectionState,
    Rows,
    apply_changes,
    consent_rows,
    fold_batch,
    timeline_context,
)
from projections.incidents import incident_row, service_times
from projections.people import contact_row, max_in_window, person_summary, summary_row
from projections.referrals import referral_row
from projections.timelines import timeline_entry
from schemas.case import ServiceEnrolled
from schemas.consent import ConsentGranted, ConsentRevoked
from schemas.identity import PersonLinked, PersonUnlinked
from schemas.referral import ReferralCompleted, ReferralRequested

#: the facts a person's service times are taken from (incident rows, person summaries)
SERVICE_TYPES = (ServiceEnrolled.event_type, ReferralCompleted.event_type, ReferralRequested.event_type)
CONSENT_TYPES = (ConsentGranted.event_type, ConsentRevoked.event_type)


def needs_component(facts: Iterable[Fact]) -> bool:
    """Whether a batch changes what the existing facts derive (so its components are
    re-derived): an identity link or unlink (clusters), an erasure (sealed words no longer
    open)."""
    return any(isinstance(f.payload, PersonLinked | PersonUnlinked) or f.family == "erasure" for f in facts)


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Clusters:
    """→ ``{pseudonym: (canonical, members of the canonical's cluster)}`` for the stored
    pseudonyms among ``persons``."""

    persons: frozenset[str]


@dataclass(frozen=True)
class IncidentFacts:
    """→ ``{incident id: [facts with that incident id]}`` (the batch's included)."""

    ids: frozenset[str]


@dataclass(frozen=True)
class IncidentRows:
    """→ ``{incident id: stored incident_summary row}`` (as before the batch)."""

    ids: frozenset[str]


@dataclass(frozen=True)
class ReferralFacts:
    """→ ``{referral id: [facts with that referral id]}``."""

    ids: frozenset[str]


@dataclass(frozen=True)
class ConsentFacts:
    """→ ``{consent id: [grant and revoke facts of that consent id]}``, looked up among the
    consent facts of ``persons`` (a consent id is the case system's id of one person's
    consent: it is not shared between people)."""

    persons: frozenset[str]
    ids: frozenset[str]


@dataclass(frozen=True)
class IncidentEntries:
    """→ ``{incident id: [(event id, at) of the stored timeline entries placed on it]}``."""

    ids: frozenset[str]


@dataclass(frozen=True)
class EntryIncidents:
    """→ ``{event id: incident id of its stored timeline entry (or None)}``."""

    event_ids: frozenset[str]


@dataclass(frozen=True)
class Summaries:
    """→ ``{canonical: stored person_summary row}``."""

    persons: frozenset[str]


@dataclass(frozen=True)
class ContactsAt:
    """→ ``{canonical: {incident id: contact time}}``: the stored person_contacts of
    ``persons`` on ``incidents`` only."""

    persons: frozenset[str]
    incidents: frozenset[str]


@dataclass(frozen=True)
class ContactRange:
    """→ ``{item: {incident id: contact time}}`` per ``(canonical, lo, hi)`` item: the
    stored person_contacts of the person with ``lo <= contact time <= hi`` (None: no bound)."""

    items: tuple[tuple[str, datetime | None, datetime | None], ...]


@dataclass(frozen=True)
class WindowCounts:
    """→ ``{(canonical, end): n}``: how many stored person_contacts of the person have a
    contact time in ``[end - window, end]``."""

    window: timedelta
    items: tuple[tuple[str, datetime], ...]


@dataclass(frozen=True)
class PersonFacts:
    """→ ``{canonical: [facts of :data:`SERVICE_TYPES` whose subject or other person is one
    of its members]}``."""

    members: tuple[tuple[str, frozenset[str]], ...]


@dataclass(frozen=True)
class KeyringFor:
    """→ the keyring snapshot opening the sealed words of ``facts`` (or None)."""

    facts: tuple[Fact, ...]


Request = (Clusters | IncidentFacts | IncidentRows | ReferralFacts | ConsentFacts | IncidentEntries
           | EntryIncidents | Summaries | ContactsAt | ContactRange | WindowCounts | PersonFacts | KeyringFor)


@dataclass
class Delta:
    """What a batch does to the read models: per table, rows to write (``upserts``, by
    primary key) and primary keys to delete (never both for one key); ``count_delta`` is
    added to ``outcome_counts``; ``incidents_before`` / ``incidents_after`` are the replaced
    and the new incident rows (the months they fall in changed)."""

    upserts: dict[str, dict[tuple, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))
    deletes: dict[str, set[tuple]] = field(default_factory=lambda: defaultdict(set))
    count_delta: dict[Cell, int] = field(default_factory=dict)
    incidents_before: list[dict[str, Any]] = field(default_factory=list)
    incidents_after: list[dict[str, Any]] = field(default_factory=list)

    def put(self, table: T.Table, row: dict[str, Any]) -> None:
        key = table.pk(row)
        self.upserts[table.name][key] = row
        self.deletes[table.name].discard(key)

    def delete(self, table: T.Table, key: tuple) -> None:
        if key not in self.upserts[table.name]:
            self.deletes[table.name].add(key)

    def changes(self) -> list[Change]:
        """The delta as :class:`projections.fold.Change` s (deletes, upserts, count adds)."""
        out = [Change(t, "delete", k) for t, keys in self.deletes.items() for k in sorted(keys, key=repr)]
        out += [Change(t, "upsert", k, r) for t, rows in self.upserts.items() for k, r in rows.items()]
        out += [Change(T.OUTCOME_COUNTS.name, "add", cell, amount=v)
                for cell, v in sorted(self.count_delta.items(), key=repr)]
        return out


LiveFold = Generator[list[Request], list[Any], Delta]


def by_person(f: Fact) -> set[str]:
    """The pseudonyms a fact is about as the projections group by person (subject, other)."""
    return {w for w in (subject_person(f), f.other) if w is not None}


def live_fold(new: list[Fact], cfg: FoldConfig) -> LiveFold:
    """The :class:`Delta` of folding ``new`` (facts not folded before, none of them
    :func:`needs_component`, already visible to the answers) — see the module docstring."""
    uniq = {f.event_id: f for f in new}
    new = sorted(uniq.values(), key=lambda f: f.order)
    out = Delta()
    keyed = {w for f in new for w in by_person(f)}
    persons0 = keyed | {f.person for f in new if f.person} | {rep[1] for f in new if (rep := report_of(f))}
    incidents0 = frozenset(f.incident_id for f in new if f.incident_id)
    referrals0 = frozenset(f.referral_id for f in new if f.referral_id)
    consent_facts = [cp for f in new if isinstance(cp := f.payload, ConsentGranted | ConsentRevoked)]
    consents0 = ConsentFacts(frozenset(p.person for p in consent_facts),
                             frozenset(p.consent_id for p in consent_facts))

    # stage 1: what the new facts name
    clusters, inc_facts, old_rows, ref_facts, con_facts, inc_entries = yield [
        Clusters(frozenset(persons0)), IncidentFacts(incidents0), IncidentRows(incidents0),
        ReferralFacts(referrals0), consents0, IncidentEntries(incidents0),
    ]
    # the entries to recompute: the new facts', their referral's when a request is new,
    # their consent's revocations when a grant is new
    entries_of: dict[str, Fact] = {f.event_id: f for f in new}
    for f in new:
        if isinstance(f.payload, ReferralRequested):
            entries_of.update((g.event_id, g) for g in ref_facts.get(f.payload.referral_id, ()))
        if isinstance(f.payload, ConsentGranted):
            entries_of.update((g.event_id, g) for g in con_facts.get(f.payload.consent_id, ())
                              if isinstance(g.payload, ConsentRevoked))
    moved = frozenset(entries_of) - frozenset(uniq)  # stored entries recomputed
    in_incidents = [f for fs in inc_facts.values() for f in fs]
    persons1 = {w for f in (*in_incidents, *entries_of.values()) for w in by_person(f)} - persons0

    # stage 2: the clusters of the incidents' persons, where the moved entries were
    more, old_entry, keyring = yield [
        Clusters(frozenset(persons1)), EntryIncidents(moved), KeyringFor(tuple(in_incidents)),
    ]
    clusters = {**clusters, **more}

    def canon(p: str) -> str:
        return clusters[p][0] if p in clusters else p

    canon_map = {p: canon(p) for p in persons0 | persons1}
    context = timeline_context([*(f for fs in ref_facts.values() for f in fs),
                                *(f for fs in con_facts.values() for f in fs)])
    entries = {eid: timeline_entry(f, *context) for eid, f in entries_of.items()}
    new_persons: dict[str, set[str]] = {  # persons of the new incident rows, before services
        i: {canon(w) for f in fs if (w := subject_person(f))} for i, fs in inc_facts.items()
    }
    touched = (
        {canon(w) for w in keyed}
        | {c for r in old_rows.values() for c in r["persons"]}
        | {c for ps in new_persons.values() for c in ps}
    )
    known = {c: ms for c, ms in clusters.values()}
    members = {c: frozenset(known.get(c, ())) | {c} for c in touched}
    entry_incidents = ({e["incident_id"] for e in entries.values()}
                       | {i for i in old_entry.values()}) - {None} - incidents0

    # stage 3: the persons' service facts, summaries and contacts on the batch's incidents,
    # the other entry incidents, the contacts a new service time may connect
    services_at = tuple(sorted({(c, f.at - cfg.connected_window, f.at) for f in new
                                if isinstance(f.payload, ReferralCompleted | ServiceEnrolled)
                                for c in {canon(w) for w in by_person(f)}}))
    person_facts, summaries, contacts, other_rows, opened_before = yield [
        PersonFacts(tuple(sorted(members.items()))), Summaries(frozenset(touched)),
        ContactsAt(frozenset(touched), incidents0), IncidentRows(frozenset(entry_incidents)),
        ContactRange(services_at),
    ]
    services = {c: service_times(person_facts.get(c, ())) for c in touched}
    new_rows = {i: incident_row(i, fs, canon_map, services, cfg, keyring) for i, fs in inc_facts.items()}
    # contacts after the batch on its incidents (the only ones whose contacts can change)
    after = {c: {i: r["opened_at"] for i, r in new_rows.items()
                 if c in r["persons"] and r["opened_at"] is not None} for c in touched}
    grow = {c: _growth(summaries.get(c), contacts.get(c, {}), after[c], cfg.repeat_window) for c in touched}
    # a new service time connects the person's incidents opened in the window before it
    connects: dict[str, datetime] = {}
    for (_, _, service_at), opened in opened_before.items():
        connects.update((i, service_at) for i in opened if i not in incidents0)

    # stage 4: what the persons' new contact statistics need; the rows a service time connects
    counts_at, ranges, patched_old = yield [
        WindowCounts(cfg.repeat_window, tuple(sorted({(c, t) for c, g in grow.items() if g[0] == "counts"
                                                      for t in g[1]}))),
        ContactRange(tuple(sorted({(c, *g[1]) for c, g in grow.items() if g[0] == "range"}, key=repr))),
        IncidentRows(frozenset(connects)),
    ]
    for i, row in patched_old.items():
        if not row["connected_to_services"]:
            old_rows = {**old_rows, i: row}
            new_rows[i] = {**row, "connected_to_services": True}
    rows_now = {**other_rows, **old_rows, **new_rows}

    # incidents and counts
    for i, row in new_rows.items():
        if old_rows.get(i) != row:
            out.put(T.INCIDENT_SUMMARY, row)
    out.incidents_before = [old_rows[i] for i in new_rows if i in old_rows]
    out.incidents_after = list(new_rows.values())
    out.count_delta = delta(out.incidents_before, out.incidents_after, cfg)

    # clusters of new pseudonyms, referrals, consents, demographics reports
    for p in sorted(keyed - set(clusters)):
        out.put(T.PERSON_CLUSTERS, {"pseudonym": p, "canonical": p})
    for r in referrals0:
        out.put(T.REFERRAL_FUNNEL, referral_row(r, ref_facts.get(r, ())))
    for row in consent_rows(f for fs in con_facts.values() for f in fs):
        out.put(T.CONSENTS, row)
    for row in demographics_rows(new, canon_map):
        out.put(T.PERSON_DEMOGRAPHICS, row)

    # timeline entries and the person timeline
    def persons_of(incident: str | None, rows: Mapping[str, dict[str, Any]]) -> set[str]:
        row = rows.get(incident) if incident else None
        return set(row["persons"]) if row else set()

    old_rows_all = {**other_rows, **old_rows}
    for eid, entry in entries.items():
        f = entries_of[eid]
        out.put(T.TIMELINE_ENTRIES, entry)
        own = {canon(w) for w in by_person(f)}
        now = own | persons_of(entry["incident_id"], rows_now)
        if eid in moved:
            for c in own | persons_of(old_entry.get(eid), old_rows_all):
                if c not in now:
                    out.delete(T.PERSON_TIMELINE, (c, eid))
        for c in now:
            out.put(T.PERSON_TIMELINE, {"person": c, "event_id": eid, "at": f.at})
    for i, row in new_rows.items():
        grown = set(row["persons"]) - persons_of(i, old_rows)
        for eid, at in inc_entries.get(i, ()):
            if eid not in entries:
                for c in grown:
                    out.put(T.PERSON_TIMELINE, {"person": c, "event_id": eid, "at": at})

    # person summaries and contacts
    bh = cfg.vocabularies.fallback
    for c in sorted(touched):
        before, mine = contacts.get(c, {}), after[c]
        bh_services = service_times(person_facts.get(c, ()), bh)
        out.put(T.PERSON_SUMMARY, _summary(c, members[c], bh_services, summaries.get(c), before, mine,
                                           grow[c], counts_at, ranges, cfg.repeat_window))
        for i in inc_facts:  # the only incidents whose contacts can change
            if i in before and i not in mine:
                out.delete(T.PERSON_CONTACTS, (c, i))
            elif i in mine and before.get(i) != mine[i]:
                out.put(T.PERSON_CONTACTS, contact_row(c, i, mine[i]))
    return out


Growth = tuple[str, Any]


def _growth(stored: dict[str, Any] | None, before: dict[str, datetime], after: dict[str, datetime],
            window: timedelta) -> Growth:
    """How a person's contact statistics follow from their stored summary row when a batch
    changes their contacts on its incidents from ``before`` to ``after``:

    - ``("new", None)``: no stored row, so no stored contacts: ``after`` are all of them;
    - ``("same", None)``: no contact changes;
    - ``("counts", added times)``: contacts only added, none earlier than the stored last
      contact — a window holding an added time ends at one, so counting the stored
      contacts within the window before each added time suffices (:class:`WindowCounts`);
    - ``("range", (person, lo, hi))``: contacts only added, some earlier: the windows holding
      an added time lie within ``[lo, hi]`` (a window around the added times);
    - ``("range", (person, None, None))``: a contact moved or went away (or no stored row):
      every contact of the person is read.

    The stored row's statistics are trusted: the tests prove live rows equal ``derive``'s.
    """
    if stored is None:  # no summary row, so no stored contacts (rows hold both or neither)
        return ("new", None)
    if any(after.get(i) != t for i, t in before.items()):
        return ("range", (None, None))
    added = sorted(t for i, t in after.items() if i not in before)
    if not added:
        return ("same", None)
    last = stored["last_contact_at"]
    if last is None or added[0] >= last:
        return ("counts", tuple(added))
    return ("range", (added[0] - window, added[-1] + window))


def _summary(c: str, members: frozenset[str], bh_services: list[datetime], stored: dict[str, Any] | None,
             before: dict[str, datetime], after: dict[str, datetime], grow: Growth,
             counts_at: Mapping[tuple[str, datetime], int],
             ranges: Mapping[tuple[str, datetime | None, datetime | None], dict[str, datetime]],
             window: timedelta) -> dict[str, Any]:
    """The person's new summary row by :func:`_growth`'s plan (equal to
    :func:`projections.people.person_summary` over all of their contacts)."""
    kind, arg = grow
    if kind == "new":
        return person_summary(c, members, after.values(), bh_services, window)
    if kind == "range" and arg == (None, None):
        every = {i: t for i, t in ranges.get((c, None, None), {}).items() if i not in before}
        every.update(after)
        return person_summary(c, members, every.values(), bh_services, window)
    assert stored is not None
    most = stored["max_contacts_in_window"]
    added = sorted(t for i, t in after.items() if i not in before)
    if kind == "counts":
        # stored contacts within the window before an added time, the batch's own ones
        # counted from `after` (its stored ones are in `before`)
        for t in added:
            lo = t - window
            n = counts_at.get((c, t), 0) - sum(1 for b in before.values() if lo <= b <= t)
            most = max(most, n + sum(1 for a in after.values() if lo <= a <= t))
    elif kind == "range":
        lo, hi = arg
        inside = [t for i, t in ranges.get((c, lo, hi), {}).items() if i not in before]
        inside += [t for t in after.values() if lo <= t <= hi]
        most = max(most, max_in_window(inside, window))
    if not added:
        return summary_row(c, members, stored["contacts"], stored["first_contact_at"],
                           stored["last_contact_at"], most, bh_services)
    first, last = stored["first_contact_at"], stored["last_contact_at"]
    return summary_row(c, members, stored["contacts"] + len(added),
                       added[0] if first is None else min(first, added[0]),
                       added[-1] if last is None else max(last, added[-1]), most, bh_services)


# --------------------------------------------------------------------------- in memory


def answer_in_memory(request: Request, facts: Mapping[str, Fact], index: Mapping[str, set[str]], rows: Rows,
                     keyring: Keyring | None = None) -> Any:
    """The answer to ``request`` from an in-memory projection (facts by id, key → event ids,
    rows by table and primary key): the reference the PostgreSQL answers must equal."""
    def facts_of(key: str) -> list[Fact]:
        return [facts[e] for e in sorted(index.get(key, ()))]

    if isinstance(request, Clusters):
        clusters = rows[T.PERSON_CLUSTERS.name]
        members: dict[str, set[str]] = defaultdict(set)
        for r in clusters.values():
            members[r["canonical"]].add(r["pseudonym"])
        return {p: (clusters[(p,)]["canonical"], frozenset(members[clusters[(p,)]["canonical"]]))
                for p in request.persons if (p,) in clusters}
    if isinstance(request, IncidentFacts):
        return {i: [f for f in facts_of("i:" + i) if f.incident_id == i] for i in request.ids}
    if isinstance(request, IncidentRows):
        table = rows[T.INCIDENT_SUMMARY.name]
        return {i: table[(i,)] for i in request.ids if (i,) in table}
    if isinstance(request, ReferralFacts):
        return {r: [f for f in facts_of("r:" + r) if f.referral_id == r] for r in request.ids}
    if isinstance(request, ConsentFacts):
        out: dict[str, list[Fact]] = defaultdict(list)
        for e in sorted({e for p in request.persons for e in index.get("p:" + p, ())}):
            p = facts[e].payload
            if isinstance(p, ConsentGranted | ConsentRevoked) and p.consent_id in request.ids:
                out[p.consent_id].append(facts[e])
        return dict(out)
    if isinstance(request, IncidentEntries):
        placed: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
        for entry in rows[T.TIMELINE_ENTRIES.name].values():
            if entry["incident_id"] in request.ids:
                placed[entry["incident_id"]].append((entry["event_id"], entry["at"]))
        return dict(placed)
    if isinstance(request, EntryIncidents):
        entries = rows[T.TIMELINE_ENTRIES.name]
        return {e: entries[(e,)]["incident_id"] for e in request.event_ids if (e,) in entries}
    if isinstance(request, Summaries):
        summaries = rows[T.PERSON_SUMMARY.name]
        return {p: summaries[(p,)] for p in request.persons if (p,) in summaries}
    contacts = rows[T.PERSON_CONTACTS.name].values()
    if isinstance(request, ContactsAt):
        found: dict[str, dict[str, datetime]] = defaultdict(dict)
        for r in contacts:
            if r["person"] in request.persons and r["incident_id"] in request.incidents:
                found[r["person"]][r["incident_id"]] = r["contact_at"]
        return dict(found)
    if isinstance(request, ContactRange):
        return {(p, lo, hi): {r["incident_id"]: r["contact_at"] for r in contacts if r["person"] == p
                              and (lo is None or lo <= r["contact_at"])
                              and (hi is None or r["contact_at"] <= hi)}
                for p, lo, hi in request.items}
    if isinstance(request, WindowCounts):
        return {(p, end): sum(1 for r in contacts
                              if r["person"] == p and end - request.window <= r["contact_at"] <= end)
                for p, end in request.items}
    if isinstance(request, PersonFacts):
        return {c: [f for e in sorted({e for m in ms for e in index.get("p:" + m, ())})
                    if (f := facts[e]).event_type in SERVICE_TYPES and by_person(f) & ms]
                for c, ms in request.members}
    assert isinstance(request, KeyringFor)
    return keyring


def run_in_memory(new: list[Fact], cfg: FoldConfig, facts: Mapping[str, Fact], index: Mapping[str, set[str]],
                  rows: Rows, keyring: Keyring | None = None) -> Delta:
    """Drive :func:`live_fold` with :func:`answer_in_memory` (``facts`` / ``index`` already
    hold ``new``; ``rows`` are the rows before it)."""
    fold = live_fold(new, cfg)
    try:
        requests = next(fold)
        while True:
            requests = fold.send([answer_in_memory(r, facts, index, rows, keyring) for r in requests])
    except StopIteration as done:
        return done.value


def fold_live(state: ProjectionState, facts: Iterable[Fact], cfg: FoldConfig,
              keyring: Keyring | None = None) -> tuple[ProjectionState, list[Change]]:
    """Fold a batch as the live projector does (duplicates ignored by event id): by
    :func:`live_fold`, or by re-deriving the components touched
    (:func:`projections.fold.fold_batch`) when the batch :func:`needs_component`."""
    new = {f.event_id: f for f in facts if f.event_id not in state.facts}
    if not new:
        return state, []
    if needs_component(new.values()):
        return fold_batch(state, new.values(), cfg, keyring)
    state = state.copy()
    for f in new.values():
        state.facts[f.event_id] = f
        for k in f.keys:
            state.index[k].add(f.event_id)
    changes = run_in_memory(list(new.values()), cfg, state.facts, state.index, state.rows, keyring).changes()
    apply_changes(state.rows, changes)
    return state, changes
