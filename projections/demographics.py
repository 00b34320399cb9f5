"""Demographics of the people served, done carefully (pure): which sealed reports the
read models keep, how a person's reports resolve (the county's authoritative source first,
conflicts recorded, never overwritten), the age band at each contact, and the suppressed
demographics table of the outcome report.

- The read model (``person_demographics``) keeps every report *sealed*, one row per fact
  (intake ``encounter.person.identified``, case system ``case.opened``, EHR answer):
  nothing here is in clear at rest. The report opens them with the keyring
  (:meth:`projections.queries.ReadModelReader.report`); an erased person's reports no
  longer open and that person counts as ``not_reported``.
- :func:`resolve`: per dimension, the latest report of each source; the first source of
  the county's precedence (``demographics.sources``) that reported a value wins; when two
  sources reported different values the dimension is in ``conflicts`` (both facts stay in
  the log; the report counts the calls with a conflict).
- Age band: from the resolved birth date on the day of the contact (agency time), else a
  reported age band, else ``not_reported``.
- :func:`demographics_table`: calls by race, ethnicity, gender and age band — four
  partitions of one total — suppressed as ONE table with :func:`projections.suppression.suppress`,
  so no cell hidden in one breakdown can be read off another.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from projections.facts import Fact
from projections.reporting import Known, grouped_suppress
from projections.suppression import Equation
from schemas.base import Sealed
from schemas.case import CaseOpened
from schemas.demographics import NOT_REPORTED, VOCABULARIES, age_band
from schemas.encounter import PersonIdentified

#: where a demographics report comes from
SOURCES = ("intake", "case", "ehr")
DIMENSIONS: tuple[str, ...] = tuple(VOCABULARIES)
#: the fields resolved per person (the age band is derived per contact from the birth date)
_FIELDS = ("race", "ethnicity", "gender", "birth_date", "age_band")
_CONFLICTING = "conflicting"
_NOT_CONFLICTING = "not.conflicting"


def report_of(f: Fact) -> tuple[str, str, Sealed] | None:
    """(source, person, sealed demographics) of a fact that reports demographics, else None."""
    p = f.payload
    fields = p.__dict__  # the validated fields (getattr of a missing one is slow in pydantic)
    sealed = fields.get("demographics")
    if not isinstance(sealed, Sealed):
        return None
    if isinstance(p, PersonIdentified):
        return ("intake", p.person, sealed)
    if isinstance(p, CaseOpened):
        return ("case", p.person, sealed)
    person = fields.get("person")
    if f.system == "ehr" and isinstance(person, str):
        return ("ehr", person, sealed)
    return None


def demographics_rows(facts: Iterable[Fact], canon: Mapping[str, str]) -> list[dict[str, Any]]:
    """The ``person_demographics`` rows of a component: one per reporting fact, keyed by
    the person's canonical pseudonym, the payload still sealed."""
    rows = []
    for f in facts:
        found = report_of(f)
        if found is None:
            continue
        source, person, sealed = found
        rows.append({
            "person": canon.get(person, person), "event_id": f.event_id, "source": source, "at": f.at,
            "kid": sealed.kid, "nonce": sealed.nonce, "ciphertext": sealed.ciphertext,
        })
    return rows


def sealed_of(row: Any) -> Sealed:
    """The sealed payload of a ``person_demographics`` row."""
    return Sealed(kid=row["kid"], nonce=row["nonce"], ciphertext=row["ciphertext"])


@dataclass(frozen=True)
class Reported:
    """One opened report: its source, when, and its values (:func:`schemas.demographics.normalized`)."""

    source: str
    at: datetime
    values: Mapping[str, str]


@dataclass(frozen=True)
class Resolved:
    """A person's demographics: one value per field (absent: nobody reported it) and the
    fields on which sources disagree."""

    values: Mapping[str, str] = field(default_factory=dict)
    conflicts: frozenset[str] = frozenset()


def check_sources(sources: Sequence[str]) -> tuple[str, ...]:
    """``sources`` as a precedence order; raises ValueError naming the bad entry."""
    for s in sources:
        if s not in SOURCES:
            raise ValueError(f"demographics.sources: {s!r} is not one of {', '.join(SOURCES)}")
    if len(set(sources)) != len(sources) or not sources:
        raise ValueError("demographics.sources: name each source once, at least one")
    return tuple(sources)


def resolve(reports: Iterable[Reported], sources: Sequence[str]) -> Resolved:
    """A person's demographics from their reports: per field, each source's latest value
    (``not_reported`` is no value); the first source in ``sources`` with a value wins;
    sources outside ``sources`` are ignored. A field is a conflict when two sources'
    values differ (a birth date conflict also when the age bands would agree)."""
    latest: dict[tuple[str, str], tuple[datetime, str]] = {}
    for r in reports:
        if r.source not in sources:
            continue
        for name in _FIELDS:
            v = r.values.get(name)
            if v is None or v == NOT_REPORTED:
                continue
            key = (r.source, name)
            if key not in latest or r.at >= latest[key][0]:
                latest[key] = (r.at, v)
    values: dict[str, str] = {}
    conflicts: set[str] = set()
    for name in _FIELDS:
        seen = [latest[(s, name)][1] for s in sources if (s, name) in latest]
        if seen:
            values[name] = seen[0]
            if len(set(seen)) > 1:
                conflicts.add("age_band" if name == "birth_date" else name)
    return Resolved(values, frozenset(conflicts))


