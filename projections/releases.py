"""Outcome releases (pure): what analysts may obtain is a set of *releases* — whole, closed
month tables, each suppressed so that nothing from 1 to ``small_cell_max`` can be derived
from all of them together.

- **Closed periods only.** A month is released once it is over and the lateness window
  (``projections.release_lateness_days``) has passed (:func:`month_closed`), in the agency's
  time zone. Analysts get month tables only — never an arbitrary range, which could be
  subtracted from an overlapping one.
- **One table per month, every grain at once.** A month's table holds the jurisdiction, every
  precinct and every district, suppressed together (:func:`projections.outcomes.suppressed_table`).
- **Releases correct safely.** When late facts or a revision change a closed month, the whole
  table is released again (``seq`` + 1). What analysts already knew of the month — every cell
  a release showed or let them derive exactly (:attr:`projections.outcomes.SuppressedTable.known`),
  every value ever known — is carried forward; a cell whose value is 1 to ``small_cell_max``
  away from any value they knew is protected in the new release (suppressed and underivable),
  so no two releases subtracted tell "one more hold in EAST".
- **Zero cells.** A part equal to a total of at most ``projections.attribute_total_max`` in an
  outcome or flag equation (every call of a small group ended the same way) is protected
  (:func:`projections.outcomes.attribute_cells`).

A release is identified ``<YYYY-MM>.r<seq>``; the records it publishes carry the id.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from projections import custom_metrics
from projections.areas import ALL_CALLS, COARSE_KINDS, PathCounts, area_table, kind_counts, rates
from projections.counts import FLAG_METRICS
from projections.custom_metrics import Extension, share_base
from projections.demographics import SOURCES, demographics_release
from projections.outcomes import (
    HIDDEN_PREFIX,
    PUBLISHED_METRICS,
    AreaKey,
    Cell,
    SuppressedTable,
    suppressed_table,
)
from projections.reporting import (
    HEADLINES,
    REPORT_VERSION,
    funnel_release,
    repeat_release,
    use_of_force_release,
)
from schemas.outcome import OutcomeRecord

#: the metrics of the coarse table (the others are added by projections.areas.area_table)
COARSE_METRICS = frozenset((*PUBLISHED_METRICS, *(HIDDEN_PREFIX + f for f in FLAG_METRICS)))


def release_id(period_start: date, seq: int) -> str:
    return f"{period_start:%Y-%m}.r{seq}"


def next_month(d: date) -> date:
    return (d.replace(day=28) + timedelta(days=4)).replace(day=1)


def month_closed(period_start: date, now: datetime, tz: str, lateness: timedelta) -> bool:
    """Whether the month starting ``period_start`` is over (agency time) and its lateness
    window has passed at ``now``."""
    end = datetime.combine(next_month(period_start), time.min, ZoneInfo(tz))
    return now >= end + lateness


def cell_key(cell: Cell, period: str) -> str:
    """``metric|YYYY-MM|area_kind:area`` (the topic's key; hidden complements too)."""
    (kind, area), metric = cell
    return f"{metric}|{period}|{kind}:{area}"


def parse_cell_key(key: str) -> tuple[Cell, str]:
    metric, period, area = key.split("|", 2)
    kind, _, name = area.partition(":")
    return ((kind, name), metric), period


@dataclass(frozen=True)
class MonthRelease:
    """One release of one month: its records (every published cell) and what analysts know
    of the month after it (``known``: per cell key, every value any release so far showed or
    let them derive exactly)."""

    release: str
    period_start: date
    seq: int
    records: tuple[OutcomeRecord, ...]
    known: dict[str, list[int]]
    table: SuppressedTable
    extras: dict[str, Any] = field(default_factory=dict)


def month_release(
    period_start: date,
    counts: PathCounts,
    *,
    seq: int,
    max_small: int,
    attribute_max: int,
    known_before: Mapping[str, Iterable[int]] | None = None,
    unmeasured: Mapping[str, str] | None = None,
    vocabulary: str | None = None,
    extension: Extension | None = None,
    population: Mapping[AreaKey, int] | None = None,
) -> MonthRelease:
    """Release ``seq`` of a month from its counts ((area path, metric) → value:
    behavioral-health metrics and calls for service, :func:`projections.areas.path_counts`)
    and what analysts knew from the earlier releases. The jurisdiction, precincts and
    districts are suppressed as one table, then sectors, beats and calls for service are
    added to it without changing it (:func:`projections.areas.area_table`). ``extension``:
    the county metrics of the month (:mod:`projections.custom_metrics`), published for the
    jurisdiction, precincts and districts in the coarse table (their counts must come from
    the same rows as ``counts``). ``population``: residents per area, for the rates per
    1,000 residents."""
    period = f"{period_start:%Y-%m}"
    unmeasured = dict(unmeasured or {})
    # the table's cells (``repeat.`` / ``funnel.`` keys are the extras', see with_extras)
    before = {parse_cell_key(k)[0]: v for k, v in (known_before or {}).items() if "|" in k}
    coarse = suppressed_table(
        kind_counts(counts, COARSE_KINDS),
        COARSE_KINDS,
        max_small,
        tuple(unmeasured),
        known_before={c: v for c, v in before.items() if c[0][0] in ("all", *COARSE_KINDS)
                      and (c[1] in COARSE_METRICS or custom_metrics.is_extension_metric(c[1]))},
        attribute_max=attribute_max,
        extension=extension,
    )
    table = area_table(
        counts, coarse, max_small, unmeasured=tuple(unmeasured), attribute_max=attribute_max,
        known_before={c: v for c, v in before.items() if c not in coarse.values},
    )
    rid = release_id(period_start, seq)
    shown = table.shown()
    rated = rates(shown, population)
    records = []
    for (a, m), v in shown.items():
        base = shown.get((a, share_base(m)))
        measured = m not in unmeasured
        value = v if measured else None
        share = round(value / base, 4) if value is not None and base and m != ALL_CALLS else None
        per_calls, per_residents = rated[(a, m)] if measured else (None, None)
        records.append(
            OutcomeRecord.model_validate(
                {  # validates the area kind read from the counts
                    "metric": m,
                    "period": period,
                    "period_start": period_start,
                    "area_kind": a[0],
                    "area": a[1],
                    "value": value,
                    "suppressed": measured and v is None,
                    "share": share,
                    "rate_per_1000_calls": per_calls,
                    "rate_per_1000_residents": per_residents,
                    "small_cell_max": max_small,
                    "measured": measured,
                    "reason": unmeasured.get(m),
                    "vocabulary": vocabulary,
                    "release": rid,
                }
            )
        )
    known = {k: sorted(set(v)) for k, v in (known_before or {}).items()}
    for c, v in table.known.items():
        key = cell_key(c, period)
        known[key] = sorted({*known.get(key, []), v})
    return MonthRelease(rid, period_start, seq, tuple(records), known, table)


#: the extras of a release: (section, prefix of its cells in ``known``)
EXTRAS = (
    ("repeat_encounters", "repeat."),
    ("referral_funnel", "funnel."),
    ("use_of_force", "force."),
    ("demographics", "demo."),
)


def with_extras(
    release: MonthRelease,
    people: Iterable[tuple[int, bool]],
    referrals: Sequence[Mapping[str, Any]],
    max_small: int,
    known_before: Mapping[str, Iterable[int]],
    incidents: Sequence[Mapping[str, Any]] = (),
    *,
    tz: str = "UTC",
    sources: Sequence[str] = SOURCES,
) -> MonthRelease:
    """``release`` with the month's repeat encounters, referral funnel (stage counts), use of
    force (total, by outcome and by area) and demographics of the calls (``incidents``: the month's
    behavioral-health incident rows with their people's demographics, see
    :meth:`projections.queries.ReadModelReader.with_demographics`), each suppressed as its
    own table and protected against earlier releases the same way; their cells are known as
    ``repeat.<cell>`` / ``funnel.<cell>`` / ``force.<cell>`` / ``demo.<cell>``."""
    known = {k: sorted(set(v)) for k, v in release.known.items()}
    people, referrals, incidents = list(people), list(referrals), list(incidents)
    extras: dict[str, Any] = {}
    for name, prefix in EXTRAS:
        before = {k.removeprefix(prefix): v for k, v in known_before.items() if k.startswith(prefix)}
        if prefix == "repeat.":
            doc, now = repeat_release(people, max_small, before)
        elif prefix == "funnel.":
            doc, now = funnel_release(referrals, max_small, before)
        elif prefix == "force.":
            doc, now = use_of_force_release(incidents, by="area", tz=tz, small_cell_max=max_small,
                                            known_before=before)
        else:
            doc, now = demographics_release(incidents, small_cell_max=max_small, sources=sources,
                                            known_before=before)
        extras[name] = doc
        for cell, value in now.items():
            known[prefix + cell] = sorted({*known.get(prefix + cell, []), value})
    return replace(release, known=known, extras=extras)


def release_content(records: list[dict[str, Any]], extras: Mapping[str, Any]) -> str:
    """The canonical JSON of what a release published (what the release log seals)."""
    return json.dumps({"extras": extras, "records": records}, sort_keys=True)


def same_content(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Whether two releases publish the same cells (their ids aside)."""

    def strip(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(({k: v for k, v in r.items() if k != "release"} for r in recs), key=repr)

    return strip(a) == strip(b)


# --------------------------------------------------------------------------- what analysts read

RATE_FIELDS = ("rate_per_1000_calls", "rate_per_1000_residents")
NOT_RELEASED = "not part of a release: analysts read released month tables only"


def _cell(record: Mapping[str, Any]) -> dict[str, Any]:
    if not record.get("measured", True):
        return {
            "value": None,
            "share": None,
            "suppressed": False,
            "measured": False,
            "reason": record.get("reason"),
        }
    out = {
        "value": record["value"],
        "share": record["share"] if record["metric"] != "calls" else None,
        "suppressed": record["suppressed"],
        "measured": True,
    }
    for name in RATE_FIELDS:  # rates per 1,000 (null when withheld; absent before areas of need)
        if name in record:
            out[name] = record[name]
    return out


def _not_released() -> dict[str, Any]:
    return {"value": None, "share": None, "suppressed": False, "measured": False, "reason": NOT_RELEASED}


def release_document(release: Mapping[str, Any], records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The report document of one release (what an analyst reads, in the shape of
    ``hub report --json`` with ``by=area``): the jurisdiction's cells as ``total`` and the
    headline, every precinct, district, sector and beat as rows (``group_kind`` names the
    grain; cells carry their rates per 1,000) — exactly the released cells; the month's
    repeat encounters and funnel stage counts as released with it. Response times are not
    released (a count of timed calls could be subtracted)."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        groups.setdefault((r["area_kind"], r["area"]), {})[r["metric"]] = _cell(r)
    total = groups.pop(("all", "all"), {})
    headline = {"calls": total.get("calls", _not_released())}
    headline.update({name: total.get(metric, _not_released()) for name, metric in HEADLINES.items()})
    extras = release.get("extras") or {}
    repeat = extras.get("repeat_encounters") or {
        k: _not_released() for k in ("people", "two_plus", "three_plus", "three_plus_enrolled")
    }
    funnel = extras.get("referral_funnel") or {
        k: _not_released() for k in ("requested", "delivered", "accepted", "completed")
    }
    headline["repeat_three_plus_enrolled"] = repeat["three_plus_enrolled"]
    # releases before use of force and demographics were released carry neither
    force = extras.get("use_of_force") or {"total": {}, "by_outcome": [], "rows": [],
                                           "reason": NOT_RELEASED}
    demo = extras.get("demographics") or {"sources": [], "total": {}, "rows": [], "reason": NOT_RELEASED}
    period = release["period"]
    custom = extras.get("custom_metrics")
    return {
        "report": "outcomes",
        "version": REPORT_VERSION,
        "release": release["release_id"],
        "period": period,
        "released_at": release["released_at"],
        "code_version": release["code_version"],
        "vocabulary": {"label": release["vocabulary"]},
        "from": f"{period}-01",
        "to": None,
        "by": "area",
        "segment": "behavioral_health",
        "small_cell_max": release["small_cell_max"],
        "headline": headline,
        "outcomes": {
            "total": total,
            "rows": [{"group_kind": k, "group": g, "metrics": m} for (k, g), m in sorted(groups.items())],
        },
        "repeat_encounters": repeat,
        "referral_funnel": funnel,
        **({"custom_metrics": custom} if custom else {}),
        "population": extras.get("population"),
        "use_of_force": force,
        "demographics": demo,
    }


def released_months(
    latest: Iterable[tuple[Mapping[str, Any], Iterable[Mapping[str, Any]]]],
) -> dict[str, Any]:
    """The ``outcomes`` section by month from each month's latest release: one row per month
    holding that release's jurisdiction cells (no new table: the cells as released)."""
    rows = []
    for release, records in latest:
        cells = {r["metric"]: _cell(r) for r in records if r["area_kind"] == "all"}
        rows.append({"group_kind": "month", "group": release["period"], "metrics": cells})
    rows.sort(key=lambda r: r["group"])
    return {"total": {}, "rows": rows}


def released_force_months(
    latest: Iterable[tuple[Mapping[str, Any], Iterable[Mapping[str, Any]]]],
) -> list[dict[str, Any]]:
    """Use of force by month from each month's latest release: one row per month holding
    that release's jurisdiction cells as released (none for a release without them)."""
    rows = []
    for release, _ in latest:
        total = ((release.get("extras") or {}).get("use_of_force") or {}).get("total")
        if total:
            rows.append({"group_kind": "month", "group": release["period"], "metrics": total})
    return sorted(rows, key=lambda r: r["group"])