def at_contact(person: Resolved, day: date) -> dict[str, str]:
    """The four dimensions of a person on the day of a contact (``not_reported`` where unknown)."""
    v = person.values
    birth = v.get("birth_date")
    band = age_band(date.fromisoformat(birth), day) if birth else v.get("age_band", NOT_REPORTED)
    return {
        "race": v.get("race", NOT_REPORTED),
        "ethnicity": v.get("ethnicity", NOT_REPORTED),
        "gender": v.get("gender", NOT_REPORTED),
        "age_band": band,
    }


def with_demographics(
    rows: Iterable[Mapping[str, Any]], people: Mapping[str, Resolved], tz: str
) -> list[dict[str, Any]]:
    """Incident rows with ``race``, ``ethnicity``, ``gender``, ``age_band`` (of the persons
    on the call, at the call's day in agency time: a dimension on which several persons
    differ is ``not_reported``) and ``demographics_conflict`` (a person's sources disagree)."""
    zone = ZoneInfo(tz)
    out = []
    for row in rows:
        when = row.get("received_at") or row.get("opened_at")
        day = when.astimezone(zone).date() if when else None
        dims: dict[str, str] = dict.fromkeys(DIMENSIONS, NOT_REPORTED)
        conflict = False
        persons = [people[p] for p in row.get("persons") or () if p in people]
        if persons and day is not None:
            each = [at_contact(p, day) for p in persons]
            dims = {d: (each[0][d] if len({e[d] for e in each}) == 1 else NOT_REPORTED) for d in DIMENSIONS}
            conflict = any(p.conflicts for p in persons)
        out.append({**row, **dims, "demographics_conflict": conflict})
    return out


def demographics_table(
    rows: Iterable[Mapping[str, Any]],
    *,
    small_cell_max: int,
    sources: Sequence[str],
    also_hidden: Iterable[tuple[tuple[str, str], str]] = (),
) -> dict[str, Any]:
    """:func:`demographics_release` without earlier releases."""
    return demographics_release(
        rows, small_cell_max=small_cell_max, sources=sources, also_hidden=also_hidden
    )[0]


def demographics_release(
    rows: Iterable[Mapping[str, Any]],
    *,
    small_cell_max: int,
    sources: Sequence[str],
    also_hidden: Iterable[tuple[tuple[str, str], str]] = (),
    known_before: Known | None = None,
) -> tuple[dict[str, Any], dict[str, int]]:
    """Behavioral-health calls by race, ethnicity, gender and age band (rows from
    :func:`with_demographics`), every category of each vocabulary listed, suppressed as one
    table: each dimension's groups add up to ``calls``; ``conflicting`` counts the calls
    whose person's sources disagree (``calls`` = conflicting + not conflicting, hidden).
    ``also_hidden``: cells another published table withholds (the outcome table grouped
    by the same dimension), withheld here too so the two cannot be combined.
    ``{"sources", "total": {"calls", "conflicting"}, "rows": [{"group_kind", "group",
    "metrics": {"calls"}}]}``; shares are of ``calls``. ``known_before`` (releases):
    every value readers knew of each cell; also returns what a reader knows afterwards."""
    total = ("all", "all")
    values: Counter[tuple[tuple[str, str], str]] = Counter()
    for d, vocabulary in VOCABULARIES.items():
        for v in vocabulary:
            values[((d, v), "calls")] += 0
    values[(total, "calls")] += 0
    values[(total, _CONFLICTING)] += 0
    for row in rows:
        values[(total, "calls")] += 1
        values[(total, _CONFLICTING)] += bool(row.get("demographics_conflict"))
        for d in DIMENSIONS:
            values[((d, str(row.get(d) or NOT_REPORTED)), "calls")] += 1
    values[(total, _NOT_CONFLICTING)] = values[(total, "calls")] - values[(total, _CONFLICTING)]
    eqs = [Equation((total, "calls"), ((total, _CONFLICTING), (total, _NOT_CONFLICTING)))]
    for d, vocabulary in VOCABULARIES.items():
        eqs.append(Equation((total, "calls"), tuple(((d, v), "calls") for v in vocabulary)))
    hidden = {(total, _NOT_CONFLICTING), *(c for c in also_hidden if c in values)}
    hide, known = grouped_suppress(dict(values), eqs, hidden, small_cell_max, known_before)

    def cell_of(key: tuple[tuple[str, str], str]) -> dict[str, Any]:
        v = None if key in hide else values[key]
        d = None if (total, "calls") in hide else values[(total, "calls")]
        share = round(v / d, 4) if v is not None and d else None
        return {"value": v, "share": share, "suppressed": v is None}

    calls = values[(total, "calls")]
    return {
        "sources": list(sources),
        "total": {
            "calls": {"value": None if (total, "calls") in hide else calls, "share": None,
                      "suppressed": (total, "calls") in hide},
            "conflicting": cell_of((total, _CONFLICTING)),
        },
        "rows": [
            {"group_kind": d, "group": v, "metrics": {"calls": cell_of(((d, v), "calls"))}}
            for d, vocabulary in VOCABULARIES.items() for v in vocabulary
        ],
    }, known
